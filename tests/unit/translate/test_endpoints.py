"""The endpoints and their typed parsed requests: chaining through the store, saving finished responses,
the Responses stream framing through the real StreamAdapter (including the gateway's own failure), and
each API's own error body."""

from __future__ import annotations

import itertools
from typing import Any

import orjson
import pytest

from antigravity_gw.errors import GatewayError, NotFound, UnknownRoute
from antigravity_gw.mitm.stream import StreamAdapter
from antigravity_gw.openai_api.responses_models import MessageItem, OutputText
from antigravity_gw.openai_api.routes import RouteKind
from antigravity_gw.translate.endpoints import (
    ChatEndpoint,
    CompletionsEndpoint,
    Endpoints,
    Ids,
    NeedsStoredState,
    ParsedRequest,
    ResponsesEndpoint,
)
from antigravity_gw.translate.responses_store import ResponseStore

ANSWER = {"candidates": [{"content": {"parts": [{"text": "Hi!"}]}, "finishReason": "STOP"}]}


def ids(response_id: str = "resp_1") -> Ids:
    counter = itertools.count(1)
    return Ids(response_id, 1700000000, lambda: f"t{next(counter)}")


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gemini-2.5-flash", **fields})


def sse(*events: dict[str, Any]) -> bytes:
    return b"".join(b"data: " + orjson.dumps({"response": e}) + b"\n\n" for e in events)


def frames(raw: bytes) -> list[dict[str, Any]]:
    out = []
    for frame in raw.split(b"\n\n")[:-1]:
        event, data = frame.split(b"\n")
        parsed = orjson.loads(data.removeprefix(b"data: "))
        assert event == b"event: " + parsed["type"].encode()
        out.append(parsed)
    return out


def test_the_registry_serves_all_three_apis_with_its_own_store() -> None:
    store = ResponseStore()
    endpoints = Endpoints(store)
    assert isinstance(endpoints.for_route(RouteKind.CHAT), ChatEndpoint)
    responses = endpoints.for_route(RouteKind.RESPONSES)
    assert isinstance(responses, ResponsesEndpoint) and responses.store is store is endpoints.response_store
    assert isinstance(endpoints.for_route(RouteKind.COMPLETIONS), CompletionsEndpoint)
    assert Endpoints().response_store is not Endpoints().response_store  # no state shared between owners


def test_a_route_without_an_api_is_a_404() -> None:
    with pytest.raises(UnknownRoute) as info:
        Endpoints().for_route(RouteKind.MODELS)
    assert info.value.status == 404


def test_session_keys() -> None:
    responses = ResponsesEndpoint(ResponseStore())
    assert responses.parse(body(input="x", prompt_cache_key="sess-1")).session_key == "sess-1"
    assert responses.parse(body(input="x")).session_key == ""
    assert ChatEndpoint().parse(body(messages=[{"role": "user", "content": "x"}])).session_key == ""
    assert CompletionsEndpoint().parse(body(prompt="x")).session_key == ""


def test_every_parsed_request_names_its_model_and_stream() -> None:
    parsed: list[ParsedRequest] = [
        ChatEndpoint().parse(body(messages=[{"role": "user", "content": "x"}], stream=True)),
        ResponsesEndpoint(ResponseStore()).parse(body(input="x", stream=True)),
        CompletionsEndpoint().parse(body(prompt="x", stream=True)),
    ]
    assert [(p.model, p.stream) for p in parsed] == [("gemini-2.5-flash", True)] * 3
    assert CompletionsEndpoint().parse(body(prompt="x")).stream is False


def test_every_api_answers_errors_in_its_own_shape() -> None:
    err = GatewayError("boom")
    expected = {"error": {"message": "boom", "type": "server_error", "param": None, "code": "internal_error"}}
    for endpoint, raw in ((ChatEndpoint(), body(messages=[{"role": "user", "content": "x"}])),
                          (ResponsesEndpoint(ResponseStore()), body(input="x")),
                          (CompletionsEndpoint(), body(prompt="x"))):
        assert endpoint.parse(raw).error_body(err) == expected
        assert endpoint.error_shape.body(err) == expected


def test_a_chat_stream_that_the_gateway_fails_ends_with_one_error_body() -> None:
    endpoint = ChatEndpoint()
    parsed = endpoint.parse(body(messages=[{"role": "user", "content": "x"}], stream=True))
    translator = parsed.stream_translator(ids("chatcmpl-1"))
    adapter = StreamAdapter(translator, endpoint.stream_format, lambda e: e.get("response", e))
    translator.feed = None  # type: ignore[assignment,method-assign]  # a bug: calling it raises TypeError
    out = adapter(sse(ANSWER))
    assert out == (b'data: {"error":{"message":"Internal gateway error while translating the stream: '
                   b'TypeError","type":"server_error","param":null,"code":"internal_error"}}\n\n'
                   b"data: [DONE]\n\n")


def test_a_non_stream_response_is_saved_and_chained() -> None:
    endpoint = ResponsesEndpoint(ResponseStore())
    first = endpoint.parse(body(input="hello"))
    answer = first.complete(ANSWER, ids("resp_1"))
    assert answer["output"][0]["content"][0]["text"] == "Hi!"
    chained = endpoint.parse(orjson.dumps({"previous_response_id": "resp_1", "input": "more"}))
    assert chained.model == "gemini-2.5-flash"
    assert chained.call.history == 2
    assert chained.call.items == (
        MessageItem(role="user", content="hello"),
        MessageItem(role="assistant", id="msg_t1", content=[OutputText(type="output_text", text="Hi!")]),
        MessageItem(role="user", content="more"),
    )


def test_a_stream_is_saved_when_it_completes_and_not_with_store_false() -> None:
    store = ResponseStore()
    endpoint = ResponsesEndpoint(store)
    for response_id, extra in (("resp_kept", {}), ("resp_unstored", {"store": False})):
        parsed = endpoint.parse(body(input="hello", stream=True, **extra))
        adapter = StreamAdapter(parsed.stream_translator(ids(response_id)), endpoint.stream_format,
                                lambda e: e.get("response", e))
        out = adapter(sse(ANSWER))
        out += adapter(b"")
        assert frames(out)[-1]["type"] == "response.completed"
    assert store.get("resp_kept") is not None
    assert store.get("resp_unstored") is None


def test_a_failed_stream_is_not_saved() -> None:
    store = ResponseStore()
    endpoint = ResponsesEndpoint(store)
    parsed = endpoint.parse(body(input="hello", stream=True))
    adapter = StreamAdapter(parsed.stream_translator(ids()), endpoint.stream_format,
                            lambda e: e.get("response", e))
    events = frames(adapter(b'data: {"error": {"code": 503, "status": "UNAVAILABLE", "message": "x"}}\n\n'))
    assert events[-1]["type"] == "response.failed"
    assert adapter(b"") == b""
    assert store.get("resp_1") is None


def test_an_unknown_previous_response_id_is_a_404() -> None:
    endpoint = ResponsesEndpoint(ResponseStore())
    with pytest.raises(NeedsStoredState) as need:  # not in memory: the glue asks the database first
        endpoint.parse(body(input="x", previous_response_id="resp_gone"))
    assert (need.value.responses, need.value.items, need.value.calls) == (["resp_gone"], [], [])
    with pytest.raises(NotFound) as info:
        need.value.reparse()  # the database did not have it either
    assert (info.value.status, info.value.code, info.value.param) == (
        404, "previous_response_not_found", "previous_response_id")
    assert "resp_gone" in info.value.message


def explode(translator: Any) -> None:
    """A bug inside the translator, after it produced some events for the current call."""
    original = translator._event

    def broken(event: Any, out: list[Any]) -> None:
        original(event, out)
        raise KeyError("boom")

    translator._event = broken


def test_the_gateway_failing_mid_stream_still_ends_with_response_failed() -> None:
    endpoint = ResponsesEndpoint(ResponseStore())
    parsed = endpoint.parse(body(input="x", stream=True, store=False))
    translator = parsed.stream_translator(ids())
    adapter = StreamAdapter(translator, endpoint.stream_format, lambda e: e.get("response", e))
    explode(translator._translator)  # inside the saving wrapper
    events = frames(adapter(sse({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})))
    # the events of the call that raised never left: the stream starts over with response.created
    assert [(e["type"], e["sequence_number"]) for e in events] == [
        ("response.created", 0), ("response.in_progress", 1), ("response.failed", 2)]
    assert events[-1]["response"]["error"] == {
        "code": "server_error", "message": "Internal gateway error while translating the stream: KeyError"}
    assert adapter(b"") == b""


def test_a_failure_after_events_went_out_continues_their_numbering() -> None:
    endpoint = ResponsesEndpoint(ResponseStore())
    parsed = endpoint.parse(body(input="x", stream=True, store=False))
    translator = parsed.stream_translator(ids())
    adapter = StreamAdapter(translator, endpoint.stream_format, lambda e: e.get("response", e))
    text = {"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]}
    first = frames(adapter(sse(text)))
    explode(translator._translator)  # inside the saving wrapper
    rest = frames(adapter(sse(text, text)))
    assert [e["sequence_number"] for e in first + rest] == list(range(len(first) + len(rest)))
    assert [e["type"] for e in rest] == ["response.failed"]
    assert rest[0]["response"]["output"][0]["status"] == "incomplete"


def test_completions_stream_frames_end_with_done() -> None:
    endpoint = CompletionsEndpoint()
    parsed = endpoint.parse(body(prompt="x", stream=True))
    adapter = StreamAdapter(parsed.stream_translator(ids("cmpl-1")), endpoint.stream_format,
                            lambda e: e.get("response", e))
    out = adapter(sse(ANSWER)) + adapter(b"")
    assert out == (b'data: {"id":"cmpl-1","object":"text_completion","created":1700000000,'
                   b'"model":"gemini-2.5-flash","choices":[{"text":"Hi!","index":0,"logprobs":null,'
                   b'"finish_reason":null}]}\n\n'
                   b'data: {"id":"cmpl-1","object":"text_completion","created":1700000000,'
                   b'"model":"gemini-2.5-flash","choices":[{"text":"","index":0,"logprobs":null,'
                   b'"finish_reason":"stop"}]}\n\n'
                   b"data: [DONE]\n\n")



def test_events_translated_before_a_failure_in_the_same_chunk_still_go_out() -> None:
    endpoint = ResponsesEndpoint(ResponseStore())
    parsed = endpoint.parse(body(input="x", stream=True, store=False))
    translator = parsed.stream_translator(ids())
    adapter = StreamAdapter(translator, endpoint.stream_format, lambda e: e.get("response", e))
    calls = itertools.count()
    original = translator._translator._event

    def second_call_breaks(event: Any, out: list[Any]) -> None:
        original(event, out)
        if next(calls) == 1:
            raise KeyError("boom")

    translator._translator._event = second_call_breaks
    events = frames(adapter(sse({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]},
                                {"candidates": [{"content": {"parts": [{"text": " there"}]}}]})))
    assert [(e["type"], e["sequence_number"]) for e in events] == [
        ("response.created", 0), ("response.in_progress", 1), ("response.output_item.added", 2),
        ("response.content_part.added", 3), ("response.output_text.delta", 4), ("response.failed", 5)]
    assert events[-1]["response"]["output"][0]["status"] == "incomplete"


# ---- Anthropic's Messages API -------------------------------------------------------------------------
def messages_body(**fields: Any) -> bytes:
    return body(messages=[{"role": "user", "content": "x"}], **fields)


def test_the_messages_endpoints_are_registered_and_keyed_by_metadata_user_id() -> None:
    endpoints = Endpoints()
    messages = endpoints.for_route(RouteKind.MESSAGES)
    parsed = messages.parse(messages_body(max_tokens=10, metadata={"user_id": "user-7"}, stream=True))
    assert (parsed.model, parsed.stream, parsed.session_key) == ("gemini-2.5-flash", True, "user-7")
    assert parsed.rpc == ""
    assert messages.parse(messages_body(max_tokens=10)).session_key == ""
    counting = endpoints.for_route(RouteKind.COUNT_TOKENS).parse(messages_body(stream=True, temperature=0.1))
    assert (counting.rpc, counting.stream, counting.session_key) == ("countTokens", False, "")
    assert "generationConfig" not in counting.to_gemini("gemini-2.5-flash", {})
    assert counting.complete({"totalTokens": 12}, ids()) == {"input_tokens": 12}
    with pytest.raises(GatewayError, match="totalTokens"):
        counting.complete({}, ids())


def test_a_messages_stream_the_gateway_fails_ends_with_an_anthropic_error_event() -> None:
    endpoint = Endpoints().for_route(RouteKind.MESSAGES)
    translator = endpoint.parse(messages_body(max_tokens=10, stream=True)).stream_translator(ids("msg_1"))
    adapter = StreamAdapter(translator, endpoint.stream_format, lambda e: e.get("response", e))
    first = frames(adapter(sse({"candidates": [{"content": {"parts": [{"text": "Hi"}]}}]})))
    assert [f["type"] for f in first] == [
        "message_start", "ping", "content_block_start", "content_block_delta"]
    translator.feed = None  # type: ignore[assignment,method-assign]  # a bug: calling it raises TypeError
    (error,) = frames(adapter(sse(ANSWER)))
    assert error == {"type": "error", "error": {"type": "api_error", "message": (
        "Internal gateway error while translating the stream: TypeError")}}


def test_the_messages_answer_and_errors_are_anthropics() -> None:
    parsed = Endpoints().for_route(RouteKind.MESSAGES).parse(messages_body(max_tokens=10))
    message = parsed.complete(ANSWER, ids("msg_1"))
    assert message["content"] == [{"type": "text", "text": "Hi!"}] and message["id"] == "msg_1"
    assert parsed.error_body(GatewayError("boom"))["error"] == {"type": "api_error", "message": "boom"}
