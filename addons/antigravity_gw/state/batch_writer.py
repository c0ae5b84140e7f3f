"""The machinery the SQLite stores share (the usage ledger, the stored responses): a writer thread that
commits what the event loop queued, in batches, and prunes on a schedule.

Rules:
- the event loop only appends to a deque (thread-safe, no lock, no I/O); the writer thread wakes every
  ``flush_interval`` seconds (sooner when asked) and hands what has accumulated to ``_write``, which
  commits it as one transaction;
- WAL with ``synchronous=NORMAL``: a committed batch survives the process being killed (it is in the
  OS's hands), and SQLite's journal keeps the file consistent whatever happens (readers never block the
  writer);
- ``flush()`` waits until every item appended so far is settled: committed, or given up by ``_write``;
- ``_prune_rows`` runs when the writer starts and then hourly.
Writes are a few multi-row statements per batch, never one per row (``insert_rows``, below).
"""

from __future__ import annotations

import collections
import contextlib
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

PRUNE_EVERY = 3600.0
# Many rows per INSERT statement, not ``executemany``: sqlite3 lets go of the GIL around every statement it
# steps, and each time the writer thread wants it back it waits up to the 5 ms switch interval and then
# makes the event loop stop until the OS has scheduled the writer. Row by row that was a hundred
# handoffs per batch (scripts/bench at c=16 lost requests per second to it); a few per batch is nothing.
# 500 rows x 16 columns stays far below SQLite's limit of 32766 parameters.
ROWS_PER_INSERT = 500
# sqlite3 keeps each distinct statement compiled (up to 128), and a compiled 400-row INSERT is most of a
# megabyte: a batch is cut into 500s and then powers of two, so only ten shapes per table ever exist.
_LADDER = (ROWS_PER_INSERT, 256, 128, 64, 32, 16, 8, 4, 2, 1)


def insert_sizes(rows: int) -> list[int]:
    """How many rows each INSERT of a batch carries: 500s, then the rest in powers of two."""
    sizes = []
    for size in _LADDER:
        count, rows = divmod(rows, size)
        sizes += [size] * count
    return sizes


def insert_statement(table: str, columns: Sequence[str], rows: int, *, verb: str = "INSERT") -> str:
    row = f"({', '.join('?' * len(columns))})"
    return f"{verb} INTO {table} ({', '.join(columns)}) VALUES {', '.join([row] * rows)}"


def insert_rows(conn: sqlite3.Connection, table: str, columns: Sequence[str],
                rows: Sequence[Sequence[object]], *, verb: str = "INSERT") -> None:
    """Insert ``rows`` in as few statements as the ladder allows (inside the caller's transaction)."""
    start = 0
    for size in insert_sizes(len(rows)):
        chunk = rows[start:start + size]
        conn.execute(insert_statement(table, columns, size, verb=verb), [v for row in chunk for v in row])
        start += size


def connect(path: Path, schema: str, *, timeout: float = 5.0) -> sqlite3.Connection:
    """A connection in WAL mode with ``schema`` in place (creating the file and its folder if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(schema)
    return conn


class BatchWriter[T]:
    """A SQLite file written by one thread in batches; a store subclasses it with ``_write`` (commit a
    batch, say how many items are settled) and ``_prune_rows`` (delete what is older than
    ``retention_days``: 0 keeps everything)."""

    schema = ""
    thread_name = "ag-batch-writer"

    def __init__(self, path: Path, *, retention_days: float = 0.0, flush_interval: float,
                 clock: Callable[[], float]) -> None:
        self.path = path
        self.retention_days = retention_days
        self.flush_interval = flush_interval
        self.clock = clock
        self._pending: collections.deque[T] = collections.deque()
        self._wake = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._conn: sqlite3.Connection | None = None  # the writer's
        self._appended = 0  # items ever appended / settled: flush() waits for the gap to close
        self._settled = 0
        self._settled_cond = threading.Condition()
        self._next_prune = 0.0

    # ---- event-loop side: cheap --------------------------------------------------------------------
    def _enqueue(self, item: T) -> int:
        """Queue ``item`` for the writer; return how many items now wait."""
        self._pending.append(item)
        self._appended += 1
        return len(self._pending)

    # ---- lifecycle (blocking: call from a thread when on the event loop) ----------------------------
    def open(self) -> None:
        """Open (or create) the file and start the writer; ``sqlite3.Error``/``OSError`` if it cannot."""
        self._conn = connect(self.path, self.schema)
        self._prune()
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
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
        """Block until everything appended so far is settled; False on timeout or when not running."""
        target = self._appended
        if self._thread is None:
            return False
        self._wake.set()
        with self._settled_cond:
            return self._settled_cond.wait_for(lambda: self._settled >= target, timeout)

    # ---- writer thread -----------------------------------------------------------------------------
    def _run(self) -> None:
        while True:
            self._wake.wait(self.flush_interval)
            self._wake.clear()
            stopping = self._stopping
            pending = self._pending
            settled = self._write([pending.popleft() for _ in range(len(pending))])
            if settled:
                self._settle(settled)
            if self.clock() >= self._next_prune:
                self._prune()
            if stopping:
                self._stopped()
                return

    def _write(self, batch: list[T]) -> int:
        """Commit ``batch`` (possibly empty); return how many items are settled (committed or given up)."""
        raise NotImplementedError

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """The writer's connection in one transaction: committed when the block ends, rolled back when it
        raises."""
        assert self._conn is not None
        with self._conn:  # isolation_level=None: ``with`` alone does not open a transaction
            self._conn.execute("BEGIN")
            yield self._conn

    def _stopped(self) -> None:
        """The writer's last batch is done (a store with items it could not write says so here)."""

    def _settle(self, count: int) -> None:
        with self._settled_cond:
            self._settled += count
            self._settled_cond.notify_all()

    def _prune(self) -> None:
        self._next_prune = self.clock() + PRUNE_EVERY
        if self._conn is not None:
            self._prune_rows(self._conn)

    def _prune_rows(self, conn: sqlite3.Connection) -> None:
        """Delete the rows the store no longer keeps (run by the writer, and once when opening)."""
        raise NotImplementedError

    def _cutoff(self) -> float:
        """The timestamp rows older than ``retention_days`` are older than (-inf when keeping everything)."""
        return self.clock() - self.retention_days * 86400 if self.retention_days > 0 else float("-inf")
