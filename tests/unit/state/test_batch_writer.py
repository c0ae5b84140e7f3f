"""state/batch_writer.py: the writer thread the SQLite stores share commits batches, settles what it
was handed, prunes on open, and writes a batch as a few multi-row statements of a bounded set of shapes."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import pytest

from antigravity_gw.state.batch_writer import BatchWriter, connect, insert_rows, insert_sizes

SCHEMA = "CREATE TABLE IF NOT EXISTS t (n INTEGER NOT NULL, s TEXT NOT NULL);"


class Numbers(BatchWriter[int]):
    """A store of numbers that gives up on the negative ones and prunes those above ``keep_below``."""

    schema = SCHEMA

    def __init__(self, path: Path, keep_below: int = 1_000_000) -> None:
        super().__init__(path, flush_interval=60, clock=time.monotonic)
        self.keep_below = keep_below
        self.stopped = False

    def append(self, n: int) -> None:
        self._enqueue(n)

    def _write(self, batch: list[int]) -> int:
        with self._transaction() as conn:
            insert_rows(conn, "t", ("n", "s"), [(n, str(n)) for n in batch if n >= 0])
        return len(batch)

    def _prune_rows(self, conn: sqlite3.Connection) -> None:
        conn.execute("DELETE FROM t WHERE n >= ?", (self.keep_below,))

    def _stopped(self) -> None:
        self.stopped = True


def stored(path: Path) -> list[tuple[int, str]]:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT n, s FROM t ORDER BY rowid").fetchall()
    finally:
        conn.close()


def test_flush_waits_until_the_writer_has_settled_every_item(tmp_path: Path):
    store = Numbers(tmp_path / "d" / "n.sqlite3")
    store.open()
    try:
        for n in (3, -1, 4):
            store.append(n)
        assert store.flush(timeout=5)
        assert stored(store.path) == [(3, "3"), (4, "4")]  # -1 given up, and still settled
    finally:
        store.close()
    assert store.stopped


def test_close_commits_what_is_pending_and_flush_then_says_not_running(tmp_path: Path):
    store = Numbers(tmp_path / "n.sqlite3")
    store.open()
    store.append(7)
    store.close()
    assert stored(store.path) == [(7, "7")]
    assert store.flush(timeout=0.1) is False


def test_opening_prunes_and_the_file_is_in_wal_mode(tmp_path: Path):
    store = Numbers(tmp_path / "n.sqlite3")
    store.open()
    for n in (1, 50, 2):
        store.append(n)
    store.close()
    store = Numbers(tmp_path / "n.sqlite3", keep_below=10)
    store.open()
    store.close()
    assert stored(store.path) == [(1, "1"), (2, "2")]
    conn = sqlite3.connect(store.path)
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


def test_rows_go_in_a_few_multi_row_statements_in_order(tmp_path: Path):
    conn = connect(tmp_path / "n.sqlite3", SCHEMA)
    statements: list[str] = []
    conn.set_trace_callback(statements.append)
    insert_rows(conn, "t", ("n", "s"), [(n, str(n)) for n in range(777)])
    conn.set_trace_callback(None)
    assert [s.count("), (") + 1 for s in statements] == [500, 256, 16, 4, 1]
    assert conn.execute("SELECT n, s FROM t ORDER BY rowid").fetchall() == [(n, str(n)) for n in range(777)]
    conn.close()


def test_batches_of_any_size_use_ten_statement_shapes_at_most():
    """Each distinct statement stays compiled in sqlite3's cache (a 400-row INSERT is most of a megabyte):
    one shape per batch size once grew the gateway by ~90 MB under load."""
    shapes: set[int] = set()
    for rows in range(1, 2100):
        sizes = insert_sizes(rows)
        assert sum(sizes) == rows and len(sizes) <= 13
        shapes.update(sizes)
    assert len(shapes) <= 10


def test_the_cutoff_is_retention_days_back_and_none_when_keeping_everything(tmp_path: Path):
    store = Numbers(tmp_path / "n.sqlite3")
    store.clock = lambda: 1_000_000.0
    assert store._cutoff() == float("-inf")  # retention_days 0: keep everything
    store.retention_days = 2
    assert store._cutoff() == 1_000_000.0 - 2 * 86400


def test_a_transaction_that_raises_writes_nothing(tmp_path: Path):
    store = Numbers(tmp_path / "n.sqlite3")
    store.open()
    try:
        with pytest.raises(RuntimeError), store._transaction() as conn:
            conn.execute("INSERT INTO t (n, s) VALUES (1, '1')")
            raise RuntimeError("half-way")
        store.append(2)
        assert store.flush(timeout=5)
        assert stored(store.path) == [(2, "2")]
    finally:
        store.close()
