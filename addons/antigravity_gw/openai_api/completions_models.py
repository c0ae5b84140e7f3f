"""Inbound legacy ``/v1/completions`` bodies, validated once at the door (the rules of ``models.py``).

Gemini has no batch call and one gateway request is one upstream call, so ``prompt`` must be one text:
a string, or a list holding exactly one string. Token-id prompts, several prompts, ``suffix``
(insertion) and ``logprobs`` cannot be honoured and are refused with a 400 naming the field, instead
of returning something other than what was asked. ``best_of`` is accepted only when it asks for
nothing more than ``n``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field, ValidationError

from ..errors import InvalidRequest
from .models import (
    ModelName,
    Seed,
    Stop,
    StreamOptions,
    TokenCount,
    _Model,
    validation_error_to_invalid_request,
)


class CompletionRequest(_Model):
    model: ModelName
    prompt: Any = None
    suffix: str | None = None
    max_tokens: TokenCount | None = None
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, ge=0, le=1)
    n: int | None = Field(default=None, ge=1, le=128)
    best_of: int | None = Field(default=None, ge=1, le=128)
    stream: bool | None = None
    stream_options: StreamOptions | None = None
    stop: Stop | None = None
    echo: bool | None = None
    logprobs: int | None = None
    seed: Seed | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    user: str | None = None
    logit_bias: dict[str, Annotated[int, Field(ge=-100, le=100)]] | None = None  # not used; checked

    @property
    def prompt_text(self) -> str:
        """The single prompt, after ``parse_completion_request`` checked there is exactly one."""
        return self.prompt if isinstance(self.prompt, str) else self.prompt[0]


def parse_completion_request(body: bytes) -> CompletionRequest:
    try:
        req = CompletionRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error_to_invalid_request(exc, api="completions") from None
    _check_prompt(req.prompt)
    if req.suffix:
        raise InvalidRequest(
            "'suffix' (text insertion) is not supported by this gateway: Gemini has no insertion mode. "
            "Put the text that should follow into the prompt instead.",
            param="suffix",
        )
    if req.logprobs is not None:
        raise InvalidRequest("'logprobs' is not supported by this gateway.", param="logprobs")
    if req.best_of is not None and req.best_of != (req.n or 1):
        raise InvalidRequest(
            "'best_of' is not supported by this gateway (only best_of equal to n); use 'n' instead.",
            param="best_of",
        )
    return req


def _check_prompt(prompt: Any) -> None:
    if isinstance(prompt, str):
        return
    if prompt is None:
        raise InvalidRequest("Missing required parameter: 'prompt'.", param="prompt")
    if not isinstance(prompt, list) or not prompt:
        raise InvalidRequest(
            "Invalid type for 'prompt': expected a string or an array of one string.", param="prompt"
        )
    if not all(isinstance(p, str) for p in prompt):
        raise InvalidRequest(
            "Token-id prompts are not supported by this gateway (Gemini tokenizes text itself): send the "
            "prompt as a string.",
            param="prompt",
        )
    if len(prompt) > 1:
        raise InvalidRequest(
            f"Batched prompts are not supported by this gateway: 'prompt' holds {len(prompt)} prompts, and "
            "Gemini answers one prompt per call. Send one request per prompt (they may run concurrently).",
            param="prompt",
        )
