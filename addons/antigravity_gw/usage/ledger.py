"""The usage ledger: one SQLite row per billed client request, written off the event loop in batches.

Rules (the batching writer itself is ``state/batch_writer.py``, shared with the stored responses):
- the event loop only appends a ``RequestRecord`` to a deque (thread-safe, no lock, no I/O); a writer
  thread commits whatever has accumulated every ``flush_interval`` seconds (sooner when ``max_batch``
  rows wait), one transaction per batch;
- WAL with ``synchronous=NORMAL``: a committed batch survives the process being killed (it is in the
  OS's hands), so a crash loses at most the batch not yet committed, and SQLite's journal keeps the
  file consistent whatever happens (readers, such as ``scripts/ag usage``, never block the writer);
- a batch that fails to commit (disk full, file locked) is kept and tried again, up to ``MAX_PENDING``
  rows; beyond that the oldest are dropped with a warning rather than growing memory without end;
- rows older than ``retention_days`` are deleted when the writer starts and then hourly.
Keys are never written: only their names.
"""

from __future__ import annotations

import logging
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path

from ..state import batch_writer
from ..state.batch_writer import BatchWriter, insert_rows
from .record import RequestRecord

logger = logging.getLogger(__name__)

FILE_NAME = "usage.sqlite3"
MAX_PENDING = 200_000
COLUMNS = (
    "ts",
    "key_name",
    "route",
    "client_model",
    "mapped_model",
    "account",
    "status",
    "attempts",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "duration_ms",
    "first_chunk_ms",
    "error_code",
    "stream",
)
SCHEMA = """
CREATE TABLE IF NOT EXISTS requests (
    id INTEGER PRIMARY KEY,
    ts REAL NOT NULL,
    key_name TEXT NOT NULL DEFAULT '',
    route TEXT NOT NULL DEFAULT '',
    client_model TEXT NOT NULL DEFAULT '',
    mapped_model TEXT NOT NULL DEFAULT '',
    account TEXT NOT NULL DEFAULT '',
    status INTEGER NOT NULL DEFAULT 0,
    attempts INTEGER NOT NULL DEFAULT 0,
    prompt_tokens INTEGER NOT NULL DEFAULT 0,
    completion_tokens INTEGER NOT NULL DEFAULT 0,
    cached_tokens INTEGER NOT NULL DEFAULT 0,
    reasoning_tokens INTEGER NOT NULL DEFAULT 0,
    duration_ms REAL,
    first_chunk_ms REAL,
    error_code TEXT NOT NULL DEFAULT '',
    stream INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS requests_ts ON requests (ts);
"""
MAX_TEXT = 200  # a model name or an error can come from the client: a row stays small whatever it sent


def row_of(r: RequestRecord) -> tuple[object, ...]:
    return (
        r.ts,
        r.key_name,
        r.route,
        r.client_model[:MAX_TEXT],
        r.mapped_model[:MAX_TEXT],
        r.account,
        r.status,
        r.attempts,
        r.prompt_tokens,
        r.completion_tokens,
        r.cached_tokens,
        r.reasoning_tokens,
        r.duration_ms,
        r.first_chunk_ms,
        r.error_code[:MAX_TEXT],
        int(r.stream),
    )


def connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in WAL mode with the table in place (creating the file and its folder if needed)."""
    return batch_writer.connect(path, SCHEMA, timeout=timeout)


class Ledger(BatchWriter[RequestRecord]):
    schema = SCHEMA
    thread_name = "ag-usage-ledger"

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 90.0,
        flush_interval: float = 0.5,
        max_batch: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, retention_days=retention_days, flush_interval=flush_interval, clock=clock)
        self.max_batch = max_batch
        self._retry: list[tuple[object, ...]] = []  # rows a failed batch left, tried again with the next

    # ---- event-loop side: cheap ------------------------------------------------------------------
    def append(self, record: RequestRecord) -> None:
        if self._enqueue(record) == self.max_batch:
            self._wake.set()

    # ---- writer thread -----------------------------------------------------------------------------
    def _write(self, batch: list[RequestRecord]) -> int:
        """Commit the retried rows and the new ones; keep what must be tried again."""
        rows = self._retry + [row_of(r) for r in batch]
        self._retry = []
        if not rows:
            return 0
        try:
            with self._transaction() as conn:
                insert_rows(conn, "requests", COLUMNS, rows)
        except sqlite3.Error as e:
            dropped = max(0, len(rows) - MAX_PENDING)
            logger.warning(
                "usage ledger: cannot write %d row(s) to %s (%s); will retry%s",
                len(rows),
                self.path,
                e,
                f", dropping the oldest {dropped}" if dropped else "",
            )
            self._retry = rows[dropped:]
            return dropped
        return len(rows)  # a row is settled once: committed, or dropped

    def _stopped(self) -> None:
        if self._retry:
            logger.error("usage ledger: %d row(s) could not be written to %s", len(self._retry), self.path)
            self._retry = []  # lost with the writer: a reopened ledger starts clean

    def _prune_rows(self, conn: sqlite3.Connection) -> None:
        if self.retention_days <= 0:
            return
        try:
            deleted = conn.execute("DELETE FROM requests WHERE ts < ?", (self._cutoff(),)).rowcount
        except sqlite3.Error as e:
            logger.warning("usage ledger: pruning %s failed (%s)", self.path, e)
            return
        if deleted:
            logger.info("usage ledger: pruned %d row(s) older than %g day(s)", deleted, self.retention_days)
