"""parts.py: message pieces -> Gemini parts (data URLs, tool-call arguments and results) and the helpers
that read JSON or URLs out of a client's strings."""

from __future__ import annotations

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.translate.parts import (
    InlineImage,
    call_arguments,
    can_send,
    check_fetchable_url,
    function_call_part,
    function_response_part,
    function_response_payload,
    is_http_url,
    parse_data_url,
)

DEEP = '{"a":' * 300 + "1" + "}" * 300  # orjson reads it (1024 levels) but writes only 255


def test_arguments_nested_deeper_than_the_encoder_writes_are_400() -> None:
    with pytest.raises(InvalidRequest) as e:
        call_arguments(DEEP, param="messages[1].tool_calls[0].function.arguments")
    assert e.value.param == "messages[1].tool_calls[0].function.arguments"
    assert "nests too deeply" in e.value.message


def test_a_tool_output_nested_too_deeply_goes_on_as_text() -> None:
    assert function_response_payload(DEEP) == {"output": DEEP}
    shallow = '{"a": {"b": [1, 2]}}'
    assert function_response_payload(shallow) == {"output": orjson.loads(shallow)}


def test_can_send_leaves_room_for_the_upstream_envelope() -> None:
    assert can_send(orjson.loads('{"a":' * 200 + "1" + "}" * 200))
    assert not can_send(orjson.loads('{"a":' * 250 + "1" + "}" * 250))


@pytest.mark.parametrize("url", ["https://example.com/a.png", "http://127.0.0.1:8080/x", "http://[::1]/x.png"])
def test_well_formed_urls_pass(url: str) -> None:
    check_fetchable_url(url, param="p")


@pytest.mark.parametrize(("url", "reason"), [("http://[::1/x.png", "IPv6"), ("http://h:70000/", "Port"),
                                             ("http://h:x/", "Port"), ("http:///x", "host")])
def test_malformed_urls_are_400_naming_the_field(url: str, reason: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        check_fetchable_url(url, param="messages[0].content[0].image_url")
    assert e.value.param == "messages[0].content[0].image_url" and reason in e.value.message


def test_a_base64_data_url_becomes_an_inline_image():
    assert parse_data_url("data:Image/PNG;base64,iVBORw0KGgo=") == InlineImage("image/png", "iVBORw0KGgo=")
    assert parse_data_url("data:;base64,AAAA").mime_type == "application/octet-stream"


@pytest.mark.parametrize(("url", "why"), [
    ("https://x/y.png", "expected a data URL"),
    ("data:image/png,rawbytes", "only base64-encoded"),
    ("data:image/png;base64,", "carries no data"),
    ("data:image/png;base64,not*base64", "not valid base64"),
])
def test_a_bad_data_url_says_what_is_wrong(url, why):
    with pytest.raises(ValueError, match=why):
        parse_data_url(url)


def test_only_http_and_https_urls_are_fetched():
    assert is_http_url("HTTPS://example.com/a.png") and is_http_url("http://x")
    assert not is_http_url("data:image/png;base64,AAAA") and not is_http_url("file:///etc/passwd")


def test_tool_call_arguments_are_a_json_object_or_nothing():
    assert call_arguments('{"city": "Paris"}', param="p") == {"city": "Paris"}
    assert call_arguments("  ", param="p") == {}
    for bad, why in (("{oops", "not valid JSON"), ("[1, 2]", "expected a JSON object")):
        with pytest.raises(InvalidRequest, match=why) as e:
            call_arguments(bad, param="messages[1].tool_calls[0].function.arguments")
        assert e.value.param == "messages[1].tool_calls[0].function.arguments"


def test_a_replayed_call_keeps_its_gemini_id_and_signature_beside_it():
    part = function_call_part("f", {"a": 1}, gemini_id="g1", signature="sig")
    assert part == {"functionCall": {"name": "f", "args": {"a": 1}, "id": "g1"}, "thoughtSignature": "sig"}
    assert function_call_part("f", {}) == {"functionCall": {"name": "f", "args": {}}}


@pytest.mark.parametrize(("text", "output"), [
    ('{"temp_c": 21}', {"temp_c": 21}),
    ("21 degrees", "21 degrees"),
    ("{not json", "{not json"),
    ("[1]", "[1]"),
])
def test_a_tool_result_stays_structured_only_when_it_is_a_json_object(text, output):
    assert function_response_part("f", text, gemini_id="g1") == {
        "functionResponse": {"name": "f", "response": {"output": output}, "id": "g1"}}
