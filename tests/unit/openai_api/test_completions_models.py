"""parse_completion_request: one prompt per request; what Gemini cannot honour is a 400 naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.completions_models import parse_completion_request


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gemini-2.5-flash", **fields})


@pytest.mark.parametrize(("prompt", "text"), [("hi", "hi"), (["hi"], "hi")])
def test_one_prompt_as_a_string_or_a_list_of_one(prompt: Any, text: str) -> None:
    req = parse_completion_request(body(prompt=prompt, n=2, best_of=2, echo=True, stop="\n"))
    assert (req.prompt_text, req.n, req.echo, req.stop) == (text, 2, True, "\n")


@pytest.mark.parametrize(("fields", "param", "fragment"), [
    ({}, "prompt", "Missing required parameter"),
    ({"prompt": ["a", "b"]}, "prompt", "Batched prompts are not supported"),
    ({"prompt": [1, 2]}, "prompt", "Token-id prompts are not supported"),
    ({"prompt": [[1, 2]]}, "prompt", "Token-id prompts are not supported"),
    ({"prompt": []}, "prompt", "expected a string or an array of one string"),
    ({"prompt": 5}, "prompt", "expected a string or an array of one string"),
    ({"prompt": "a", "suffix": "b"}, "suffix", "not supported"),
    ({"prompt": "a", "logprobs": 2}, "logprobs", "not supported"),
    ({"prompt": "a", "best_of": 3}, "best_of", "not supported"),
    ({"prompt": "a", "max_tokens": 0}, "max_tokens", ">= 1"),
    ({"prompt": "a", "model": ""}, "model", "empty string"),
])
def test_rejections_name_the_field(fields: dict[str, Any], param: str, fragment: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        parse_completion_request(body(**fields))
    assert info.value.param == param
    assert fragment in info.value.message


HUGE = b"1" + b"0" * 30  # 10**30: beyond 64 bits


@pytest.mark.parametrize("field", ["max_tokens", "seed", "n", "best_of", "temperature"])
def test_numbers_out_of_range_are_400_naming_the_field(field: str) -> None:
    raw = orjson.dumps({"model": "m", "prompt": "hi", field: "N"}).replace(b'"N"', HUGE)
    with pytest.raises(InvalidRequest) as e:
        parse_completion_request(raw)
    assert e.value.param == field


def test_logit_bias_is_checked_though_unused() -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_completion_request(orjson.dumps({"model": "m", "prompt": "hi", "logit_bias": {"7": 101}}))
    assert e.value.param == "logit_bias.7"
