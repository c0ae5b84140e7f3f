"""The Responses API's stored responses on disk: ``responses.sqlite3`` in ``ag_data_dir``.

The durable half of ``translate/responses_store.py`` (the in-memory half the requests read first). The
writer is ``batch_writer.py``'s, the usage ledger's too:
- the event loop only appends to a deque (``append_put``: no lock, no I/O); a writer
  thread commits what has accumulated, one transaction per batch (a response, its items and its calls
  are written together or not at all), each table in a few multi-row statements;
- WAL with ``synchronous=NORMAL``: a committed batch survives the process being killed;
- the reads (``load``, ``response``, ``input_items``, ``delete``) block: the glue runs them in a thread;
- bounded: rows older than ``retention_days`` and, beyond ``max_bytes`` of stored JSON, the oldest rows
  are deleted when the writer starts, after a batch that passed the cap, and hourly.
A row holds one response: its object as the client got it, its own input items, its output items (with
the reasoning signatures) and the Gemini data of its tool calls; a chained conversation is rebuilt by
walking ``previous_id`` (no row repeats its history).
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ..translate.responses_store import StoredResponse, output_as_input
from ..translate.signatures import ToolCallRef
from . import batch_writer
from .batch_writer import BatchWriter, insert_rows

logger = logging.getLogger(__name__)

FILE_NAME = "responses.sqlite3"
MAX_PENDING = 10_000
MAX_CHAIN = 10_000  # responses walked back through previous_id (a loop in the rows cannot hang a thread)
SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    id TEXT PRIMARY KEY,
    ts REAL NOT NULL,
    model TEXT NOT NULL,
    previous_id TEXT,
    created_at INTEGER NOT NULL,
    response BLOB NOT NULL,
    input BLOB NOT NULL,
    output BLOB NOT NULL,
    size INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS responses_ts ON responses (ts);
CREATE TABLE IF NOT EXISTS items (
    id TEXT PRIMARY KEY,
    response_id TEXT NOT NULL,
    item BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS items_response ON items (response_id);
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    response_id TEXT NOT NULL,
    gemini_id TEXT,
    signature TEXT
);
CREATE INDEX IF NOT EXISTS calls_response ON calls (response_id);
"""
RESPONSE_COLUMNS = ("id", "ts", "model", "previous_id", "created_at", "response", "input", "output", "size")
ITEM_COLUMNS = ("id", "response_id", "item")
CALL_COLUMNS = ("call_id", "response_id", "gemini_id", "signature")


@dataclass(slots=True)
class Loaded:
    """What a lookup found: responses (with their whole conversation), items and calls, by id."""

    responses: dict[str, StoredResponse] = field(default_factory=dict)
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    calls: dict[str, ToolCallRef] = field(default_factory=dict)


def connect(path: Path, *, timeout: float = 5.0) -> sqlite3.Connection:
    return batch_writer.connect(path, SCHEMA, timeout=timeout)


class ResponseDB(BatchWriter[StoredResponse]):
    schema = SCHEMA
    thread_name = "ag-response-store"

    def __init__(
        self,
        path: Path,
        *,
        retention_days: float = 30.0,
        max_bytes: int = 256 * 1024 * 1024,
        flush_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        super().__init__(path, retention_days=retention_days, flush_interval=flush_interval, clock=clock)
        self.max_bytes = max_bytes
        self._reader: sqlite3.Connection | None = None
        self._read_lock = threading.Lock()

    # ---- event-loop side: cheap --------------------------------------------------------------------
    def append_put(self, stored: StoredResponse) -> None:
        if len(self._pending) >= MAX_PENDING:
            return  # the disk is stuck: memory still serves; nothing grows without bound
        self._enqueue(stored)

    # ---- lifecycle (blocking) ----------------------------------------------------------------------
    def open(self) -> None:
        self._reader = connect(self.path)
        super().open()

    def close(self) -> None:
        super().close()
        if self._reader is not None:
            self._reader.close()
            self._reader = None

    # ---- reads (blocking) ----------------------------------------------------------------------------
    def load(self, response_ids: Iterable[str] = (), item_ids: Iterable[str] = (),
             call_ids: Iterable[str] = ()) -> Loaded:
        self.flush()  # a response answered a moment ago may still be on its way to the disk
        found = Loaded()
        with self._read_lock:
            conn = self._reading()
            for rid in response_ids:
                if (stored := self._conversation(conn, rid)) is not None:
                    found.responses[rid] = stored
            for item_id in item_ids:
                row = conn.execute("SELECT item FROM items WHERE id = ?", (item_id,)).fetchone()
                if row is not None:
                    found.items[item_id] = orjson.loads(row[0])
            for call_id in call_ids:
                row = conn.execute("SELECT gemini_id, signature FROM calls WHERE call_id = ?",
                                   (call_id,)).fetchone()
                if row is not None:
                    found.calls[call_id] = ToolCallRef(gemini_id=row[0], signature=row[1])
        return found

    def response(self, response_id: str) -> dict[str, Any] | None:
        self.flush()
        with self._read_lock:
            row = self._reading().execute("SELECT response FROM responses WHERE id = ? AND ts >= ?",
                                          (response_id, self._cutoff())).fetchone()
        return orjson.loads(row[0]) if row else None

    def input_items(self, response_id: str) -> list[dict[str, Any]] | None:
        self.flush()
        with self._read_lock:
            row = self._reading().execute("SELECT input FROM responses WHERE id = ? AND ts >= ?",
                                          (response_id, self._cutoff())).fetchone()
        return orjson.loads(row[0]) if row else None

    def delete(self, response_id: str) -> bool:
        """Delete now (not through the queue): the caller answers whether it existed."""
        self.flush()
        with self._read_lock:
            return self._delete(self._reading(), response_id) > 0

    def _reading(self) -> sqlite3.Connection:
        if self._reader is None:
            raise sqlite3.OperationalError("the response store is not open")
        return self._reader

    def _conversation(self, conn: sqlite3.Connection, response_id: str) -> StoredResponse | None:
        rows: list[tuple[Any, ...]] = []
        rid: str | None = response_id
        cutoff = self._cutoff()
        while rid is not None and len(rows) < MAX_CHAIN:
            row = conn.execute("SELECT id, model, previous_id, created_at, response, input, output, ts "
                               "FROM responses WHERE id = ?", (rid,)).fetchone()
            if row is None or row[7] < cutoff:
                break
            rows.append(row)
            rid = row[2]
        if not rows:
            return None
        items: list[Any] = []
        for row in reversed(rows):
            items.extend(output_as_input(orjson.loads(row[5])))
            items.extend(output_as_input(orjson.loads(row[6])))
        head = rows[0]
        calls = {call_id: ToolCallRef(gemini_id=gid, signature=sig) for call_id, gid, sig in conn.execute(
            "SELECT call_id, gemini_id, signature FROM calls WHERE response_id = ?", (response_id,))}
        return StoredResponse(model=head[1], items=tuple(items), id=head[0], created_at=head[3],
                              previous_response_id=head[2], response=orjson.loads(head[4]),
                              input=tuple(orjson.loads(head[5])), output=tuple(orjson.loads(head[6])),
                              calls=calls)

    # ---- writer thread -------------------------------------------------------------------------------
    def _write(self, batch: list[StoredResponse]) -> int:
        if not batch:
            return 0
        try:
            with self._transaction() as conn:
                self._put(conn, batch)
            if self.max_bytes and self._total_size() > self.max_bytes:
                self._prune()
        except sqlite3.Error as e:
            logger.warning("response store: cannot write %d change(s) to %s (%s); they are kept in memory "
                           "only", len(batch), self.path, e)
        return len(batch)

    def _put(self, conn: sqlite3.Connection, batch: list[StoredResponse]) -> None:
        responses, items, calls = [], [], []
        for stored in batch:
            response = orjson.dumps(stored.response)
            inputs = orjson.dumps(list(stored.input))
            output = orjson.dumps(list(stored.output))
            size = len(response) + len(inputs) + len(output)
            responses.append((stored.id, self.clock(), stored.model, stored.previous_response_id,
                              stored.created_at, response, inputs, output, size))
            items += [(item_id, stored.id, orjson.dumps(item)) for item_id, item in stored.indexed_items()]
            calls += [(cid, stored.id, ref.gemini_id, ref.signature) for cid, ref in stored.calls.items()
                      if ref.gemini_id or ref.signature]
        insert_rows(conn, "responses", RESPONSE_COLUMNS, responses, verb="INSERT OR REPLACE")
        insert_rows(conn, "items", ITEM_COLUMNS, items, verb="INSERT OR REPLACE")
        insert_rows(conn, "calls", CALL_COLUMNS, calls, verb="INSERT OR REPLACE")

    @staticmethod
    def _delete(conn: sqlite3.Connection, response_id: str) -> int:
        deleted = conn.execute("DELETE FROM responses WHERE id = ?", (response_id,)).rowcount
        conn.execute("DELETE FROM items WHERE response_id = ?", (response_id,))
        conn.execute("DELETE FROM calls WHERE response_id = ?", (response_id,))
        return deleted

    def _total_size(self) -> int:
        assert self._conn is not None
        return int(self._conn.execute("SELECT COALESCE(SUM(size), 0) FROM responses").fetchone()[0])

    def _prune_rows(self, conn: sqlite3.Connection) -> None:
        """Delete what is older than the retention, then the oldest rows until the rest fits ``max_bytes``."""
        try:
            with self._read_lock, conn:
                conn.execute("BEGIN")
                doomed = "SELECT id FROM responses WHERE ts < ?"
                if self.retention_days > 0:
                    self._delete_where(conn, doomed, (self._cutoff(),))
                if self.max_bytes:
                    over = self._total_size() - self.max_bytes
                    if over > 0:
                        oldest = ("SELECT id FROM (SELECT id, SUM(size) OVER (ORDER BY ts, id ROWS UNBOUNDED "
                                  "PRECEDING) - size AS before FROM responses) WHERE before < ?")
                        self._delete_where(conn, oldest, (over,))
        except sqlite3.Error as e:
            logger.warning("response store: pruning %s failed (%s)", self.path, e)

    @staticmethod
    def _delete_where(conn: sqlite3.Connection, select_ids: str, params: tuple[Any, ...]) -> None:
        for table, column in (("items", "response_id"), ("calls", "response_id"), ("responses", "id")):
            conn.execute(f"DELETE FROM {table} WHERE {column} IN ({select_ids})", params)
