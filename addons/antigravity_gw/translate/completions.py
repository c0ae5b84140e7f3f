"""Legacy ``/v1/completions`` both ways: ``CompletionRequest`` → Gemini, and Gemini → ``text_completion``.

The request is one user turn holding the prompt; ``max_tokens``, ``stop``, ``n`` (``candidateCount``),
``temperature``, ``top_p``, ``seed`` and the penalties map as in chat. No thinking settings are sent
(a legacy completion has no place for thoughts, and Gemini leaves them out by default). OpenAI's
legacy default of 16 tokens is not applied: on thinking models it would leave no room for an answer.

The answer reuses the chat translator (``GeminiToChatStream``) and reshapes its chunks, so candidates,
finish reasons, usage and errors follow the chat rules exactly:
* a ``content`` delta → ``{"text": …}`` for its choice; a finish chunk → ``{"text": "", finish_reason}``;
* ``echo``: the prompt is the first text of every choice (streamed as its first chunk);
* thoughts are dropped; a blocked prompt finishes with ``content_filter`` and no text;
* the usage chunk (``stream_options.include_usage``) and an error body pass through unchanged.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import GatewayError, InvalidRequest
from ..openai_api.completions_models import CompletionRequest
from .chat_request import sampling_config
from .chat_stream import GeminiToChatStream, IdFactory, gemini_to_chat_completion
from .parts import text_part

OBJECT = "text_completion"


def completion_request_to_gemini(req: CompletionRequest) -> dict[str, Any]:
    prompt = req.prompt_text
    if not prompt:
        raise InvalidRequest(
            "Invalid 'prompt': empty string. Gemini needs some text to continue.", param="prompt"
        )
    config = sampling_config(req, max_output_tokens=req.max_tokens)
    out: dict[str, Any] = {}
    if config:
        out["generationConfig"] = config
    out["contents"] = [{"role": "user", "parts": [text_part(prompt)]}]
    return out


class GeminiToCompletionStream:
    """Gemini events → ``text_completion`` chunks (and at most one error body, always last)."""

    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        id_factory: IdFactory,
        n: int = 1,
        echo: str | None = None,
    ) -> None:
        self._chat = GeminiToChatStream(
            completion_id=completion_id,
            created=created,
            model=model,
            include_usage=include_usage,
            id_factory=id_factory,
            n=n,
        )
        self._echo = echo

    @property
    def error(self) -> Any:
        return self._chat.error

    def feed(self, event: Mapping[str, Any]) -> list[dict[str, Any]]:
        return self._reshape(self._chat.feed(event))

    def finish(self) -> list[dict[str, Any]]:
        return self._reshape(self._chat.finish())

    def abort(self, error: GatewayError) -> list[dict[str, Any]]:
        return self._reshape(self._chat.abort(error))

    def _reshape(self, items: list[Any]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for item in items:
            if "choices" not in item:
                out.append(item)  # an error body
            elif not item["choices"]:
                out.append({**item, "object": OBJECT})  # the usage chunk
            elif (choice := _choice(item["choices"][0], self._echo)) is not None:
                out.append({**item, "object": OBJECT, "choices": [choice]})
        return out


def _choice(chat_choice: Mapping[str, Any], echo: str | None) -> dict[str, Any] | None:
    delta, finish = chat_choice["delta"], chat_choice["finish_reason"]
    text = echo if "role" in delta else delta.get("content")  # "role": the opening chunk of a choice
    if not text and finish is None:
        return None
    return {"text": text or "", "index": chat_choice["index"], "logprobs": None, "finish_reason": finish}


def gemini_to_text_completion(
    response: Mapping[str, Any],
    *,
    completion_id: str,
    created: int,
    model: str,
    id_factory: IdFactory,
    n: int = 1,
    echo: str | None = None,
) -> dict[str, Any]:
    """One unary ``GenerateContentResponse`` → ``text_completion``; raises what a stream would end with."""
    chat = gemini_to_chat_completion(
        response, completion_id=completion_id, created=created, model=model, id_factory=id_factory, n=n
    )
    choices = [
        {
            "text": (echo or "") + (c["message"]["content"] or ""),
            "index": c["index"],
            "logprobs": None,
            "finish_reason": c["finish_reason"],
        }
        for c in chat["choices"]
    ]
    return {
        "id": completion_id,
        "object": OBJECT,
        "created": created,
        "model": model,
        "choices": choices,
        "usage": chat["usage"],
    }
