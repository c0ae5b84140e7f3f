"""SSEDecoder: the same events however the byte stream is split, CR/LF/CRLF framing, comments, and an
unterminated last event."""

from __future__ import annotations

import random

import pytest

from antigravity_gw.sse import DONE, SSEDecoder, SSEEvent, encode_data, encode_event


def feed_in_pieces(raw: bytes, cuts: list[int]) -> list[SSEEvent]:
    decoder = SSEDecoder()
    events: list[SSEEvent] = []
    start = 0
    for cut in [*cuts, len(raw)]:
        events.extend(decoder.feed(raw[start:cut]))
        start = cut
    return events + decoder.finish()


def all_feedings(raw: bytes) -> dict[str, list[SSEEvent]]:
    """Whole, one byte at a time, and 30 seeded random split sets."""
    out = {"whole": feed_in_pieces(raw, []), "bytes": feed_in_pieces(raw, list(range(1, len(raw))))}
    rng = random.Random(1234)
    for n in range(30):
        cuts = sorted(rng.sample(range(1, len(raw)), k=min(len(raw) - 1, rng.randint(1, 12))))
        out[f"random{n}"] = feed_in_pieces(raw, cuts)
    return out


GEMINI_LIKE = (
    'data: {"response":{"candidates":[{"content":{"parts":[{"text":"héllo ✓"}]}}]}}\n\n'
    'data: {"response":{"candidates":[{"finishReason":"STOP"}]}}\n\n'
).encode()


@pytest.mark.parametrize(
    ("name", "raw", "expected"),
    [
        (
            "lf",
            GEMINI_LIKE,
            [
                SSEEvent('{"response":{"candidates":[{"content":{"parts":[{"text":"héllo ✓"}]}}]}}'.encode()),
                SSEEvent(b'{"response":{"candidates":[{"finishReason":"STOP"}]}}'),
            ],
        ),
        ("crlf", b"data: a\r\n\r\ndata: b\r\n\r\n", [SSEEvent(b"a"), SSEEvent(b"b")]),
        ("cr_only", b"data: a\r\rdata: b\r\r", [SSEEvent(b"a"), SSEEvent(b"b")]),
        ("multi_line_data", b"data: one\ndata: two\n\n", [SSEEvent(b"one\ntwo")]),
        ("event_name", b"event: ping\ndata: {}\n\n", [SSEEvent(b"{}", "ping")]),
        ("no_space_after_colon", b"data:x\n\n", [SSEEvent(b"x")]),
        ("comment_only", b": keep-alive\n\ndata: x\n\n", [SSEEvent(b"", None, comment=True), SSEEvent(b"x")]),
        ("comment_inside_event", b"data: x\n: note\ndata: y\n\n", [SSEEvent(b"x\ny")]),
        ("unterminated_last_event", b"data: a\n\ndata: b", [SSEEvent(b"a"), SSEEvent(b"b")]),
        ("unterminated_after_one_newline", b"data: a\r\n", [SSEEvent(b"a")]),
        ("unknown_field_ignored", b"id: 7\nretry: 10\ndata: z\n\n", [SSEEvent(b"z")]),
        ("done_marker", b"data: [DONE]\n\n", [SSEEvent(b"[DONE]")]),
    ],
)
def test_events_are_identical_whatever_the_split(name: str, raw: bytes, expected: list[SSEEvent]) -> None:
    for feeding, events in all_feedings(raw).items():
        assert events == expected, f"{name}: feeding {feeding!r}"


def test_crlf_split_between_cr_and_lf_is_one_line_break() -> None:
    decoder = SSEDecoder()
    # Were the CR and the LF two line breaks, the blank line between them would end the event at "a".
    assert decoder.feed(b"data: a\r") == []
    assert decoder.feed(b"\ndata: b\r") == []
    assert decoder.feed(b"\n\r") == [SSEEvent(b"a\nb")]
    assert decoder.feed(b"\ndata: c\r\n\r\n") == [SSEEvent(b"c")]
    assert decoder.finish() == []


def test_a_line_is_dispatched_at_its_cr_without_waiting_for_the_next_feed() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"data: a\r\r") == [SSEEvent(b"a")]
    assert decoder.feed(b"\n") == []  # the LF after the last CR completes a CRLF: no extra blank line
    assert decoder.finish() == []


def test_a_long_event_in_many_feeds_arrives_whole_once() -> None:
    value = bytes(range(32, 127)) * 3000
    raw = b"event: big\ndata: " + value + b"\r\n\r\n"
    decoder = SSEDecoder()
    events = [e for i in range(0, len(raw), 1000) for e in decoder.feed(raw[i : i + 1000])]
    assert events == [SSEEvent(value, "big")]
    assert decoder.finish() == []


def test_blank_lines_without_fields_dispatch_nothing() -> None:
    assert feed_in_pieces(b"\n\n\r\n\n", []) == []


def test_finish_on_empty_stream_returns_nothing() -> None:
    assert SSEDecoder().finish() == []


def test_encoders_frame_json_as_data_events() -> None:
    assert encode_data({"a": "é"}) == 'data: {"a":"é"}\n\n'.encode()
    assert encode_event("response.created", {"x": 1}) == b'event: response.created\ndata: {"x":1}\n\n'
    assert DONE == b"data: [DONE]\n\n"


def test_encoded_events_decode_back() -> None:
    raw = encode_data({"n": 1}) + encode_event("e", {"n": 2}) + DONE
    assert feed_in_pieces(raw, list(range(1, len(raw)))) == [
        SSEEvent(b'{"n":1}'),
        SSEEvent(b'{"n":2}', "e"),
        SSEEvent(b"[DONE]"),
    ]
