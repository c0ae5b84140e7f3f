"""Every answer of the gateway carries CORS headers, once, whatever made it."""

from __future__ import annotations

from mitmproxy import http
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import tflow

from antigravity_gw.mitm import flows
from antigravity_gw.mitm.cors import CORS_FIELDS, Cors


def gateway_flow(headers: dict[str, str] | None = None) -> http.HTTPFlow:
    f = tflow.tflow(resp=http.Response.make(200, b"{}", headers or {"content-type": "application/json"}))
    f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:9@8045")  # the gateway's mode
    return f


def test_an_answer_gets_the_cors_headers_once_in_responseheaders_and_response():
    f = gateway_flow({"content-type": "application/json", "Access-Control-Allow-Origin": "https://evil"})
    cors = Cors()
    cors.responseheaders(f)
    cors.response(f)
    fields = f.response.headers.fields
    assert fields[-len(CORS_FIELDS):] == CORS_FIELDS
    assert [k.lower() for k, _ in fields].count(b"access-control-allow-origin") == 1
    assert f.response.headers["access-control-allow-origin"] == flows.CORS_ANSWER_HEADERS[
        "access-control-allow-origin"]


def test_a_response_replaced_after_the_headers_went_out_gets_them_again():
    f = gateway_flow()
    Cors().responseheaders(f)
    f.response = http.Response.make(500, b"{}", {"content-type": "application/json"})
    Cors().response(f)
    assert f.response.headers.fields[-len(CORS_FIELDS):] == CORS_FIELDS


def test_flows_that_are_not_the_gateways_are_left_alone():
    f = tflow.tflow(resp=True)  # regular mode, a host the gateway does not intercept
    before = f.response.headers.fields
    Cors().response(f)
    assert f.response.headers.fields == before
