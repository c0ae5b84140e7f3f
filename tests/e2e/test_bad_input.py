"""Hostile and broken request bodies through a real mitmdump: compression bombs, corrupt encodings, numbers
out of range and malformed URLs each get a 4xx OpenAI error naming the problem, never a 5xx or a traceback."""

from __future__ import annotations

import gzip
import time
import zlib
from collections.abc import Callable, Iterator

import brotli
import orjson
import pytest

from support.gateway import Gateway
from support.raw_http import Answer, RawClient

try:
    from compression import zstd  # type: ignore[import-not-found]
except ImportError:
    from backports import zstd

pytestmark = pytest.mark.e2e

CHAT = "/v1/chat/completions"
BOMB_SIZE = 100 * 1024 * 1024  # decoded; the gateway's limit is its default, 32 MiB


@pytest.fixture(scope="module")
def gw(cloudcode_gateway: Gateway) -> Gateway:
    return cloudcode_gateway


@pytest.fixture
def client(gw: Gateway, emulator) -> Iterator[RawClient]:
    c = RawClient(gw.port)
    yield c
    c.close()


def chat_body(**extra) -> bytes:
    return orjson.dumps({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}],
                         **extra})


def gzip_fast(data: bytes) -> bytes:
    return gzip.compress(data, compresslevel=6)


def raw_deflate(data: bytes) -> bytes:
    c = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    return c.compress(data) + c.flush()


ENCODERS: dict[str, Callable[[bytes], bytes]] = {
    "gzip": gzip_fast,
    "deflate": zlib.compress,
    "br": lambda data: brotli.compress(data, quality=5),
    "zstd": lambda data: zstd.compress(data, 3),
}


@pytest.fixture(scope="module")
def bombs() -> dict[str, bytes]:
    """A JSON body whose decoded size is 100 MiB, in each coding (a brotli one is under 200 bytes)."""
    plain = (b'{"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "' + b"a" * BOMB_SIZE
             + b'"}]}')
    return {name: encode(plain) for name, encode in ENCODERS.items()}


def assert_openai_error(answer: Answer, status: int, code: str | None = None) -> dict:
    assert answer.status == status, answer.body[:300]
    assert answer.headers["content-type"].startswith("application/json")
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["message"]
    if code:
        assert error["code"] == code
    return error


def no_traceback(gw: Gateway) -> None:
    assert "Traceback" not in gw.log(), gw.log()[-3000:]


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_a_compression_bomb_is_413_without_decoding_it_whole(gw, client, emulator, bombs, coding):
    start = time.monotonic()
    answer = client.post(CHAT, bombs[coding], {"content-encoding": coding})
    error = assert_openai_error(answer, 413, "request_too_large")
    assert "ag_body_limit" in error["message"] and coding in error["message"]
    assert time.monotonic() - start < 10
    assert not emulator.requests(kind="api"), "nothing of it went upstream"
    assert client.request("GET", "/healthz").status == 200
    no_traceback(gw)


@pytest.mark.parametrize("coding", list(ENCODERS))
def test_a_small_compressed_body_works_end_to_end(gw, client, emulator, coding):
    answer = client.post(CHAT, ENCODERS[coding](chat_body()), {"content-encoding": coding})
    assert answer.status == 200, answer.body
    assert answer.json()["choices"][0]["message"]["content"]
    stream = client.post(CHAT, ENCODERS[coding](chat_body(stream=True)), {"content-encoding": coding})
    assert stream.status == 200 and stream.body.rstrip().endswith(b"data: [DONE]"), stream.body[-300:]
    sent = [r for r in emulator.requests(kind="api")
            if r["rpc"] in ("generateContent", "streamGenerateContent")]
    assert len(sent) == 2 and all("hi" in orjson.dumps(r["body"]).decode() for r in sent)


def test_raw_deflate_and_stacked_codings_are_decoded(client):
    assert client.post(CHAT, raw_deflate(chat_body()), {"content-encoding": "deflate"}).status == 200
    stacked = brotli.compress(gzip_fast(chat_body()))
    assert client.post(CHAT, stacked, {"content-encoding": "gzip, br"}).status == 200


@pytest.mark.parametrize("coding", list(ENCODERS))
@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_corrupt_compressed_body_is_400(gw, client, emulator, coding, damage):
    good = ENCODERS[coding](chat_body())
    bad = good[: len(good) // 2] if damage == "truncated" else b"\x00garbage\xff" + good[3:]
    error = assert_openai_error(client.post(CHAT, bad, {"content-encoding": coding}), 400)
    assert coding in error["message"] and "decoded" in error["message"]
    assert not emulator.requests(kind="api")
    no_traceback(gw)


def test_an_unknown_coding_is_415_naming_the_supported_ones(client):
    answer = client.post(CHAT, chat_body(), {"content-encoding": "compress"})
    assert_openai_error(answer, 415, "unsupported_media_type")
    assert answer.headers["accept-encoding"] == "gzip, deflate, br, zstd"


HUGE = b"1" + b"0" * 30  # 10**30: beyond 64 bits, which the JSON encoder cannot write upstream
RESPONSES, COMPLETIONS = "/v1/responses", "/v1/completions"
BASES = {
    CHAT: {"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]},
    RESPONSES: {"model": "gemini-2.5-flash", "input": "hi"},
    COMPLETIONS: {"model": "gemini-2.5-flash", "prompt": "hi"},
}


@pytest.mark.parametrize(("path", "fields", "param"), [
    (CHAT, {"max_tokens": "N"}, "max_tokens"),
    (CHAT, {"seed": "N", "stream": True}, "seed"),
    (CHAT, {"tools": [{"type": "function", "function": {"name": "f", "parameters": {"maximum": "N"}}}]},
     "tools[0].function.parameters.maximum"),
    (RESPONSES, {"max_output_tokens": "N"}, "max_output_tokens"),
    (RESPONSES, {"tools": [{"type": "code_interpreter", "container": {"memory": "N"}}]},
     "tools[0].container.memory"),
    (COMPLETIONS, {"max_tokens": "N"}, "max_tokens"),
    (COMPLETIONS, {"seed": "N", "stream": True}, "seed"),
])
def test_numbers_out_of_range_are_400_naming_the_field(gw, client, emulator, path, fields, param):
    raw = orjson.dumps({**BASES[path], **fields}).replace(b'"N"', HUGE)
    error = assert_openai_error(client.post(path, raw), 400)
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert not emulator.requests(kind="api")
    no_traceback(gw)


@pytest.mark.parametrize(("path", "fields", "param"), [
    (CHAT, {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {
        "url": "http://[::1/x.png"}}]}]}, "messages[0].content[0].image_url"),
    (CHAT, {"stream": True, "messages": [{"role": "user", "content": [{"type": "image_url",
                                                                        "image_url": "https://h:99999/x"}]}]},
     "messages[0].content[0].image_url"),
    (RESPONSES, {"input": [{"role": "user", "content": [{"type": "input_image", "image_url": "http://[::1/x.png"}]}]},
     "input[0].content[0].image_url"),
    (RESPONSES, {"input": [{"role": "user", "content": [{"type": "input_file", "file_url": "http://[::1/x.pdf"}]}]},
     "input[0].content[0].file_data"),  # file URLs are not fetched: the part must carry file_data
])
def test_a_malformed_url_is_400_naming_the_field(gw, client, emulator, path, fields, param):
    error = assert_openai_error(client.post(path, orjson.dumps({**BASES[path], **fields})), 400)
    assert error["param"] == param
    assert not emulator.requests(kind="api")
    no_traceback(gw)


# parses (orjson reads 1024 levels) but could not be written back (255)
DEEP = '{"a":' * 300 + "1" + "}" * 300
TOOL_TURNS = [{"role": "user", "content": "go"},
              {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                    "function": {"name": "f", "arguments": "{}"}}]},
              {"role": "tool", "tool_call_id": "c1", "content": "ok"}]


@pytest.mark.parametrize(("path", "fields", "param"), [
    (CHAT, {"messages": [{"role": "user", "content": "go"}, {"role": "assistant", "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "f", "arguments": DEEP}}]},
        {"role": "tool", "tool_call_id": "c1", "content": "ok"}]},
     "messages[1].tool_calls[0].function.arguments"),
    (RESPONSES, {"input": [{"type": "function_call", "call_id": "c1", "name": "f", "arguments": DEEP},
                           {"type": "function_call_output", "call_id": "c1", "output": "ok"}]},
     "input[0].arguments"),
    (CHAT, {"messages": [{"role": "user",
                          "content": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}]},
     "messages[0].content[0]"),
])
def test_deeply_nested_json_is_400(gw, client, emulator, path, fields, param):
    error = assert_openai_error(client.post(path, orjson.dumps({**BASES[path], **fields})), 400)
    assert error["param"] == param
    no_traceback(gw)


def test_a_deeply_nested_tool_output_is_sent_as_text(gw, client, emulator):
    turns = [*TOOL_TURNS[:2], {**TOOL_TURNS[2], "content": DEEP}]
    answer = client.post(CHAT, orjson.dumps({**BASES[CHAT], "messages": turns}))
    assert answer.status == 200, answer.body
    no_traceback(gw)


def test_a_json_body_nested_past_the_parser_limit_is_400(client):
    body = (b'{"model": "m", "messages": [{"role": "user", "content": "x", "extra": '
            + b"[" * 5000 + b"]" * 5000 + b"}]}")
    assert_openai_error(client.post(CHAT, body), 400)


@pytest.mark.parametrize("path", [CHAT, RESPONSES, COMPLETIONS])
@pytest.mark.parametrize("stream", [False, True])
@pytest.mark.parametrize("model", ["a\nb", "x" * 20000])
def test_a_model_name_that_would_break_a_header_or_url_is_400_not_a_hang(gw, path, stream, model):
    """A newline in X-Mapped-Model made mitmproxy drop the answer (the client waited forever); a 20 kB
    name made the relay refuse the request line with a plain-text 400 and a traceback."""
    client = RawClient(gw.port, timeout=10)
    body = orjson.dumps({**BASES[path], "model": model, "stream": stream})
    error = assert_openai_error(client.post(path, body), 400)
    assert error["param"] == "model"
    client.close()
    no_traceback(gw)


def test_a_model_no_account_has_is_404_not_a_rate_limit(start_gateway, emulator):
    """Every account answers 404 for it: the client named a model that does not exist (found by the fuzz
    with an API-key account: a bogus model name was a 429 rate_limit_error, again on every retry)."""
    emulator.configure(enforce_models=True)
    gw = start_gateway(accounts={"acc1": {}, "key1": {"api_key": "AIza-test"}})
    client = RawClient(gw.port)
    for _ in range(2):  # the second is answered from the model's cooldowns, without asking Google again
        answer = client.post(CHAT, chat_body(model="no-such-model"))
        error = assert_openai_error(answer, 404, "model_not_found")
        assert error["param"] == "model" and error["type"] == "invalid_request_error"
    assert client.post(CHAT, chat_body()).status == 200  # the accounts themselves are fine
    client.close()
    no_traceback(gw)
