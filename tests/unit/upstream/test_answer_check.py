"""upstream/answer_check.py: which 2xx answers a client can use, judged on bytes."""

from __future__ import annotations

import pytest

from antigravity_gw.upstream.answer_check import BadAnswer, FirstEventProbe, check_other, check_whole

GOOD = b'data: {"response": {"candidates": [{"content": {"parts": [{"text": "hi"}]}}]}}\r\n\r\n'


@pytest.mark.parametrize(("body", "words"), [
    (b"", "empty body"),
    (b"  \n", "empty body"),
    (b"\n<!DOCTYPE html><html></html>", "HTML page"),
    (b'{"candidates": [', "not valid JSON"),
    (b'"text"', "not an object"),
    (b'{"error": {"code": 500, "message": "Internal error encountered.", "status": "INTERNAL"}}',
     "error object: Internal error encountered."),
    (b'{"response": {"error": {"status": "UNAVAILABLE"}}}', "error object: UNAVAILABLE"),
    (b'{"response": {"modelVersion": "x"}}', "no candidates"),
])
def test_unusable_whole_answers(body, words):
    with pytest.raises(BadAnswer, match=words):
        check_whole(body)


@pytest.mark.parametrize("body", [
    b'{"candidates": []}',
    b'{"response": {"candidates": [{"index": 0}]}, "traceId": "t"}',
    b'{"promptFeedback": {"blockReason": "SAFETY"}}',
])
def test_usable_whole_answers_come_back_unwrapped(body):
    assert set(check_whole(body)) & {"candidates", "promptFeedback"}


def test_a_cloudcode_envelope_is_unwrapped():
    assert check_whole(b'{"response": {"candidates": [1]}, "traceId": "t"}') == {"candidates": [1]}


def test_the_probe_holds_chunks_until_the_first_usable_event_even_split_anywhere():
    probe = FirstEventProbe()
    pieces = [b": keep-alive\r\n\r", b"\n", GOOD[:7], GOOD[7:40], GOOD[40:]]
    assert [probe.feed(p) for p in pieces] == [False, False, False, False, True]
    assert b"".join(probe.held) == b"".join(pieces)


def test_the_probe_accepts_a_usable_unterminated_last_event_at_the_end():
    probe = FirstEventProbe()
    assert probe.feed(GOOD.rstrip()) is False
    assert probe.end() is True


@pytest.mark.parametrize(("chunks", "words"), [
    ([], "is empty"),
    ([b": keep-alive\r\n\r\n"], "ended before its first event"),
    ([b"data: [DONE]\r\n\r\n"], "ended before its first event"),
    ([b'data: {"response": {"cand'], "not JSON"),  # cut mid-event, then a clean end
])
def test_the_probe_refuses_streams_that_end_without_a_usable_event(chunks, words):
    probe = FirstEventProbe()
    for chunk in chunks:
        assert probe.feed(chunk) is False
    with pytest.raises(BadAnswer, match=words):
        probe.end()


@pytest.mark.parametrize(("chunk", "words"), [
    (b"<html><body>Bad Gateway</body></html>", "HTML page"),
    (b"data: {oops\r\n\r\n", "not JSON"),
    (b'data: {"error": {"code": 429, "message": "slow down"}}\r\n\r\n', "slow down"),
    (b"data: [1, 2]\r\n\r\n", "not an object"),
])
def test_the_probe_refuses_a_bad_first_event_at_once(chunk, words):
    with pytest.raises(BadAnswer, match=words):
        FirstEventProbe().feed(chunk)


def test_a_stream_of_junk_without_a_usable_event_is_refused_once_over_the_cap(monkeypatch):
    from antigravity_gw.upstream import answer_check

    monkeypatch.setattr(answer_check, "MAX_HELD", 1000)
    probe = FirstEventProbe()
    for _ in range(9):
        assert probe.feed(b": keep-alive" + b" " * 88 + b"\r\n\r\n") is False
    with pytest.raises(BadAnswer, match="without a usable event"):
        probe.feed(b": keep-alive" + b" " * 88 + b"\r\n\r\n")


def test_a_bad_answer_keeps_the_start_of_what_was_sent_for_the_failed_attempts_flow():
    with pytest.raises(BadAnswer) as caught:
        check_whole(b"<html>" + b"x" * 100_000)
    assert caught.value.body.startswith(b"<html>xx") and len(caught.value.body) == 64 * 1024
    with pytest.raises(BadAnswer) as caught:
        FirstEventProbe().feed(b'data: {"error": {"message": "boom"}}\n\n')
    assert caught.value.body == b'{"error": {"message": "boom"}}'


def test_other_calls_need_a_json_object_without_an_error():
    assert check_other(b'{"totalTokens": 3}') == {"totalTokens": 3}
    for bad in (b"<html>", b"[1]", b'{"error": {"message": "no"}}'):
        with pytest.raises(BadAnswer):
            check_other(bad)
