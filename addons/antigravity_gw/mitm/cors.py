"""The Cors addon: every answer the gateway gives carries CORS headers, so browser clients can read it.

It runs last in the chain, in ``responseheaders`` (before a stream's headers go out) and again in
``response``, because an error found while translating a whole body replaces the response there.
Preflights (``OPTIONS``) are let through by ``Auth`` without a key and answered by the Gateway.
"""

from __future__ import annotations

from mitmproxy import http

from . import flows


class Cors:
    def responseheaders(self, flow: http.HTTPFlow) -> None:
        if flow.response is None or not flows.is_ours(flow):
            return
        flow.response.headers.update(flows.CORS_HEADERS)

    def response(self, flow: http.HTTPFlow) -> None:
        self.responseheaders(flow)
