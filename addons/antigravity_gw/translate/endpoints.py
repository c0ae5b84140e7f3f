"""One object per OpenAI API (chat, responses, completions) bundling its translation steps.

The mitmproxy glue calls the same verbs for every API: parse the body, name the model, list the
image URLs to fetch, build the Gemini request, and translate the answer (a stream translator or
a whole body). Adding an API is adding an ``Endpoint``, not another branch in the hooks.
"""

from __future__ import annotations

import secrets
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import errors
from ..openai_api.models import ChatCompletionRequest, parse_chat_request
from ..openai_api.routes import RouteKind
from ..sse import DONE, encode_data
from .chat_request import chat_request_to_gemini
from .chat_stream import GeminiToChatStream, gemini_to_chat_completion
from .parts import InlineImage, collect_image_urls


@dataclass(frozen=True, slots=True)
class Ids:
    """Identifiers of one answer, made once by the caller so translation stays pure."""

    id: str
    created: int
    new_call_id: Callable[[], str]

    @classmethod
    def new(cls, prefix: str) -> Ids:
        return cls(f"{prefix}{uuid.uuid4().hex[:24]}", int(time.time()), lambda: secrets.token_hex(12))


class Endpoint(Protocol):
    name: str
    id_prefix: str
    stream_format: Any

    def parse(self, body: bytes) -> Any: ...
    def model(self, parsed: Any) -> str: ...
    def stream(self, parsed: Any) -> bool: ...
    def image_urls(self, parsed: Any) -> list[str]: ...
    def to_gemini(self, parsed: Any, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]: ...
    def stream_translator(self, parsed: Any, ids: Ids) -> Any: ...
    def complete(self, parsed: Any, response: dict[str, Any], ids: Ids) -> dict[str, Any]: ...


class DataStreamFormat:
    """``data: {json}`` events ending in ``data: [DONE]`` (chat and legacy completions)."""

    end = DONE

    def encode(self, item: Any) -> bytes:
        return encode_data(item)

    def failure(self, translator: Any, err: errors.GatewayError) -> list[Any]:
        return [err.to_openai()]


class ChatEndpoint:
    name = "chat.completions"
    id_prefix = "chatcmpl-"
    stream_format = DataStreamFormat()

    def parse(self, body: bytes) -> ChatCompletionRequest:
        return parse_chat_request(body)

    def model(self, parsed: ChatCompletionRequest) -> str:
        return parsed.model

    def stream(self, parsed: ChatCompletionRequest) -> bool:
        return bool(parsed.stream)

    def image_urls(self, parsed: ChatCompletionRequest) -> list[str]:
        return collect_image_urls(parsed)

    def to_gemini(self, parsed: ChatCompletionRequest, model: str,
                  images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return chat_request_to_gemini(parsed, model=model, images=images)

    def stream_translator(self, parsed: ChatCompletionRequest, ids: Ids) -> GeminiToChatStream:
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        return GeminiToChatStream(completion_id=ids.id, created=ids.created, model=parsed.model,
                                  include_usage=include_usage, n=parsed.n or 1, id_factory=ids.new_call_id)

    def complete(self, parsed: ChatCompletionRequest, response: dict[str, Any], ids: Ids) -> dict[str, Any]:
        return gemini_to_chat_completion(response, completion_id=ids.id, created=ids.created, model=parsed.model,
                                         id_factory=ids.new_call_id)


_ENDPOINTS: dict[RouteKind, Endpoint] = {RouteKind.CHAT: ChatEndpoint()}


def endpoint_for(kind: RouteKind) -> Endpoint:
    try:
        return _ENDPOINTS[kind]
    except KeyError:
        raise errors.UnknownRoute(f"The {kind.value} API is not implemented by this gateway yet.") from None
