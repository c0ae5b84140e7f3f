"""usage/report.py: periods, groups, sums, the table, and the spend per key."""

from __future__ import annotations

from pathlib import Path

import pytest
from test_ledger import record

from antigravity_gw.usage import report
from antigravity_gw.usage.ledger import Ledger

DAY = 86400.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("24h", 1_000_000 - 86400),
        ("7d", 1_000_000 - 7 * 86400),
        ("30m", 1_000_000 - 1800),
        ("2026-12-01", 1796083200.0),
        ("2026-12-01T12:00:00+01:00", 1796122800.0),
    ],
)
def test_since(text: str, expected: float):
    assert report.parse_since(text, 1_000_000) == expected


def test_a_bad_since_names_the_accepted_forms():
    with pytest.raises(ValueError, match="not like 24h, 7d or 2026-12-01"):
        report.parse_since("yesterday", 0)


@pytest.fixture
def ledger_path(tmp_path: Path) -> Path:
    ledger = Ledger(tmp_path / "usage.sqlite3")
    ledger.open()
    ledger.append(record(ts=DAY + 10, key_name="alice", account="a", duration_ms=100.0, first_chunk_ms=10.0))
    ledger.append(
        record(
            ts=DAY + 20,
            key_name="alice",
            account="b",
            duration_ms=300.0,
            first_chunk_ms=None,
            mapped_model="",
            client_model="gemini-2.5-pro",
            status=403,
            prompt_tokens=0,
            completion_tokens=0,
            cached_tokens=0,
            reasoning_tokens=0,
        )
    )
    ledger.append(record(ts=2 * DAY + 5, key_name="bob", account="a", duration_ms=200.0, first_chunk_ms=30.0))
    ledger.append(record(ts=5.0, key_name="old"))
    ledger.close()
    return ledger.path


def test_summarize_by_key_sums_requests_tokens_errors_and_averages_latency(ledger_path: Path):
    result = report.summarize(ledger_path, DAY, "key")
    assert result["rows"] == [
        {
            "key": "alice",
            "requests": 2,
            "errors": 1,
            "prompt_tokens": 11,
            "completion_tokens": 9,
            "cached_tokens": 3,
            "reasoning_tokens": 2,
            "total_tokens": 20,
            "avg_ms": 200.0,
            "avg_first_chunk_ms": 10.0,
        },
        {
            "key": "bob",
            "requests": 1,
            "errors": 0,
            "prompt_tokens": 11,
            "completion_tokens": 9,
            "cached_tokens": 3,
            "reasoning_tokens": 2,
            "total_tokens": 20,
            "avg_ms": 200.0,
            "avg_first_chunk_ms": 30.0,
        },
    ]
    assert result["total"] == {
        "requests": 3,
        "errors": 1,
        "prompt_tokens": 22,
        "completion_tokens": 18,
        "cached_tokens": 6,
        "reasoning_tokens": 4,
        "total_tokens": 40,
        "avg_ms": 200.0,
        "avg_first_chunk_ms": 20.0,
    }


def test_summarize_by_day_and_model(ledger_path: Path):
    assert [(r["day"], r["requests"]) for r in report.summarize(ledger_path, 0, "day")["rows"]] == [
        ("1970-01-01", 1),
        ("1970-01-02", 2),
        ("1970-01-03", 1),
    ]
    by_model = report.summarize(ledger_path, DAY, "model")["rows"]
    assert [(r["model"], r["requests"]) for r in by_model] == [("gemini-2.5-flash", 2), ("gemini-2.5-pro", 1)]


def test_no_ledger_yet_is_an_empty_report(tmp_path: Path):
    result = report.summarize(tmp_path / "none.sqlite3", 0, "day")
    assert result["rows"] == [] and result["total"]["requests"] == 0
    assert not (tmp_path / "none.sqlite3").exists()


def test_the_table_has_a_header_a_row_per_group_and_a_total(ledger_path: Path):
    lines = report.table(report.summarize(ledger_path, DAY, "account")).splitlines()
    assert [line.split() for line in lines] == [
        [
            "account",
            "requests",
            "errors",
            "prompt",
            "completion",
            "cached",
            "reasoning",
            "avg",
            "ms",
            "first",
            "ms",
        ],
        ["a", "2", "0", "22", "18", "6", "4", "150", "20"],
        ["b", "1", "1", "0", "0", "0", "0", "300", "-"],
        ["total", "3", "1", "22", "18", "6", "4", "200", "20"],
    ]


def test_spent_since_sums_each_keys_tokens(ledger_path: Path):
    assert report.spent_since(ledger_path, DAY) == {"alice": 20, "bob": 20}


def test_the_chart_is_a_png(ledger_path: Path, tmp_path: Path):
    pytest.importorskip("matplotlib")
    out = tmp_path / "usage.png"
    report.chart(report.summarize(ledger_path, 0, "day"), out)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
