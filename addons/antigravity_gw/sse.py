"""Server-sent events framing: bytes in, events out, and events back to bytes.

Knows SSE (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation),
not OpenAI or Gemini. ``SSEDecoder.feed()`` takes whatever slice of the stream arrived (events may be
split anywhere, even inside a CRLF) and returns the events it completed; ``finish()`` flushes the rest
when the stream ends.
"""

from __future__ import annotations

from dataclasses import dataclass

import orjson

DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True, slots=True)
class SSEEvent:
    data: bytes
    event: str | None = None
    comment: bool = False


class SSEDecoder:
    __slots__ = ("_buf", "_data", "_event", "_seen_field", "_comment")

    def __init__(self) -> None:
        self._buf = b""
        self._data: list[bytes] = []
        self._event: str | None = None
        self._seen_field = False
        self._comment = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        buf = self._buf + chunk
        # A trailing CR may be the first half of a CRLF: keep it until the next byte shows.
        hold = buf.endswith(b"\r")
        if hold:
            buf = buf[:-1]
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        *lines, rest = buf.split(b"\n")
        self._buf = rest + b"\r" if hold else rest
        out: list[SSEEvent] = []
        for line in lines:
            self._line(line, out)
        return out

    def finish(self) -> list[SSEEvent]:
        """End of stream: an unterminated last event still counts (Gemini sometimes omits the blank line)."""
        rest, self._buf = self._buf.rstrip(b"\r"), b""
        out: list[SSEEvent] = []
        if rest:
            self._line(rest, out)
        self._line(b"", out)
        return out

    def _line(self, line: bytes, out: list[SSEEvent]) -> None:
        if not line:
            if self._seen_field:
                out.append(SSEEvent(b"\n".join(self._data), self._event))
            elif self._comment:
                out.append(SSEEvent(b"", None, comment=True))
            self._data, self._event, self._seen_field, self._comment = [], None, False, False
            return
        if line[0] == 0x3A:  # ":" comment, e.g. a keep-alive
            self._comment = True
            return
        name, sep, value = line.partition(b":")
        if sep and value[:1] == b" ":
            value = value[1:]
        if name == b"data":
            self._data.append(value)
            self._seen_field = True
        elif name == b"event":
            self._event = value.decode("utf-8", "replace")
            self._seen_field = True


def encode_data(obj: object) -> bytes:
    """One ``data:`` event carrying a JSON object (the chat.completion.chunk framing)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def encode_event(event: str, obj: object) -> bytes:
    """A named event (the Responses API framing: ``event:`` line plus ``data:``)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
