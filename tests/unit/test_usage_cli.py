"""usage_cli.py: ``scripts/ag usage`` over a ledger file (table, JSON, chart, bad input)."""

from __future__ import annotations

import builtins
import io
import sys
import time
from pathlib import Path

import orjson
import pytest

from antigravity_gw.cli import main
from antigravity_gw.usage.ledger import Ledger
from antigravity_gw.usage.record import RequestRecord


@pytest.fixture
def data_dir(tmp_path: Path) -> Path:
    ledger = Ledger(tmp_path / "usage.sqlite3")
    ledger.open()
    now = time.time()
    for key, account, tokens, ts in (("alice", "a@x", 10, now - 60), ("bob", "b@x", 7, now - 120),
                                     ("alice", "a@x", 5, now - 3 * 86400)):
        ledger.append(RequestRecord(ts=ts, method="POST", path="/v1/responses", route="responses",
                                    key_name=key, account=account, mapped_model="gemini-2.5-pro", status=200,
                                    has_tokens=True, prompt_tokens=tokens, completion_tokens=1))
    ledger.close()
    return tmp_path


def run(*argv: str) -> tuple[int, str]:
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def test_json_by_account_over_the_last_day(data_dir: Path):
    code, out = run("usage", "--by", "account", "--json", "--data-dir", str(data_dir))
    assert code == 0
    report = orjson.loads(out)
    assert [(r["account"], r["requests"], r["prompt_tokens"]) for r in report["rows"]] == [("a@x", 1, 10),
                                                                                         ("b@x", 1, 7)]


def test_the_table_over_a_week_by_key(data_dir: Path):
    code, out = run("usage", "--since", "7d", "--by", "key", "--data-dir", str(data_dir))
    assert code == 0
    assert [line.split()[:4] for line in out.splitlines()] == [
        ["key", "requests", "errors", "prompt"], ["alice", "2", "0", "15"], ["bob", "1", "0", "7"],
        ["total", "3", "0", "22"]]


def test_a_bad_since_is_one_line_on_stderr(data_dir: Path, capsys: pytest.CaptureFixture[str]):
    code, _ = run("usage", "--since", "last tuesday", "--data-dir", str(data_dir))
    assert code == 1
    assert capsys.readouterr().err == "error: --since: 'last tuesday' is not like 24h, 7d or 2026-12-01\n"


def test_png_without_matplotlib_says_how_to_install_it(data_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]):
    real_import = builtins.__import__

    def no_matplotlib(name: str, *args: object, **kwargs: object) -> object:
        if name.startswith("matplotlib"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    monkeypatch.delitem(sys.modules, "matplotlib", raising=False)
    code, _ = run("usage", "--png", str(data_dir / "u.png"), "--data-dir", str(data_dir))
    assert code == 1
    assert "scripts/bootstrap.sh chart" in capsys.readouterr().err
    assert not (data_dir / "u.png").exists()


def test_png_draws_the_chart(data_dir: Path):
    pytest.importorskip("matplotlib")
    code, _ = run("usage", "--png", str(data_dir / "u.png"), "--data-dir", str(data_dir))
    assert code == 0 and (data_dir / "u.png").read_bytes()[:4] == b"\x89PNG"
