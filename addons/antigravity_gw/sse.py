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
    """Linear in its input: a feed searches only the bytes it brings, and an unfinished line waits in a
    bytearray that grows in place (an image event of several MiB arrives in hundreds of chunks; copying
    the whole buffer on each feed made that quadratic)."""

    __slots__ = ("_comment", "_cr_ended", "_data", "_event", "_partial", "_seen_field")

    def __init__(self) -> None:
        self._partial = bytearray()  # the unfinished last line; never holds a CR or LF
        self._cr_ended = False  # the last feed ended on a CR: a LF opening the next one completes a CRLF
        self._data: list[bytes] = []
        self._event: str | None = None
        self._seen_field = False
        self._comment = False

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        if self._cr_ended:
            self._cr_ended = False
            if chunk[:1] == b"\n":
                chunk = chunk[1:]
        if b"\r" in chunk:
            self._cr_ended = chunk.endswith(b"\r")
            chunk = chunk.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = chunk.rfind(b"\n")
        if end < 0:
            self._partial += chunk
            return []
        if self._partial:
            self._partial += chunk[:end]
            complete = bytes(self._partial)
            self._partial = bytearray(chunk[end + 1 :])
        else:
            complete = chunk[:end]
            self._partial += chunk[end + 1 :]
        out: list[SSEEvent] = []
        self._lines(complete, out)
        return out

    def finish(self) -> list[SSEEvent]:
        """End of stream: an unterminated last event still counts (Gemini sometimes omits the blank line)."""
        rest, self._partial, self._cr_ended = bytes(self._partial), bytearray(), False
        out: list[SSEEvent] = []
        if rest:
            self._line(rest, 0, len(rest), out)
        self._line(b"", 0, 0, out)
        return out

    def _lines(self, text: bytes, out: list[SSEEvent]) -> None:
        # Lines are index ranges into ``text``: a field's value is the only copy made of a long line.
        start = 0
        while (end := text.find(b"\n", start)) >= 0:
            self._line(text, start, end, out)
            start = end + 1
        self._line(text, start, len(text), out)

    def _line(self, text: bytes, start: int, end: int, out: list[SSEEvent]) -> None:
        if start == end:
            if self._seen_field:
                out.append(SSEEvent(b"\n".join(self._data), self._event))
            elif self._comment:
                out.append(SSEEvent(b"", None, comment=True))
            self._data, self._event, self._seen_field, self._comment = [], None, False, False
            return
        if text[start] == 0x3A:  # ":" comment, e.g. a keep-alive
            self._comment = True
            return
        colon = text.find(b":", start, end)
        if colon < 0:
            name, value_at = text[start:end], end
        else:
            name, value_at = text[start:colon], colon + 1
            if value_at < end and text[value_at] == 0x20:
                value_at += 1
        if name == b"data":
            self._data.append(text[value_at:end])
            self._seen_field = True
        elif name == b"event":
            self._event = text[value_at:end].decode("utf-8", "replace")
            self._seen_field = True


def encode_data(obj: object) -> bytes:
    """One ``data:`` event carrying a JSON object (the chat.completion.chunk framing)."""
    return b"data: " + orjson.dumps(obj) + b"\n\n"


def encode_event(event: str, obj: object) -> bytes:
    """A named event (the Responses API framing: ``event:`` line plus ``data:``)."""
    return b"event: " + event.encode() + b"\ndata: " + orjson.dumps(obj) + b"\n\n"


KEEPALIVE = b": keep-alive\n\n"
