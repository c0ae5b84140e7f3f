"""state/response_db.py: stored responses reach the disk through the writer thread, a chain comes back
whole after a restart, items and calls are found by id, and the store stays within its age and size."""

from __future__ import annotations

import itertools
import sqlite3
from pathlib import Path
from typing import Any

import orjson
import pytest

from antigravity_gw.openai_api.responses_models import MessageItem
from antigravity_gw.state.response_db import FILE_NAME, ResponseDB
from antigravity_gw.translate.endpoints import Ids, NeedsStoredState, ResponsesEndpoint
from antigravity_gw.translate.responses_store import ResponseStore
from antigravity_gw.translate.signatures import ToolCallRef

TEXT = {"candidates": [{"content": {"role": "model", "parts": [{"text": "Hi!"}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2, "totalTokenCount": 5}}
CALL = {"candidates": [{"content": {"role": "model", "parts": [
    {"functionCall": {"name": "f", "args": {"a": 1}, "id": "gid-1"}, "thoughtSignature": "U0lH"}]},
    "finishReason": "STOP"}]}
TOOL = {"type": "function", "name": "f", "parameters": {"type": "object"}}


def ids(response_id: str) -> Ids:
    counter = itertools.count(1)
    return Ids(response_id, 1700000000, lambda: f"{response_id[-1]}{next(counter)}")


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gemini-2.5-flash", **fields})


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def opened(tmp_path: Path, clock: Clock, **kwargs: Any) -> ResponseDB:
    db = ResponseDB(tmp_path / FILE_NAME, clock=clock, flush_interval=60, **kwargs)
    db.open()
    return db


def answered(endpoint: ResponsesEndpoint, request: bytes, answer: dict[str, Any], response_id: str) -> Any:
    try:
        parsed = endpoint.parse(request)
    except NeedsStoredState as need:
        raise AssertionError(f"unexpected lookup: {need}") from None
    return parsed.complete(answer, ids(response_id))


def test_a_chain_survives_a_restart_and_comes_back_whole(tmp_path, clock):
    db = opened(tmp_path, clock)
    store = ResponseStore()
    store.sink = db.append_put
    endpoint = ResponsesEndpoint(store)
    first = answered(endpoint, body(input="hello"), TEXT, "resp_1")
    answered(endpoint, body(input="more", previous_response_id="resp_1"), TEXT, "resp_2")
    assert db.flush()
    db.close()

    db = opened(tmp_path, clock)  # a new process: nothing in memory
    fresh = ResponsesEndpoint(ResponseStore())
    with pytest.raises(NeedsStoredState) as need:
        fresh.parse(body(input="last", previous_response_id="resp_2"))
    found = db.load(need.value.responses)
    for rid, stored in found.responses.items():
        fresh.store.load(rid, stored)
    call = need.value.reparse().call
    texts = [(i.role, i.content if isinstance(i.content, str) else i.content[0].text) for i in call.items
             if isinstance(i, MessageItem)]
    assert texts == [("user", "hello"), ("assistant", "Hi!"), ("user", "more"), ("assistant", "Hi!"),
                     ("user", "last")]
    assert call.history == 4
    assert db.response("resp_1") == first
    assert [i["content"] for i in db.input_items("resp_2")] == [[{"type": "input_text", "text": "more"}]]
    db.close()


def with_a_call(tmp_path, clock) -> tuple[ResponseDB, Any]:
    """An open database holding resp_1, a response with one function call; and that response."""
    db = opened(tmp_path, clock)
    store = ResponseStore()
    store.sink = db.append_put
    return db, answered(ResponsesEndpoint(store), body(input="go", tools=[TOOL]), CALL, "resp_1")


def test_items_and_calls_are_found_by_id(tmp_path, clock):
    db, answer = with_a_call(tmp_path, clock)
    [fc] = [i for i in answer["output"] if i["type"] == "function_call"]
    assert len(fc["call_id"]) <= 64 and "U0lH" not in fc["call_id"]
    found = db.load(item_ids=[fc["id"], "fc_nope"], call_ids=[fc["call_id"], "call_nope"])
    assert found.items == {fc["id"]: fc}
    assert found.calls == {fc["call_id"]: ToolCallRef(gemini_id="gid-1", signature="U0lH")}
    db.close()


def test_delete_removes_the_response_its_items_and_calls(tmp_path, clock):
    db, answer = with_a_call(tmp_path, clock)
    assert db.delete("resp_1") is True
    assert db.delete("resp_1") is False
    assert db.response("resp_1") is None and db.input_items("resp_1") is None
    found = db.load(["resp_1"], [answer["output"][-1]["id"]], [answer["output"][-1]["call_id"]])
    assert (found.responses, found.items, found.calls) == ({}, {}, {})
    db.close()


def test_old_responses_are_not_served_and_are_pruned(tmp_path, clock):
    db = opened(tmp_path, clock, retention_days=1)
    store = ResponseStore()
    store.sink = db.append_put
    answered(ResponsesEndpoint(store), body(input="old"), TEXT, "resp_1")
    assert db.flush()
    clock.now += 2 * 86400
    assert db.response("resp_1") is None  # expired even before the hourly prune
    db.close()
    db = opened(tmp_path, clock, retention_days=1)  # opening prunes
    db.close()
    assert sqlite3.connect(tmp_path / FILE_NAME).execute("SELECT COUNT(*) FROM responses").fetchone() == (0,)


def test_the_size_cap_drops_the_oldest_first(tmp_path, clock):
    db = opened(tmp_path, clock, max_bytes=6000)
    store = ResponseStore()
    store.sink = db.append_put
    endpoint = ResponsesEndpoint(store)
    for n in range(1, 6):
        clock.now += 1
        answered(endpoint, body(input="x" * 1500), TEXT, f"resp_{n}")
        assert db.flush()
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    kept = [r[0] for r in conn.execute("SELECT id FROM responses ORDER BY ts")]
    total = conn.execute("SELECT SUM(size) FROM responses").fetchone()[0]
    assert total <= 6000
    assert kept and kept[-1] == "resp_5" and "resp_1" not in kept
    db.close()


def test_store_false_writes_nothing(tmp_path, clock):
    db = opened(tmp_path, clock)
    store = ResponseStore()
    store.sink = db.append_put
    request = body(input="secret", store=False, tools=[TOOL])
    answer = answered(ResponsesEndpoint(store), request, CALL, "resp_1")
    assert db.flush()
    assert db.response("resp_1") is None
    assert len(store) == 0
    [fc] = [i for i in answer["output"] if i["type"] == "function_call"]
    assert store.call(fc["call_id"]) == ToolCallRef(gemini_id="gid-1", signature="U0lH")  # memory only
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    assert conn.execute("SELECT COUNT(*) FROM calls").fetchone() == (0,)
    db.close()



def test_a_batch_is_a_few_multi_row_statements_not_one_per_row(tmp_path, clock):
    """sqlite3 lets go of the GIL around every statement; the writer taking it back costs the event loop a
    handoff each time, so 40 responses with an input item, a function call item and a call each are two
    INSERTs per table (32 + 8 rows, the ladder's shapes), not 120 or more."""
    db = opened(tmp_path, clock)
    store = ResponseStore()
    store.sink = db.append_put
    endpoint = ResponsesEndpoint(store)
    statements: list[str] = []
    assert db._conn is not None
    db._conn.set_trace_callback(statements.append)
    answers = []
    for n in range(40):
        parsed = endpoint.parse(body(input=[{"type": "message", "role": "user", "content": f"go {n}"}],
                                     tools=[TOOL]))
        item_ids = (f"{n}x{k}" for k in itertools.count(1))  # unique across the 40 responses
        answers.append(parsed.complete(CALL, Ids(f"resp_{n}", 1700000000, item_ids.__next__)))
    assert db.flush()
    inserts = [s.split()[4] for s in statements if s.startswith("INSERT")]  # the table of each
    conn = sqlite3.connect(tmp_path / FILE_NAME)
    counts = {t: conn.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
              for t in ("responses", "items", "calls")}
    conn.close()
    assert counts == {"responses": 40, "items": 80, "calls": 40}
    assert inserts == ["responses"] * 2 + ["items"] * 2 + ["calls"] * 2  # 32 + 8, 64 + 16, 32 + 8
    fc = answers[7]["output"][-1]
    found = db.load(["resp_39"], [fc["id"]], [fc["call_id"]])
    assert set(found.responses) == {"resp_39"} and found.items == {fc["id"]: fc}
    assert found.calls == {fc["call_id"]: ToolCallRef(gemini_id="gid-1", signature="U0lH")}
    db.close()
