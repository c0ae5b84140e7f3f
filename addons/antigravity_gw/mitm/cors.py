"""The Cors addon: every answer the gateway gives carries CORS headers, so browser clients can read it
(``access-control-allow-origin`` and the exposed gateway headers; preflights get the full set).

It runs last in the chain, in ``responseheaders`` (before a stream's headers go out) and again in
``response``, because an error found while translating a whole body replaces the response there.
Preflights (``OPTIONS``) are let through by ``Auth`` without a key and answered by the Gateway.
"""

from __future__ import annotations

from mitmproxy import http

from . import flows

CORS_FIELDS = tuple((k.encode(), v.encode()) for k, v in flows.CORS_ANSWER_HEADERS.items())
CORS_NAMES = frozenset(k for k, _ in CORS_FIELDS)


class Cors:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None or not flows.is_ours(flow):
            return
        headers = flow.response.headers
        if headers.fields[-len(CORS_FIELDS):] == CORS_FIELDS:
            return  # done in responseheaders, and nothing replaced the response since
        # One pass over the raw fields: Headers.update() rescans every field per name.
        headers.fields = tuple(f for f in headers.fields if f[0].lower() not in CORS_NAMES) + CORS_FIELDS

    def response(self, flow: http.HTTPFlow) -> None:
        self.responseheaders(flow)
