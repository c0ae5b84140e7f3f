"""usage/ledger.py: batches committed by the writer thread, nothing of a key stored, retention."""

from __future__ import annotations

import sqlite3
import threading
import time
from pathlib import Path

from antigravity_gw.usage.ledger import COLUMNS, Ledger
from antigravity_gw.usage.record import RequestRecord


def record(ts: float = 1000.0, **fields: object) -> RequestRecord:
    base: dict[str, object] = dict(
        ts=ts,
        method="POST",
        path="/v1/chat/completions",
        route="chat.completions",
        key_name="alice",
        client_model="gpt-4o",
        mapped_model="gemini-2.5-flash",
        account="a@example.com",
        status=200,
        attempts=1,
        has_tokens=True,
        prompt_tokens=11,
        completion_tokens=9,
        cached_tokens=3,
        reasoning_tokens=2,
        first_chunk_ms=12.5,
        duration_ms=40.0,
        stream=True,
    )
    base.update(fields)
    return RequestRecord(**base)  # type: ignore[arg-type]


def rows(path: Path) -> list[tuple[object, ...]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute(f"SELECT {', '.join(COLUMNS)} FROM requests ORDER BY id").fetchall()
    finally:
        conn.close()


def test_appended_records_are_committed_as_rows_by_flush(tmp_path: Path):
    ledger = Ledger(tmp_path / "d" / "usage.sqlite3", flush_interval=60)
    ledger.open()
    try:
        ledger.append(record())
        ledger.append(
            record(
                key_name="bob",
                status=429,
                error_code="rate_limit_exceeded",
                has_tokens=False,
                prompt_tokens=0,
                completion_tokens=0,
                cached_tokens=0,
                reasoning_tokens=0,
                first_chunk_ms=None,
            )
        )
        assert ledger.flush(timeout=5)
        assert rows(ledger.path) == [
            (
                1000.0,
                "alice",
                "chat.completions",
                "gpt-4o",
                "gemini-2.5-flash",
                "a@example.com",
                200,
                1,
                11,
                9,
                3,
                2,
                40.0,
                12.5,
                "",
                1,
            ),
            (
                1000.0,
                "bob",
                "chat.completions",
                "gpt-4o",
                "gemini-2.5-flash",
                "a@example.com",
                429,
                1,
                0,
                0,
                0,
                0,
                40.0,
                None,
                "rate_limit_exceeded",
                1,
            ),
        ]
    finally:
        ledger.close()


def test_the_writer_commits_on_its_own_and_close_commits_the_rest(tmp_path: Path):
    ledger = Ledger(tmp_path / "usage.sqlite3", flush_interval=0.05)
    ledger.open()
    ledger.append(record())
    deadline = time.monotonic() + 5
    while not rows(ledger.path) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(rows(ledger.path)) == 1
    ledger.flush_interval = 60
    time.sleep(0.1)  # let the writer go back to its (now long) wait
    ledger.append(record(ts=1001.0))
    ledger.close()
    assert [r[0] for r in rows(ledger.path)] == [1000.0, 1001.0]


def test_a_full_batch_wakes_the_writer_before_its_interval(tmp_path: Path):
    ledger = Ledger(tmp_path / "usage.sqlite3", flush_interval=60, max_batch=3)
    ledger.open()
    try:
        for i in range(3):
            ledger.append(record(ts=float(i)))
        deadline = time.monotonic() + 5
        while len(rows(ledger.path)) < 3 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert len(rows(ledger.path)) == 3
    finally:
        ledger.close()


def test_the_file_is_in_wal_mode(tmp_path: Path):
    ledger = Ledger(tmp_path / "usage.sqlite3")
    ledger.open()
    ledger.close()
    conn = sqlite3.connect(ledger.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_rows_older_than_the_retention_are_pruned_when_it_opens(tmp_path: Path):
    now = 10 * 86400.0
    ledger = Ledger(tmp_path / "usage.sqlite3", retention_days=2, clock=lambda: now)
    ledger.open()
    for ts in (now - 3 * 86400, now - 1 * 86400, now):
        ledger.append(record(ts=ts))
    ledger.close()
    assert len(rows(ledger.path)) == 3
    ledger.open()
    ledger.close()
    assert [r[0] for r in rows(ledger.path)] == [now - 86400, now]


def test_appends_from_another_thread_are_never_lost_while_the_writer_runs(tmp_path: Path):
    ledger = Ledger(tmp_path / "usage.sqlite3", flush_interval=0.001, max_batch=50)
    ledger.open()

    def burst(base: int) -> None:
        for i in range(2000):
            ledger.append(record(ts=float(base + i)))

    threads = [threading.Thread(target=burst, args=(k * 10000,)) for k in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ledger.close()
    assert len(rows(ledger.path)) == 4000


def test_flush_without_a_running_writer_says_so(tmp_path: Path):
    assert Ledger(tmp_path / "usage.sqlite3").flush(timeout=0.1) is False


def test_long_client_chosen_text_is_cut_in_the_row(tmp_path: Path):
    ledger = Ledger(tmp_path / "usage.sqlite3")
    ledger.open()
    ledger.append(record(client_model="m" * 5000, error_code="e" * 5000))
    ledger.close()
    row = rows(ledger.path)[0]
    assert len(row[COLUMNS.index("client_model")]) == 200 and len(row[COLUMNS.index("error_code")]) == 200


def test_a_batch_is_a_few_multi_row_statements_not_one_per_row(tmp_path: Path):
    """sqlite3 lets go of the GIL around every statement; the writer taking it back costs the event loop a
    handoff each time, so a batch of 1,200 rows must be a few statements (500, 500, 128, 64, 8), not 1,200."""
    ledger = Ledger(tmp_path / "usage.sqlite3", flush_interval=60)
    ledger.open()
    statements: list[str] = []
    try:
        assert ledger._conn is not None
        ledger._conn.set_trace_callback(statements.append)
        for i in range(1200):
            ledger.append(record(ts=1000.0 + i, key_name=f"k{i}"))
        assert ledger.flush()
    finally:
        ledger.close()
    inserts = [s for s in statements if s.startswith("INSERT")]
    assert len(inserts) == 5
    stored = rows(tmp_path / "usage.sqlite3")
    assert len(stored) == 1200
    assert [r[1] for r in stored] == [f"k{i}" for i in range(1200)]  # every row, in order



def test_a_failed_batch_is_retried_with_the_next_and_flush_waits_for_it(tmp_path: Path):
    ledger = Ledger(tmp_path / "usage.sqlite3", flush_interval=60)
    ledger.open()
    try:
        assert ledger._conn is not None
        blocker = sqlite3.connect(ledger.path, timeout=0)
        blocker.execute("BEGIN EXCLUSIVE")  # the writer cannot commit (its timeout is long, so shorten it)
        ledger._conn.execute("PRAGMA busy_timeout = 0")
        ledger.append(record(ts=1.0))
        assert ledger.flush(timeout=0.5) is False  # not committed, not dropped: still owed
        blocker.rollback()
        blocker.close()
        ledger.append(record(ts=2.0))
        assert ledger.flush(timeout=5)
    finally:
        ledger.close()
    assert [r[0] for r in rows(ledger.path)] == [1.0, 2.0]
