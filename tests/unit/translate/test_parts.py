"""parts.py helpers that read JSON or URLs out of a client's strings."""

from __future__ import annotations

import orjson
import pytest
from antigravity_gw.errors import InvalidRequest
from antigravity_gw.translate.parts import call_arguments, can_send, check_fetchable_url, function_response_payload

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
