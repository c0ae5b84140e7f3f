"""Is a 2xx upstream answer usable? Pure checks, so a bad 200 can count as a failed attempt.

Google answers 200 with things a client cannot use: an HTML page from a front end, a body that is not
JSON, a ``google.rpc.Status`` error object, a stream cut before its first event, an event that is not
JSON, or nothing at all. Before anything went to the client, these are failed attempts like a 5xx.

- ``check_whole``: a non-stream body, parsed and shape-checked once (the caller keeps the parsed dict);
- ``FirstEventProbe``: fed a stream's first chunks until it holds one usable event; only those chunks
  are held (never a copy of the whole stream), and they go to the client as they are.

A usable answer is a JSON object (Cloud Code's ``{"response": ...}`` unwrapped) without an ``error`` and
with at least one of ``candidates``, ``promptFeedback`` or ``usageMetadata``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ..sse import SSEDecoder
from .dialects import unwrap_any

USABLE_KEYS = ("candidates", "promptFeedback", "usageMetadata")
MAX_HELD = 32 * 1024 * 1024  # bytes a stream may send before its first usable event (one big image fits)
SHOWN_BODY = 64 * 1024  # bytes of a bad answer kept for the failed attempt's flow in mitmweb


class BadAnswer(Exception):
    """A 2xx answer the client cannot use; the message says what it was, ``body`` begins what was sent."""

    def __init__(self, message: str, body: bytes = b"") -> None:
        super().__init__(message)
        self.body = body[:SHOWN_BODY]


def _looks_like_html(data: bytes) -> bool:
    return data.lstrip()[:1] == b"<"


def check_event(event: Any, what: str) -> dict[str, Any]:
    """``event`` (parsed JSON) as a usable answer object, unwrapped; ``BadAnswer`` otherwise."""
    if not isinstance(event, dict):
        raise BadAnswer(f"{what} is JSON but not an object")
    body = unwrap_any(event)
    error = body.get("error")
    if error is not None:
        detail = error.get("message") or error.get("status") if isinstance(error, dict) else error
        raise BadAnswer(f"{what} is an error object: {str(detail)[:200]}")
    if not any(key in body for key in USABLE_KEYS):
        raise BadAnswer(f"{what} has no candidates")
    return body


def check_whole(data: bytes) -> dict[str, Any]:
    """A non-stream 200 body as the unwrapped GenerateContentResponse; ``BadAnswer`` when unusable."""
    if not data.strip():
        raise BadAnswer("the 200 answer has an empty body")
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadAnswer("the 200 answer is an HTML page" if _looks_like_html(data)
                        else "the 200 answer is not valid JSON", data) from None
    try:
        return check_event(parsed, "the 200 answer")
    except BadAnswer as e:
        raise BadAnswer(str(e), data) from None


def check_other(data: bytes) -> dict[str, Any]:
    """The 200 body of another call (countTokens, batchEmbedContents): a JSON object without an error."""
    try:
        parsed = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadAnswer("the 200 answer is not valid JSON", data) from None
    if not isinstance(parsed, dict):
        raise BadAnswer("the 200 answer is JSON but not an object", data)
    body = unwrap_any(parsed)
    if body.get("error") is not None:
        raise BadAnswer("the 200 answer is an error object", data)
    return body


@dataclass(slots=True)
class FirstEventProbe:
    """Sans-IO: ``feed`` each chunk until it returns True (a usable event arrived), ``end`` at EOF.

    Comments (keep-alives) and ``[DONE]`` before the first event are not usable; anything that is not a
    usable event raises ``BadAnswer``. ``held`` is every byte fed so far, to be sent on unchanged.
    """

    held: list[bytes]
    _decoder: SSEDecoder
    _size: int

    def __init__(self) -> None:
        self.held = []
        self._decoder = SSEDecoder()
        self._size = 0

    def feed(self, chunk: bytes) -> bool:
        if not self.held and _looks_like_html(chunk):
            raise BadAnswer("the 200 stream is an HTML page", chunk)
        self.held.append(chunk)
        self._size += len(chunk)
        if self._size > MAX_HELD:
            raise BadAnswer(f"the 200 stream sent over {MAX_HELD // 2**20} MiB without a usable event",
                            self.held[0])
        return self._judge(self._decoder.feed(chunk))

    def end(self) -> bool:
        """The stream ended: True if its unterminated last event is usable, else ``BadAnswer``."""
        if self._judge(self._decoder.finish()):
            return True
        raise BadAnswer("the 200 stream ended before its first event" if self.held
                        else "the 200 stream is empty", b"".join(self.held))

    def _judge(self, events: list[Any]) -> bool:
        for ev in events:
            if ev.comment or not ev.data or ev.data == b"[DONE]":
                continue
            try:
                parsed = orjson.loads(ev.data)
            except orjson.JSONDecodeError:
                raise BadAnswer("the 200 stream sent an event that is not JSON", ev.data) from None
            try:
                check_event(parsed, "the stream's first event")
            except BadAnswer as e:
                raise BadAnswer(str(e), ev.data) from None
            return True
        return False
