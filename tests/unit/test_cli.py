"""cli.py: ``python -m antigravity_gw accounts ...`` against temporary directories."""

import io
import subprocess
import sys
from pathlib import Path

import orjson
import pytest

from antigravity_gw.cli import main, mask

RT = "1//0gSECRETrefreshTOKENabcd"
KEY = "AIzaSyFAKEkeyFAKEkeyFAKEkey1234"


def cli(*argv: str, stdin: str | None = None, monkeypatch=None) -> tuple[int, str]:
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    out = io.StringIO()
    return main(list(argv), out=out), out.getvalue()


def files(d):
    return {p.name: orjson.loads(p.read_bytes()) for p in sorted(d.glob("*.json"))}


def test_mask_never_shows_a_usable_secret():
    assert (mask(RT), mask("short-secret"), mask("")) == ("…abcd", "…", "-")


def test_add_list_disable_enable_remove(tmp_path, capsys):
    d = str(tmp_path)
    code, out = cli("accounts", "add", "--dir", d, "--refresh-token", RT, "--email", "me@gmail.com",
                    "--project", "my-proj")
    assert code == 0 and "added me@gmail.com" in out and RT not in out
    (name, data), = files(tmp_path).items()
    assert name == f"{data['id']}.json"
    assert data["token"] == {"access_token": "", "refresh_token": RT, "expires_in": 0, "expiry_timestamp": 0,
                             "token_type": "Bearer", "email": "me@gmail.com", "project_id": "my-proj"}
    assert (data["email"], data["disabled"], data["proxy_disabled"]) == ("me@gmail.com", False, False)

    code, out = cli("accounts", "list", "--dir", d)
    assert code == 0 and RT not in out
    assert "me@gmail.com" in out and "ready" in out and "…abcd" in out and "ag.accounts" in out

    assert cli("accounts", "disable", "--dir", d, "me@gmail.com", "--reason", "lent to a friend")[0] == 0
    data = files(tmp_path)[name]
    assert (data["disabled"], data["disabled_reason"]) == (True, "lent to a friend")
    assert isinstance(data["disabled_at"], int)
    rows = orjson.loads(cli("accounts", "list", "--dir", d, "--json")[1])
    assert [(r["state"], r["detail"].split(" since ")[0]) for r in rows] == [("disabled", "lent to a friend")]

    assert cli("accounts", "enable", "--dir", d, data["id"])[0] == 0
    assert files(tmp_path)[name]["disabled"] is False
    assert cli("accounts", "remove", "--dir", d, name)[0] == 0
    assert files(tmp_path) == {} and list(tmp_path.iterdir()) == []
    assert capsys.readouterr().err == ""


def test_adding_a_known_email_renews_its_grant(tmp_path):
    d = str(tmp_path)
    cli("accounts", "add", "--dir", d, "--refresh-token", RT, "--email", "me@gmail.com")
    (name, first), = files(tmp_path).items()
    code, out = cli("accounts", "add", "--dir", d, "--refresh-token", RT + "NEW", "--email", "me@gmail.com")
    assert code == 0 and out.startswith("updated me@gmail.com")
    (name2, second), = files(tmp_path).items()
    assert name2 == name and second["token"]["refresh_token"] == RT + "NEW" and second["id"] == first["id"]


def test_api_keys_from_stdin_and_duplicates(tmp_path, monkeypatch, capsys):
    d = str(tmp_path)
    code, out = cli("accounts", "add", "--dir", d, "--api-key", "-", stdin=KEY + "\n",
                    monkeypatch=monkeypatch)
    assert code == 0 and KEY not in out and "key-1234" in out
    (_, data), = files(tmp_path).items()
    assert (data["api_key"], data["email"]) == (KEY, "key-1234")
    code, _ = cli("accounts", "add", "--dir", d, "--api-key", KEY)
    assert code == 1 and "already" in capsys.readouterr().err


def test_errors_are_one_line_without_traceback(tmp_path, capsys):
    d = str(tmp_path)
    assert cli("accounts", "add", "--dir", d, "--refresh-token", RT)[0] == 1
    assert "--email is required" in capsys.readouterr().err
    assert cli("accounts", "disable", "--dir", d, "nobody")[0] == 1
    assert "no account 'nobody'" in capsys.readouterr().err
    for i in range(2):  # two keys under one label
        cli("accounts", "add", "--dir", d, "--api-key", f"{KEY}{i}", "--email", "x@y")
    assert cli("accounts", "remove", "--dir", d, "x@y")[0] == 1
    assert "matches 2 accounts" in capsys.readouterr().err


def manager_dir(root):
    accounts = root / "accounts"
    accounts.mkdir(parents=True)
    for ident, email, extra in (("u1", "one@gmail.com", {}), ("u2", "two@gmail.com", {"disabled": True}),
                                ("u3", "three@gmail.com", {})):
        (accounts / f"{ident}.json").write_bytes(orjson.dumps({
            "id": ident, "email": email,
            "token": {"access_token": "ya29", "refresh_token": f"1//{ident}-secret-token", "expires_in": 3599,
                      "expiry_timestamp": 1},
            "quota": {"models": []}, **extra}))
    (accounts / "broken.json").write_text("{")
    (root / "accounts.json").write_bytes(orjson.dumps({"version": "2.0", "accounts": [
        {"id": "u3", "email": "three@gmail.com"}, {"id": "u1"}, {"id": "u2"}, {"id": "gone"}]}))
    return root


def test_import_from_an_antigravity_manager_data_dir(tmp_path):
    source = manager_dir(tmp_path / "tools")
    dest = tmp_path / "gw"
    code, out = cli("accounts", "import", str(source), "--dir", str(dest))
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "warning: accounts.json lists gone but accounts/gone.json is missing"
    assert lines[1:4] == ["imported three@gmail.com (u3)", "imported one@gmail.com (u1)",
                          "imported two@gmail.com (u2) [disabled]"]
    assert lines[-1] == f"3 imported, 1 skipped, into {dest}"
    assert files(dest)["u1.json"] == orjson.loads((source / "accounts" / "u1.json").read_bytes())  # quota too
    assert "secret" not in out

    code, out = cli("accounts", "import", str(source), "--dir", str(dest))
    assert "0 imported, 4 skipped" in out
    code, out = cli("accounts", "import", str(source), "--dir", str(source / "accounts"))
    assert "already the gateway's account directory" in out


@pytest.mark.parametrize("exists", [True, False])
def test_listing_an_empty_or_missing_directory_says_how_to_add_an_account(tmp_path, exists):
    d = tmp_path / "accounts"
    if exists:
        d.mkdir()
    code, out = cli("accounts", "list", "--dir", str(d))
    assert code == 0
    assert out.startswith(f"no accounts in {d}")
    assert ("does not exist yet" in out) is not exists
    assert "scripts/ag accounts add --refresh-token" in out and "scripts/gateway --demo" in out
    assert cli("accounts", "list", "--json", "--dir", str(d)) == (0, "[]\n")


def test_python_dash_m_runs_the_cli(tmp_path):
    argv = [sys.executable, "-m", "antigravity_gw", "accounts", "list", "--dir", str(tmp_path)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and f"no accounts in {tmp_path}" in result.stdout


@pytest.mark.parametrize("argv", [["accounts"], ["accounts", "add", "--dir", "x"], ["nope"]])
def test_usage_errors_exit_2(argv):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2


HOSTILE_IDS = ["../../escaped", "/tmp/absolute-evil", "a\x00b", "..", ".hidden", "sub/dir", "..\\win",
               "x" * 300]


def test_import_never_writes_outside_dir_whatever_ids_the_files_hold(tmp_path):
    root = tmp_path / "deep" / "tools"
    (root / "accounts").mkdir(parents=True)
    for n, ident in enumerate(HOSTILE_IDS):
        (root / "accounts" / f"f{n}.json").write_bytes(orjson.dumps(
            {"id": ident, "email": f"e{n}@x", "token": {"refresh_token": f"rt{n}"}}))
    dest = tmp_path / "deep" / "gw"
    before = set(tmp_path.rglob("*")) | set(Path("/tmp").glob("absolute-evil*"))
    code, out = cli("accounts", "import", str(root), "--dir", str(dest))
    assert code == 0, out
    assert f"{len(HOSTILE_IDS)} imported, 0 skipped" in out
    written = set(tmp_path.rglob("*")) - before - {dest}
    assert {p.parent for p in written} == {dest}  # every new file directly inside --dir
    assert not any(p.name.startswith(".") for p in written)
    assert not list(Path("/tmp").glob("absolute-evil*"))
    held = {orjson.loads(p.read_bytes())["id"] for p in written}
    assert held == set(HOSTILE_IDS)  # the data is kept as it was, only the file names are safe
    code, out = cli("accounts", "list", "--dir", str(dest), "--json")
    assert len(orjson.loads(out)) == len(HOSTILE_IDS)


@pytest.mark.parametrize("ident", ["u1", "6c1e0f3a-0b7d-4a52-9a3e-1f2b3c4d5e6f", "me@gmail.com"])
def test_plain_ids_keep_their_file_name(ident):
    from antigravity_gw.cli import account_file_name

    assert account_file_name(ident) == f"{ident}.json"


def test_list_and_import_skip_a_fifo_without_hanging(tmp_path):
    import os

    accounts = tmp_path / "tools" / "accounts"
    accounts.mkdir(parents=True)
    (accounts / "u1.json").write_bytes(orjson.dumps({"id": "u1", "email": "one@x",
                                                     "token": {"refresh_token": "r"}}))
    os.mkfifo(accounts / "pipe.json")
    os.mkfifo(tmp_path / "tools" / "accounts.json")  # the index too
    argv = [sys.executable, "-m", "antigravity_gw", "accounts"]
    result = subprocess.run([*argv, "list", "--dir", str(accounts)], capture_output=True, text=True,
                            timeout=30)
    assert result.returncode == 0 and "one@x" in result.stdout
    assert "pipe.json: not a regular file (a FIFO); skipped" in result.stderr
    result = subprocess.run([*argv, "import", str(tmp_path / "tools"), "--dir", str(tmp_path / "gw")],
                            capture_output=True, text=True, timeout=30)
    assert result.returncode == 0 and "1 imported, 1 skipped" in result.stdout
