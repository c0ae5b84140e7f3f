"""ResponseStore: TTL and size bounds over an injected clock; output items become input items."""

from __future__ import annotations

from antigravity_gw.openai_api.responses_models import (
    CustomToolCallItem,
    FunctionCallItem,
    MessageItem,
    OutputText,
    ReasoningItem,
    Refusal,
    SummaryText,
)
from antigravity_gw.translate.responses_store import NO_REF, ResponseStore, StoredResponse, output_as_input
from antigravity_gw.translate.signatures import ToolCallRef


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def stored(text: str) -> StoredResponse:
    return StoredResponse("m", (MessageItem(role="user", content=text),))


def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    store = ResponseStore(ttl=60, clock=clock)
    store.put("resp_1", stored("a"))
    clock.now += 59.9
    assert store.get("resp_1") == stored("a")
    clock.now += 0.1
    assert store.get("resp_1") is None
    assert len(store) == 0


def test_the_oldest_entries_go_first_when_full() -> None:
    clock = Clock()
    store = ResponseStore(ttl=60, max_entries=2, clock=clock)
    for n in range(3):
        store.put(f"resp_{n}", stored(str(n)))
        clock.now += 1
    assert [store.get(f"resp_{n}") for n in range(3)] == [None, stored("1"), stored("2")]


def test_expired_entries_are_dropped_when_a_new_one_arrives() -> None:
    clock = Clock()
    store = ResponseStore(ttl=10, clock=clock)
    store.put("resp_old", stored("old"))
    clock.now += 11
    store.put("resp_new", stored("new"))
    assert len(store) == 1


def test_output_items_become_input_items() -> None:
    output = [
        {"id": "rs_1", "type": "reasoning", "summary": [{"type": "summary_text", "text": "t"}],
         "encrypted_content": "gemini-thought-signature:S"},
        {"id": "msg_1", "type": "message", "status": "completed", "role": "assistant",
         "content": [{"type": "output_text", "annotations": [], "logprobs": [], "text": "hi"},
                     {"type": "refusal", "refusal": "no"}]},
        {"id": "fc_1", "type": "function_call", "status": "completed", "arguments": "{}", "call_id": "call_1",
         "name": "f", "namespace": "ns"},
        {"id": "ctc_1", "type": "custom_tool_call", "status": "completed", "call_id": "call_2", "name": "p",
         "input": "raw"},
    ]
    assert output_as_input(output) == (
        ReasoningItem(type="reasoning", id="rs_1", summary=[SummaryText(type="summary_text", text="t")],
                      encrypted_content="gemini-thought-signature:S"),
        MessageItem(role="assistant", id="msg_1", content=[OutputText(type="output_text", text="hi"),
                                                           Refusal(type="refusal", refusal="no")]),
        FunctionCallItem(type="function_call", id="fc_1", call_id="call_1", name="f", arguments="{}",
                         namespace="ns"),
        CustomToolCallItem(type="custom_tool_call", id="ctc_1", call_id="call_2", name="p", input="raw"),
    )


def test_items_are_found_by_id_while_their_response_lives_and_puts_reach_the_sink() -> None:
    clock = Clock()
    store = ResponseStore(ttl=60, clock=clock)
    sunk: list[StoredResponse] = []
    store.sink = sunk.append
    item = {"id": "msg_1", "type": "message", "role": "assistant", "content": "hi"}
    response = StoredResponse("m", (), id="resp_1", output=(item,))
    store.put("resp_1", response)
    assert store.item("msg_1") == item and sunk == [response]
    store.load("resp_2", StoredResponse("m", (), id="resp_2"))  # read back from the database: not sunk again
    assert sunk == [response]
    clock.now += 61
    assert store.item("msg_1") is None  # expired with its response
    store.load_item("msg_9", {"id": "msg_9"})  # an item read back alone
    assert store.item("msg_9") == {"id": "msg_9"}
    store.forget("resp_2")
    assert store.item("msg_9") is None


def test_calls_are_remembered_within_their_bound() -> None:
    store = ResponseStore(max_calls=2)
    store.remember_calls({"call_a": ToolCallRef("g1", "S1"), "call_b": NO_REF})
    store.remember_calls({"call_c": ToolCallRef(None, "S3")})
    assert store.call("call_a") is None  # the oldest went first
    assert store.call("call_b") is NO_REF and store.call("call_c") == ToolCallRef(None, "S3")
