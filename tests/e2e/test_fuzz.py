"""Property-based fuzzing of the three POST routes through one real mitmdump against the emulator.

Thousands of generated and mutated bodies (random JSON, valid requests with fields swapped for wrong types,
huge numbers, deep nesting, odd unicode; invalid UTF-8, truncated JSON, wrong content types, compressed
and corrupt-compressed bodies) must each get an answer within a timeout that is either a success or an
OpenAI-shaped 4xx error: never a 5xx, a hang, a dead gateway or a traceback in its log.

Bounded for CI: fixed example counts, derandomized (the same examples every run), no example database.
To hunt for more, ``AG_FUZZ_EXAMPLES=20000 AG_FUZZ_RANDOM=1`` runs that many fresh examples per test.
"""

from __future__ import annotations

import gzip
import os
import zlib
from collections.abc import Iterator
from typing import Any

import brotli
import orjson
import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from support.gateway import Gateway, write_account
from support.raw_http import Answer, RawClient

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

pytestmark = pytest.mark.e2e

ROUTES = ("/v1/chat/completions", "/v1/responses", "/v1/completions")
REQUEST_TIMEOUT = 15.0  # a "hang": far above any answer the emulator makes
EXAMPLES = int(os.environ.get("AG_FUZZ_EXAMPLES", "1200"))
# No shrinking: a failing example is reported as sent, and shrinking a hang would retry it for minutes.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=not os.environ.get("AG_FUZZ_RANDOM"),
                database=None, print_blob=True, suppress_health_check=list(HealthCheck),
                phases=[Phase.explicit, Phase.generate])

# --- valid bodies to mutate -------------------------------------------------------------------------------

PNG = "data:image/png;base64,iVBORw0KGgo="
TOOL_SCHEMA = {"type": "object", "properties": {"city": {"type": "string", "enum": ["a", "b"]},
                                                "n": {"type": "integer", "minimum": 0, "maximum": 10}},
               "required": ["city"]}
CHAT_BODIES: list[dict[str, Any]] = [
    {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "gemini-2.5-flash", "stream": True, "stream_options": {"include_usage": True},
     "messages": [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]},
    {"model": "gemini-2.5-pro", "temperature": 0.5, "top_p": 0.9, "max_tokens": 50, "n": 1, "seed": 7,
     "stop": ["x"], "presence_penalty": 0.1, "reasoning_effort": "low",
     "messages": [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                               {"type": "image_url", "image_url": {"url": PNG}}]}]},
    {"model": "gemini-2.5-flash", "tools": [{"type": "function", "function": {
        "name": "weather", "description": "d", "parameters": TOOL_SCHEMA}}], "tool_choice": "auto",
     "messages": [{"role": "user", "content": "weather?"},
                  {"role": "assistant", "content": None, "tool_calls": [
                      {"id": "c1", "type": "function",
                       "function": {"name": "weather", "arguments": '{"city":"a"}'}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": '{"t": 3}'}]},
    {"model": "gemini-2.5-flash", "response_format": {"type": "json_schema", "json_schema": {
        "name": "x", "schema": TOOL_SCHEMA}}, "messages": [{"role": "user", "content": "json"}]},
]
RESPONSES_BODIES: list[dict[str, Any]] = [
    {"model": "gemini-2.5-flash", "input": "hi"},
    {"model": "gemini-2.5-flash", "stream": True, "instructions": "be brief", "store": False,
     "reasoning": {"effort": "low", "summary": "auto"}, "max_output_tokens": 40,
     "input": [{"role": "user", "content": [{"type": "input_text", "text": "hi"},
                                            {"type": "input_image", "image_url": PNG}]}]},
    {"model": "gemini-2.5-flash",
     "tools": [{"type": "function", "name": "weather", "parameters": TOOL_SCHEMA},
               {"type": "web_search"}, {"type": "file_search", "vector_store_ids": []}],
     "input": [{"type": "message", "role": "user", "content": "weather?"},
               {"type": "function_call", "call_id": "c1", "name": "weather", "arguments": '{"city":"a"}'},
               {"type": "function_call_output", "call_id": "c1", "output": "3"}],
     "text": {"format": {"type": "json_schema", "name": "x", "schema": TOOL_SCHEMA}}},
]
COMPLETIONS_BODIES: list[dict[str, Any]] = [
    {"model": "gemini-2.5-flash", "prompt": "Say hi"},
    {"model": "gemini-2.5-flash", "prompt": ["Say hi"], "stream": True, "max_tokens": 20, "echo": True,
     "stop": "\n", "temperature": 1, "n": 1},
]
BODIES = {ROUTES[0]: CHAT_BODIES, ROUTES[1]: RESPONSES_BODIES, ROUTES[2]: COMPLETIONS_BODIES}

# --- strategies -------------------------------------------------------------------------------------------

HUGE_INTS = st.sampled_from([10**30, -(10**30), 2**63, 2**64, -(2**63) - 1, 2**31, -1, 0, 10**4000])
NUMBERS = st.one_of(st.integers(), HUGE_INTS, st.floats(allow_nan=False, allow_infinity=False))
TEXT = st.one_of(st.text(max_size=40), st.sampled_from(["", "\x00", "\ud7ff\ue000", "\U0001d573\U0001d58e",
                                                       "\u202e", "a" * 2000,
                                                       "http://[::1/x.png", "data:image/png;base64,!!",
                                                       "user", "assistant", "tool", "function", "text",
                                                       "image_url", "input_image", "input_text", "message",
                                                       '{"a":' * 300 + "1" + "}" * 300, "[" * 300 + "]" * 300,
                                                       '{"city": "a"}', "{", "#/$defs/x"]))
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, TEXT)
# What a hostile client puts into a field that is used verbatim (model names go into headers and URLs).
HOSTILE = st.one_of(HUGE_INTS, st.sampled_from(["a\nb", "a\r\nx-injected: 1", "x" * 300, "x" * 20000,
                                                "\x00", "",
                                                "../../etc", "a?b#c", "%0d%0a", " ", "\u2028", [], {}, None,
                                                True, 1.5]))
JSON_VALUES = st.recursive(SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)


def paths(value: Any, prefix: tuple[Any, ...] = ()) -> Iterator[tuple[Any, ...]]:
    """Every path into a JSON value (the root included)."""
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from paths(item, (*prefix, index))


def replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: replaced(value[head], rest, new)}
    copy = list(value)
    copy[head] = replaced(value[head], rest, new)
    return copy


def deleted(value: Any, path: tuple[Any, ...]) -> Any:
    if len(path) == 1:
        if isinstance(value, dict):
            return {k: v for k, v in value.items() if k != path[0]}
        return [v for i, v in enumerate(value) if i != path[0]]
    head = path[0]
    if isinstance(value, dict):
        return {**value, head: deleted(value[head], path[1:])}
    return [deleted(v, path[1:]) if i == head else v for i, v in enumerate(value)]


def nested(depth: int, leaf: Any) -> Any:
    for i in range(depth):
        leaf = [leaf] if i % 2 else {"a": leaf}
    return leaf


def encode(value: Any) -> bytes:
    """JSON that may hold what orjson cannot write (ints beyond 64 bits): those go through the standard
    encoder, which is what a hostile client would use anyway."""
    try:
        return orjson.dumps(value)
    except TypeError:
        import json

        return json.dumps(value).encode()  # noqa: TID251 - orjson is what cannot write these


def mutated_bodies(route: str) -> st.SearchStrategy[bytes]:
    return st.sampled_from(BODIES[route]).flatmap(mutated_from)


@st.composite
def mutated_from(draw: st.DrawFn, body: Any) -> bytes:
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(list(paths(body))))
        action = draw(st.sampled_from(["replace", "replace", "delete", "add", "nest", "hostile"]))
        if action == "hostile" and isinstance(body, dict) and body:
            body = {**body, draw(st.sampled_from(sorted(body))): draw(HOSTILE)}
        elif action == "replace":
            body = replaced(body, where, draw(JSON_VALUES))
        elif action == "delete" and where:
            body = deleted(body, where)
        elif action == "add" and isinstance(body, dict):
            body = {**body, draw(TEXT): draw(JSON_VALUES)}
        elif action == "nest":
            body = replaced(body, where, nested(draw(st.integers(1, 300)), draw(SCALARS)))
    return encode(body)


@st.composite
def damaged_bytes(draw: st.DrawFn, raw: bytes) -> bytes:
    action = draw(st.sampled_from(["truncate", "flip", "invalid-utf8", "splice", "splice", "as-is"]))
    if action == "truncate":
        return raw[: draw(st.integers(0, max(len(raw) - 1, 0)))]
    if action == "flip" and raw:
        i = draw(st.integers(0, len(raw) - 1))
        return raw[:i] + bytes([raw[i] ^ draw(st.integers(1, 255))]) + raw[i + 1:]
    if action == "invalid-utf8":
        i = draw(st.integers(0, len(raw)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3\x28", b"\xed\xa0\x80", b"\xf8\x88\x80\x80\x80"]))
        return raw[:i] + bad + raw[i:]
    if action == "splice":
        i = draw(st.integers(0, len(raw)))
        return raw[:i] + draw(st.one_of(st.binary(max_size=20), st.sampled_from(
            [b"\\ud800", b'"\\udfff"', b"\\u0000", b"1e999", b"-0", b"1" * 30, b"[" * 600]))) + raw[i:]
    return raw


CONTENT_TYPES = st.sampled_from([None, "application/json", "application/json; charset=utf-8", "text/plain",
                                 "application/x-www-form-urlencoded", "", "application/vnd.api+json", ";;;",
                                 "application/json; charset=latin-1", "multipart/form-data; boundary=x"])
ENCODERS = {"gzip": gzip.compress, "deflate": zlib.compress, "br": brotli.compress, "zstd": zstd.compress}


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, dict[str, str]]:
    route = draw(st.sampled_from(ROUTES))
    source = draw(st.sampled_from(["mutated", "mutated", "random-json", "random-bytes", "large"]))
    if source == "mutated":
        raw = draw(mutated_bodies(route))
    elif source == "large":  # around the gateway's 256 KiB limit, before or after decoding
        raw = encode({**BODIES[route][0], "user": "x" * draw(st.integers(200_000, 300_000))})
    elif source == "random-json":
        raw = encode(draw(JSON_VALUES))
    else:
        raw = draw(st.binary(max_size=200))
    raw = draw(damaged_bytes(raw)) if draw(st.booleans()) else raw
    headers: dict[str, str] = {}
    if (ctype := draw(CONTENT_TYPES)) is not None:
        headers["content-type"] = ctype
    coding = draw(st.sampled_from([None, None, None, "gzip", "deflate", "br", "zstd", "gzip, br", "compress",
                                   "identity"]))
    if coding:
        headers["content-encoding"] = coding
        if coding in ENCODERS:
            raw = ENCODERS[coding](raw)
            raw = draw(damaged_bytes(raw)) if draw(st.booleans()) else raw
    return route, raw, headers


# --- the suite ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def gw(emulator_process, mitm_confdir, tmp_path_factory) -> Iterator[Gateway]:
    emulator_process.reset()
    accounts = tmp_path_factory.mktemp("accounts-fuzz")
    write_account(accounts, "acc1")  # both upstream dialects: Cloud Code OAuth and a public API key
    write_account(accounts, "key1", api_key="AIza-fuzz")
    with Gateway(emulator_process, accounts, confdir=mitm_confdir,
                 options={"ag_body_limit": "256k"}) as gateway:
        yield gateway
    emulator_process.reset()


@pytest.fixture(scope="module")
def client(gw: Gateway) -> Iterator[RawClient]:
    c = RawClient(gw.port, timeout=REQUEST_TIMEOUT)
    yield c
    c.close()


def check_answer(answer: Answer, raw: bytes, headers: dict[str, str]) -> None:
    context = f"sent {headers} {raw[:300]!r}, got {answer.status} {answer.body[:500]!r}"
    assert answer.status < 500, context
    if answer.status >= 400:
        assert answer.headers.get("content-type", "").startswith("application/json"), context
        error = orjson.loads(answer.body)["error"]
        assert set(error) == {"message", "type", "param", "code"}, context
        assert isinstance(error["message"], str) and error["message"], context
        assert error["type"] == "invalid_request_error", context
    elif answer.headers.get("content-type", "").startswith("text/event-stream"):
        # A stream the gateway itself broke ends in an error event of the gateway's own type.
        assert b"internal_error" not in answer.body and b"server_error" not in answer.body, context
        assert answer.body.rstrip().endswith((b"data: [DONE]", b"}")), context
    else:
        assert answer.status == 200 and isinstance(orjson.loads(answer.body), dict), context


def assert_gateway_healthy(gw: Gateway, client: RawClient) -> None:
    assert client.request("GET", "/healthz").status == 200
    assert gw.proc is not None and gw.proc.poll() is None
    log = gw.log_path.read_text(errors="replace")
    assert "Traceback" not in log and "hook failed" not in log, log[-4000:]


def test_generated_and_mutated_bodies_never_crash_the_gateway(gw, client):
    @FUZZ
    @given(requests())
    def property_(request: tuple[str, bytes, dict[str, str]]) -> None:
        route, raw, headers = request
        check_answer(client.request("POST", route, raw, headers), raw, headers)

    property_()
    assert_gateway_healthy(gw, client)


def test_valid_bodies_with_one_field_of_the_wrong_type_or_range_are_4xx_or_work(gw, client):
    @FUZZ
    @given(st.sampled_from(ROUTES).flatmap(lambda r: st.tuples(st.just(r), mutated_bodies(r))))
    def property_(request: tuple[str, bytes]) -> None:
        route, raw = request
        headers = {"content-type": "application/json"}
        check_answer(client.request("POST", route, raw, headers), raw, headers)

    property_()
    assert_gateway_healthy(gw, client)


def test_mutated_follow_ups_of_a_stored_response_are_4xx_or_work(gw, client):
    """``previous_response_id`` replays a stored conversation (with its tool calls) in front of the input."""
    first = client.post("/v1/responses", orjson.dumps(RESPONSES_BODIES[2]),
                        {"content-type": "application/json"})
    assert first.status == 200, first.body
    chained = {"previous_response_id": first.json()["id"], "input": "and now?"}
    follow_ups = [chained, {**chained, "stream": True}, {**chained, "model": "gemini-2.5-pro"}]

    @settings(FUZZ, max_examples=max(EXAMPLES // 5, 50))
    @given(st.sampled_from(follow_ups).flatmap(mutated_from))
    def property_(raw: bytes) -> None:
        headers = {"content-type": "application/json"}
        check_answer(client.request("POST", "/v1/responses", raw, headers), raw, headers)

    property_()
    assert_gateway_healthy(gw, client)
