"""The usage ledger: one SQLite row per billed client request, written off the event loop in batches.

Rules:
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

import collections
import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from .record import RequestRecord

logger = logging.getLogger(__name__)

FILE_NAME = "usage.sqlite3"
MAX_PENDING = 200_000
PRUNE_EVERY = 3600.0
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
# Many rows per INSERT statement, not ``executemany``: sqlite3 lets go of the GIL around every statement it
# steps, and each time the writer thread wants it back it waits up to the 5 ms switch interval and then
# makes the event loop stop until the OS has scheduled the writer. Row by row that was a hundred
# handoffs per batch (scripts/bench at c=16 lost requests per second to it); a few per batch is nothing.
# 500 x 16 parameters stays far below SQLite's limit of 32766.
ROWS_PER_INSERT = 500
# sqlite3 keeps each distinct statement compiled (up to 128), and a compiled 400-row INSERT is most of a
# megabyte: a batch is cut into 500s and then powers of two, so only ten statements ever exist.
_LADDER = (ROWS_PER_INSERT, 256, 128, 64, 32, 16, 8, 4, 2, 1)
_ROW = f"({', '.join('?' * len(COLUMNS))})"


def insert_statement(rows: int) -> str:
    return f"INSERT INTO requests ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}"


def insert_sizes(rows: int) -> list[int]:
    """How many rows each INSERT of a batch carries: 500s, then the rest in powers of two."""
    sizes = []
    for size in _LADDER:
        count, rows = divmod(rows, size)
        sizes += [size] * count
    return sizes


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
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(SCHEMA)
    return conn


class Ledger:
    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 90.0,
        flush_interval: float = 0.5,
        max_batch: int = 2000,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.path = path
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.max_batch = max_batch
        self.clock = clock
        self._pending: collections.deque[RequestRecord] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None
        self._appended = 0  # rows ever appended / committed (or dropped): flush() waits for the gap to close
        self._settled = 0
        self._settled_cond = threading.Condition()
        self._next_prune = 0.0

    # ---- event-loop side: cheap ------------------------------------------------------------------
    def append(self, record: RequestRecord) -> None:
        self._pending.append(record)
        self._appended += 1
        if len(self._pending) == self.max_batch:
            self._wake.set()

    # ---- lifecycle (blocking: call from a thread when on the event loop) ------------------------------
    def open(self) -> None:
        """Open (or create) the file and start the writer; ``sqlite3.Error``/``OSError`` if it cannot."""
        self._conn = connect(self.path)
        self._prune()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="ag-usage-ledger", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Commit what is pending and stop the writer."""
        thread, self._thread = self._thread, None
        if thread is not None:
            self._stopping = True
            self._wake.set()
            thread.join(timeout=30)
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def flush(self, timeout: float = 10.0) -> bool:
        """Block until every row appended so far is committed; False on timeout or when not running."""
        target = self._appended
        if self._thread is None:
            return False
        self._wake.set()
        with self._settled_cond:
            return self._settled_cond.wait_for(lambda: self._settled >= target, timeout)

    # ---- writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        retry: list[tuple[object, ...]] = []
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping
            retry = self._write(retry)
            if self.clock() >= self._next_prune:
                self._prune()
            if stopping:
                if retry:
                    logger.error("usage ledger: %d row(s) could not be written to %s", len(retry), self.path)
                return

    def _take(self) -> list[tuple[object, ...]]:
        rows = []
        pending = self._pending
        for _ in range(len(pending)):
            rows.append(row_of(pending.popleft()))
        return rows

    def _write(self, retry: list[tuple[object, ...]]) -> list[tuple[object, ...]]:
        """Commit the retried rows and the new ones; return what must be tried again."""
        rows = retry + self._take()
        if not rows:
            return []
        try:
            self._commit(rows)
        except sqlite3.Error as e:
            dropped = max(0, len(rows) - MAX_PENDING)
            logger.warning(
                "usage ledger: cannot write %d row(s) to %s (%s); will retry%s",
                len(rows),
                self.path,
                e,
                f", dropping the oldest {dropped}" if dropped else "",
            )
            self._settle(dropped)
            return rows[dropped:]
        self._settle(len(rows))  # a row is settled once: committed, or dropped
        return []

    def _commit(self, rows: Sequence[tuple[object, ...]]) -> None:
        assert self._conn is not None
        with self._conn:  # isolation_level=None: ``with`` alone does not open a transaction
            self._conn.execute("BEGIN")
            start = 0
            for size in insert_sizes(len(rows)):
                chunk = rows[start:start + size]
                self._conn.execute(insert_statement(size), [v for row in chunk for v in row])
                start += size

    def _settle(self, count: int) -> None:
        with self._settled_cond:
            self._settled += count
            self._settled_cond.notify_all()

    def _prune(self) -> None:
        self._next_prune = self.clock() + PRUNE_EVERY
        if self.retention_days <= 0 or self._conn is None:
            return
        cutoff = self.clock() - self.retention_days * 86400
        try:
            deleted = self._conn.execute("DELETE FROM requests WHERE ts < ?", (cutoff,)).rowcount
        except sqlite3.Error as e:
            logger.warning("usage ledger: pruning %s failed (%s)", self.path, e)
            return
        if deleted:
            logger.info("usage ledger: pruned %d row(s) older than %g day(s)", deleted, self.retention_days)
