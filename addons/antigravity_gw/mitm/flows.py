"""How the gateway's state shows on a flow: which flows are ours, metadata keys, answers it makes
itself, marks and comments, and what is scrubbed before mitmproxy stores a flow."""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

import orjson
from mitmproxy import http
from mitmproxy.net.http import status_codes, url
from mitmproxy.proxy import mode_specs

from .. import errors, readable
from ..error_shapes import OPENAI_ERRORS, ErrorBody

# Hosts whose API the gateway answers itself in regular (intercepting) proxy mode.
INTERCEPT_HOSTS = frozenset({"api.openai.com"})
# Headers that carry the client's credentials: never forwarded, never stored (mitmweb, -w files).
CLIENT_SECRET_HEADERS = ("authorization", "x-api-key", "x-goog-api-key", "api-key", "cookie",
                         "proxy-authorization")
REDACTED = "[redacted]"
SECRET_NAMES = frozenset(name.encode() for name in CLIENT_SECRET_HEADERS)
REDACTED_BYTES = REDACTED.encode()

# flow.metadata keys (saved with -w and shown in mitmweb: never a secret in here)
CLIENT_REQUEST = "ag.client_request"
UPSTREAM = "ag.upstream"  # url, account, attempts, model, tokens, request (the upstream call, redacted)
ATTEMPT = "ag.attempt"  # a failed attempt's flow: number, status, reason, account, cooldown, of (flow id)
ROUTE = "ag.route"
TOO_LARGE = "refused: body too large"  # an ag.route value: answered 413 before the body was read
SYNTHETIC = "ag.synthetic"
AUTH = "ag.auth"  # the inbound check's verdict: open, key, exempt, preflight, replay or denied
KEY = "ag.key"  # the name (never the key) of the client key that was presented, from ag_api_keys_file

MAPPED_MODEL_HEADER = "X-Mapped-Model"
ACCOUNT_HEADER = "X-Account-Email"

# Every answer carries these two; a preflight (OPTIONS) also gets the rest. Only a preflight reads
# allow-methods/-headers and max-age, and every header on a stream costs mitmproxy a scan per chunk.
CORS_ANSWER_HEADERS = {
    "access-control-allow-origin": "*",
    "access-control-expose-headers": "x-mapped-model, x-account-email, x-ag-attempts, retry-after, "
                                     "retry-after-ms",
}
CORS_PREFLIGHT_HEADERS = {
    "access-control-allow-methods": "GET, POST, OPTIONS",
    "access-control-allow-headers": "*",
    "access-control-max-age": "3600",
    **CORS_ANSWER_HEADERS,
}


def is_ours(flow: http.HTTPFlow) -> bool:
    """Does the gateway answer this flow? Everything in reverse mode; only the intercepted API hosts
    in regular mode (other hosts pass through untouched); never its own synthetic flows."""
    if flow.metadata.get(SYNTHETIC):
        return False
    if isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
        return True
    return flow.request.pretty_host in INTERCEPT_HOSTS


def note_client_request(flow: http.HTTPFlow, model: str, method: str = "", path: str = "") -> None:
    """What the client asked for (``ag.client_request``), as the access line, the ledger row and mitmweb's
    list name it: its method and path (the flow's own unless given), and its model."""
    req = flow.request
    flow.metadata[CLIENT_REQUEST] = {"method": method or req.method, "path": path or req.path, "model": model}


def header(headers: http.Headers, name: bytes) -> str | None:
    """``headers.get(name)`` for a lower-case ``name``, read off the raw fields in one pass: ``Headers.get``
    decodes and lower-cases every field for each lookup, and the request path asks for several."""
    values = [value for key, value in headers.fields if key.lower() == name]
    if not values:
        return None
    return ", ".join(v.decode("utf-8", "surrogateescape") for v in values)  # as Headers joins repeats


def public_base_url(flow: http.HTTPFlow) -> str:
    """The base URL this client should configure, as it reached us (quoted in 404 fixes).

    In reverse mode the Host header already names the reverse target, so the address the client
    connected to is taken from the socket instead.
    """
    req = flow.request
    if not isinstance(flow.client_conn.proxy_mode, mode_specs.ReverseMode):
        return f"{req.scheme}://{req.pretty_host}/v1"
    scheme = "https" if flow.client_conn.tls else "http"
    host, port = (flow.client_conn.sockname or ("", 0))[:2]
    if not host:
        return "http://<gateway>/v1"
    host = f"[{host}]" if ":" in host else host
    return f"{scheme}://{url.hostport(scheme, host, port)}/v1"


def redact_client_secrets(request: http.Request) -> None:
    """Keep that a credential was sent, not its value: what mitmproxy stores never holds it."""
    fields = request.headers.fields
    # One pass over the raw fields instead of a lookup per secret name: this runs on every request.
    if any(k.lower() in SECRET_NAMES for k, _ in fields):
        request.headers.fields = tuple((k, REDACTED_BYTES) if k.lower() in SECRET_NAMES else (k, v)
                                       for k, v in fields)


# Query parameters that carry credentials (Gemini-style clients send ?key=): redacted like the headers.
SECRET_QUERY_NAMES = frozenset({"key", "api_key", "apikey", "api-key", "access_token", "token"})


def redact_query_secrets(request: http.Request) -> None:
    """``?key=...`` and its kind keep their name, not their value (mitmdump prints every flow's URL)."""
    if b"?" not in request.data.path:  # most requests: one byte search, nothing parsed
        return
    query = request.query
    if any(name.lower() in SECRET_QUERY_NAMES for name in query):
        request.query = [(k, REDACTED if k.lower() in SECRET_QUERY_NAMES else v)
                         for k, v in query.items(multi=True)]


JSON_FIELD = (b"content-type", b"application/json")


def answer(status: int, body: bytes, fields: Iterable[tuple[bytes, bytes]] = (JSON_FIELD,)) -> http.Response:
    """A whole response the gateway makes itself, with its final headers in one go.

    Made by copying a template rather than through ``Response.make``, for two measured reasons. ``make``
    parses a header mapping and re-encodes the body through the ``content`` setter, rescanning the
    headers. Worse, mitmproxy's debug-mode field check (``__post_init__``) raises and catches a
    ``TypeError`` for an optional field that is None; that exception's traceback holds the caller's
    frames, so every frame of the request hook (the flow, the parsed body, the upstream answer) stayed
    alive in a reference cycle until the next garbage collection, which made each collection slow.
    """
    now = time.time()
    data = _copy(_TEMPLATE.data)
    data.status_code, data.reason = status, _REASONS.get(status, b"")
    # RFC 9110 §8.6: no Content-Length on a 1xx, 204 or 304 (a CORS preflight is a 204).
    length = () if status < 200 or status in (204, 304) else ((b"content-length", b"%d" % len(body)),)
    data.headers = http.Headers((*fields, *length))
    data.content, data.timestamp_start, data.timestamp_end = body, now, now
    response = _copy(_TEMPLATE)
    response.data = data
    return response


def _copy(obj: Any) -> Any:
    """A shallow copy that runs no ``__init__`` (what ``copy.copy`` does, minus its protocol lookups)."""
    new = object.__new__(type(obj))
    new.__dict__.update(obj.__dict__)
    return new


_TEMPLATE = http.Response.make(200)
_REASONS = {code: reason.encode() for code, reason in status_codes.RESPONSES.items()}


def header_fields(headers: dict[str, str]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((k.encode(), v.encode("utf-8", "surrogateescape")) for k, v in headers.items())


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> http.Response:
    fields = header_fields({"content-type": "application/json", **(headers or {})})
    return answer(status, orjson.dumps(body), fields)


def error_response(err: errors.GatewayError, extra_headers: dict[str, str] | None = None,
                   error_body: ErrorBody = OPENAI_ERRORS.body) -> http.Response:
    """The only way the gateway answers with an error: the error body of the API the request came in on
    (``error_body``: OpenAI's unless told), with the error's status."""
    body = error_body(err)  # first: a shape may add its headers to the error (Anthropic's request-id)
    return json_response(err.status, body, {**err.headers, **(extra_headers or {})})


def mark_error(flow: http.HTTPFlow, comment: str) -> None:
    """⚠ and a comment made by ``readable`` (short, front-loaded, cut at a word boundary)."""
    flow.marked = ":warning:"
    flow.comment = readable.shorten(comment)


# The request as the client sent it (decoded body), kept while the flow is pointed at the relay.
type HeaderFields = tuple[tuple[bytes, bytes], ...]
type ClientSnapshot = tuple[bytes, bytes, str, int, bytes, bytes, HeaderFields, bytes | None]


def client_snapshot(request: http.Request) -> ClientSnapshot:
    data = request.data
    return (data.method, data.scheme, data.host, data.port, data.path, data.authority, request.headers.fields,
            data.content)


def restore_client_request(request: http.Request, snapshot: ClientSnapshot) -> None:
    """The flow shows the client's request again once it has left for the relay: its route in mitmweb's
    list, and what a replay sends back through the gateway (a new translation, new attempts)."""
    data = request.data
    (data.method, data.scheme, data.host, data.port, data.path, data.authority, fields,
     data.content) = snapshot
    request.headers.fields = fields


def show_gateway_address(flow: http.HTTPFlow) -> None:
    """Reverse mode fills in the reverse target (Google's host): show the address the client used instead,
    so mitmweb's list reads ``http://127.0.0.1:8045/v1/chat/completions`` and a replay comes back here."""
    client = flow.client_conn
    sock = client.sockname
    if not sock or not isinstance(client.proxy_mode, mode_specs.ReverseMode):
        return
    data = flow.request.data
    data.scheme = b"https" if client.tls else b"http"
    data.host, data.port = sock[0], sock[1]


def upstream_request(url_: str, headers: Mapping[str, str] | None, body: bytes) -> dict[str, Any]:
    """The winning upstream call for ``ag.upstream``: its credentials redacted (metadata is saved).

    This runs once per request, so it relies on the dialects naming their headers in lower case
    (upstream/dialects.py; tests/addon/test_gateway.py and tests/e2e/test_foundation.py check the result):
    a copy and one lookup per credential header instead of a pass that lower-cases every name."""
    shown = dict(headers or ())
    for name in UPSTREAM_SECRET_HEADERS:
        if name in shown:
            shown[name] = REDACTED
    return {"url": url_, "headers": shown, "body": body}


UPSTREAM_SECRET_HEADERS = ("authorization", "x-goog-api-key")
