"""mitm/flows.py: the answers the gateway builds itself and how a flow shows its upstream call."""

from __future__ import annotations

import orjson
import pytest
from mitmproxy import http
from mitmproxy.test import tflow, tutils

from antigravity_gw.mitm import flows
from antigravity_gw.mitm.cors import CORS_FIELDS, Cors
from antigravity_gw.upstream.relay import FLOW_HEADER

UPSTREAM = "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-flash:generateContent"


def test_answer_is_a_complete_response_with_length_and_reason():
    resp = flows.answer(429, b'{"error":{}}', (flows.JSON_FIELD, (b"retry-after", b"3")))
    assert (resp.status_code, resp.reason, resp.http_version) == (429, "Too Many Requests", "HTTP/1.1")
    assert resp.headers.fields == ((b"content-type", b"application/json"), (b"retry-after", b"3"),
                                   (b"content-length", b"12"))
    assert resp.content == b'{"error":{}}'
    assert resp.timestamp_start and resp.timestamp_end
    assert resp.trailers is None and not resp.stream


def test_a_204_answer_has_no_content_length():
    preflight = flows.answer(204, b"", flows.header_fields(flows.CORS_PREFLIGHT_HEADERS))
    assert "content-length" not in preflight.headers
    assert preflight.headers["access-control-allow-methods"] == "GET, POST, OPTIONS"


def test_answers_share_nothing_with_each_other_or_the_template():
    first, second = flows.answer(200, b"a"), flows.answer(502, b"bb")
    first.headers["x-extra"] = "1"
    first.content = b"changed"
    assert "x-extra" not in second.headers and second.content == b"bb" and second.status_code == 502
    assert "x-extra" not in flows.answer(200, b"").headers
    assert first.data is not second.data and first.headers is not second.headers


def test_an_answer_survives_mitmproxy_state_round_trips():
    """What -w files and mitmweb do with a flow: the template copy must be a normal Response."""
    resp = flows.json_response(400, {"error": {"message": "bad"}}, {"x-mapped-model": "m"})
    again = http.Response.from_state(resp.get_state())
    assert again.status_code == 400 and again.headers["x-mapped-model"] == "m"
    assert orjson.loads(again.content) == {"error": {"message": "bad"}}


def test_json_response_lets_extra_headers_override_the_content_type():
    resp = flows.json_response(200, {}, {"content-type": "application/problem+json"})
    assert resp.headers.get_all("content-type") == ["application/problem+json"]


@pytest.mark.parametrize("http2", [False, True])
def test_the_client_request_comes_back_whole_after_the_relay_rewrite(http2):
    req = tutils.treq(method=b"POST", path=b"/v1/chat/completions",
                      headers=((b"host", b"127.0.0.1:8045"), (b"content-type", b"application/json"),
                               (b"authorization", b"[redacted]")), content=b'{"model":"gpt-4o"}')
    if http2:
        req.http_version = "HTTP/2.0"
        req.authority = "127.0.0.1:8045"
    before = (req.url, req.headers.fields, req.content, req.authority)
    snapshot = flows.client_snapshot(req)
    req.url = UPSTREAM  # what _point_at_relay does, roughly
    req.headers.fields = ((b"host", b"generativelanguage.googleapis.com"), (FLOW_HEADER.encode(), b"abc"))
    req.content = b'{"contents":[]}'
    req.authority = "generativelanguage.googleapis.com" if http2 else ""
    flows.restore_client_request(req, snapshot)
    assert (req.url, req.headers.fields, req.content, req.authority) == before
    assert req.path == "/v1/chat/completions" and req.method == "POST"


def test_reverse_mode_flows_show_the_address_the_client_used():
    f = tflow.tflow()
    f.client_conn.proxy_mode = flows.mode_specs.ProxyMode.parse("reverse:https://generativelanguage.googleapis.com@8045")
    f.client_conn.sockname = ("127.0.0.1", 8045)
    f.request.scheme, f.request.host, f.request.port = "https", "generativelanguage.googleapis.com", 443
    flows.show_gateway_address(f)
    assert (f.request.scheme, f.request.host, f.request.port) == ("http", "127.0.0.1", 8045)


def test_regular_mode_flows_keep_their_host():
    f = tflow.tflow()
    f.request.host = "api.openai.com"
    flows.show_gateway_address(f)
    assert f.request.host == "api.openai.com"


def test_the_upstream_request_in_metadata_has_no_credentials():
    sent = {"authorization": "Bearer ya29.secret", "x-goog-api-key": "AIza-x",
            "user-agent": "antigravity/1.0"}
    shown = flows.upstream_request(UPSTREAM, sent, b"{}")
    assert shown == {"url": UPSTREAM, "body": b"{}",
                     "headers": {"authorization": "[redacted]", "x-goog-api-key": "[redacted]",
                                 "user-agent": "antigravity/1.0"}}


def test_cors_adds_its_headers_once_and_again_after_a_replacement():
    f = tflow.tflow()
    f.client_conn.proxy_mode = flows.mode_specs.ProxyMode.parse("reverse:http://x@8045")
    f.response = flows.answer(200, b"{}")
    cors = Cors()
    cors.responseheaders(f)
    cors.response(f)
    assert f.response.headers.fields[-len(CORS_FIELDS):] == CORS_FIELDS
    assert len(f.response.headers.get_all("access-control-allow-origin")) == 1
    f.response = flows.answer(502, b"{}")  # an error found while translating replaces the answer
    cors.response(f)
    assert f.response.headers["access-control-allow-origin"] == "*"


def test_header_reads_the_raw_fields_as_headers_get_does():
    headers = http.Headers([(b"Content-Type", b"application/json"), (b"X-Twice", b"a"), (b"x-twice", b"b"),
                            (b"X-Latin", "é".encode())])
    for name in ("content-type", "x-twice", "x-latin", "absent"):
        assert flows.header(headers, name.encode()) == headers.get(name)
    assert flows.header(headers, b"x-twice") == "a, b"
    assert flows.header(headers, b"absent") is None
