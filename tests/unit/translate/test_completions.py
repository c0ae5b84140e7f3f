"""Legacy completions both ways: the request rules, and text_completion chunks reshaped from the chat
translator (fed whole, byte by byte and at random splits, like every stream)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai.types import Completion

from antigravity_gw.errors import InvalidRequest, UpstreamError
from antigravity_gw.openai_api.completions_models import parse_completion_request
from antigravity_gw.translate.completions import (
    GeminiToCompletionStream,
    completion_request_to_gemini,
    gemini_to_text_completion,
)
from support.feeding import feed_sse, feedings

TRANSCRIPTS = Path(__file__).parents[2] / "transcripts"
HEAD = {"id": "cmpl-test", "object": "text_completion", "created": 1700000000, "model": "gemini-2.5-flash"}


def ids() -> Callable[[], str]:
    counter = itertools.count(1)
    return lambda: f"t{next(counter)}"


def request(**fields: Any) -> Any:
    return parse_completion_request(orjson.dumps({"model": "gemini-2.5-flash", **fields}))


def test_request_is_one_user_turn_with_the_generation_config() -> None:
    req = request(prompt=["Once upon"], max_tokens=20, stop="\n", n=2, temperature=0, top_p=1, seed=7,
                  presence_penalty=0.5, frequency_penalty=-0.5, echo=True, user="u")
    assert completion_request_to_gemini(req) == {
        "generationConfig": {"temperature": 0, "topP": 1, "maxOutputTokens": 20, "stopSequences": ["\n"],
                             "candidateCount": 2, "seed": 7, "presencePenalty": 0.5,
                             "frequencyPenalty": -0.5},
        "contents": [{"role": "user", "parts": [{"text": "Once upon"}]}],
    }
    assert completion_request_to_gemini(request(prompt="x")) == {
        "contents": [{"role": "user", "parts": [{"text": "x"}]}]}


def test_an_empty_prompt_is_a_400() -> None:
    with pytest.raises(InvalidRequest) as info:
        completion_request_to_gemini(request(prompt=""))
    assert info.value.param == "prompt"


def chunk(index: int, text: str, finish: str | None = None, **extra: Any) -> dict[str, Any]:
    return {**HEAD, "choices": [{"text": text, "index": index, "logprobs": None, "finish_reason": finish}],
            **extra}


def run_bytes(raw: bytes, cuts: list[int], **kwargs: Any) -> list[dict[str, Any]]:
    tr = GeminiToCompletionStream(completion_id=HEAD["id"], created=HEAD["created"], model=HEAD["model"],
                                  id_factory=ids(), **kwargs)
    return feed_sse(tr, raw, cuts)


EXPECTED = {
    "chat_text_thoughts.gemini.sse": ({"include_usage": True, "echo": "Say: "}, [
        chunk(0, "Say: ", usage=None),
        chunk(0, "Bonjour, ", usage=None),
        chunk(0, "le monde 🌍", usage=None),
        chunk(0, "", "stop", usage=None),
        {**HEAD, "choices": [], "usage": {
            "prompt_tokens": 12, "completion_tokens": 26, "total_tokens": 38,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 20}}},
    ]),
    "chat_two_candidates.gemini.sse": ({"include_usage": False, "n": 2}, [
        chunk(0, "Red"), chunk(1, "Blue"), chunk(0, " is warm."), chunk(0, "", "stop"), chunk(1, " is"),
        chunk(1, "", "length"),
    ]),
    "chat_prompt_blocked.gemini.sse": ({"include_usage": False}, [chunk(0, "", "content_filter")]),
    "chat_error_midstream.gemini.sse": ({"include_usage": False}, [
        chunk(0, "Partial"),
        {"error": {"message": "Google returned an error mid-stream (429 RESOURCE_EXHAUSTED): Resource has "
                              "been exhausted (e.g. check quota).",
                   "type": "upstream_error", "param": None, "code": "resource_exhausted"}},
    ]),
}


@pytest.mark.parametrize("name", EXPECTED)
def test_stream_chunks_for_every_feeding(name: str) -> None:
    kwargs, expected = EXPECTED[name]
    raw = (TRANSCRIPTS / name).read_bytes()
    for feeding, cuts in feedings(raw, seed=7, random_splits=10, most_cuts=20).items():
        assert run_bytes(raw, cuts, **kwargs) == expected, feeding


def test_non_stream_text_completion() -> None:
    response = {"candidates": [{"content": {"parts": [{"text": "think", "thought": True},
                                                      {"text": " there"}]},
                                "finishReason": "STOP"}],
                "usageMetadata": {"promptTokenCount": 3, "candidatesTokenCount": 2}}
    out = gemini_to_text_completion(response, completion_id=HEAD["id"], created=HEAD["created"],
                                    model=HEAD["model"], id_factory=ids(), echo="Hello")
    assert out == {**HEAD, "choices": [{"text": "Hello there", "index": 0, "logprobs": None,
                                        "finish_reason": "stop"}],
                   "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5,
                             "prompt_tokens_details": {"cached_tokens": 0},
                             "completion_tokens_details": {"reasoning_tokens": 0}}}
    Completion.model_validate(out)


def test_non_stream_raises_the_upstream_error() -> None:
    with pytest.raises(UpstreamError):
        gemini_to_text_completion({"error": {"code": 500, "status": "INTERNAL", "message": "x"}},
                                  completion_id="c", created=0, model="m", id_factory=ids())
