"""Message pieces → Gemini parts: data URLs, tool-call arguments and tool results."""

from __future__ import annotations

import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.translate.parts import (
    InlineImage,
    call_arguments,
    function_call_part,
    function_response_part,
    is_http_url,
    parse_data_url,
)


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
