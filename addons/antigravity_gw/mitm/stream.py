"""The mitmproxy stream callable: upstream SSE bytes in, translated SSE bytes out, chunk by chunk.

mitmproxy's contract: called with each body chunk as it arrives and once with ``b""`` at the end;
returning ``b""`` mid-stream would send the chunked terminator (pitfall P2), so "nothing yet" is
``[]``. This adapter is one of the three places that catch everything: response headers are
already sent, so a surprise becomes an in-band error event and the stream ends cleanly.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from .. import errors
from ..sse import KEEPALIVE, SSEDecoder
from ..translate.endpoints import StreamFormat, StreamTranslator

logger = logging.getLogger(__name__)


class StreamAdapter:
    __slots__ = ("_closed", "_decoder", "_format", "_translator", "_unwrap", "first_chunk_at", "flow_id",
                 "upstream", "usage")

    def __init__(self, translator: StreamTranslator, fmt: StreamFormat,
                 unwrap: Callable[[dict[str, Any]], dict[str, Any]], flow_id: str = "",
                 keep_upstream: bool = False) -> None:
        self._decoder = SSEDecoder()
        self._translator = translator
        self._format = fmt
        self._unwrap = unwrap
        self._closed = False
        self.flow_id = flow_id
        self.first_chunk_at = 0.0  # when the client got its first translated bytes (for the access log)
        self.usage: dict[str, Any] | None = None  # Google's last usageMetadata
        # Google's raw stream, for mitmweb's "Gemini stream" view: kept only when asked (under mitmweb)
        self.upstream: list[bytes] | None = [] if keep_upstream else None

    @property
    def error(self) -> errors.GatewayError | None:
        """The error the stream ended with (an in-band Google error, a cut upstream, our own failure)."""
        return getattr(self._translator, "error", None)

    def __call__(self, data: bytes) -> bytes | list[bytes]:
        end = data == b""
        if self.upstream is not None:
            self.upstream.append(data)
        if self._closed:
            return b"" if end else []
        items: list[Any] = []  # what the translator returned before any failure: it is sent either way
        try:
            out = self._translate(data, end, items)
        except Exception as e:  # boundary: the headers are gone, so end the stream with an error event
            logger.exception("stream translation failed for flow %s", self.flow_id)
            self._closed = True
            err = errors.GatewayError(
                f"Internal gateway error while translating the stream: {type(e).__name__}")
            items.extend(self._translator.abort(err))
            out = b"".join(map(self._format.encode, items)) + self._format.end
        if out and not self.first_chunk_at:
            self.first_chunk_at = time.time()
        return out or (b"" if end else [])

    def _translate(self, data: bytes, end: bool, items: list[Any]) -> bytes:
        keepalive = False
        for ev in self._decoder.finish() if end else self._decoder.feed(data):
            if ev.comment:
                keepalive = True
                continue
            if not ev.data or ev.data == b"[DONE]":
                continue
            try:
                event = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                event = {"error": {"code": 502, "status": "UPSTREAM_PROTOCOL_ERROR",
                                   "message": "Google sent a stream event that is not JSON."}}
            event = self._unwrap(event) if isinstance(event, dict) else {}
            if "usageMetadata" in event:
                self.usage = event["usageMetadata"]
            items.extend(self._translator.feed(event))
        if end:
            items.extend(self._translator.finish())
            self._closed = True
        out = b"".join(map(self._format.encode, items))
        if keepalive and not out:
            out = KEEPALIVE
        return out + self._format.end if end else out
