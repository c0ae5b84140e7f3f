"""One object per OpenAI API (chat, responses, completions) bundling its translation steps.

The mitmproxy glue calls the same verbs for every API: parse the body, name the model, the session
key for sticky scheduling, list the image URLs to fetch, build the Gemini request, and translate the
answer (a stream translator or a whole body). Adding an API is adding an ``Endpoint``, not another
branch in the hooks.

The Responses endpoint owns the one piece of state translation needs, the ``previous_response_id``
store (``responses_store.py``): ``parse`` resolves the chain (an unknown id is a 404 before anything
goes upstream), and a finished response is saved when the request did not say ``store: false``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import errors
from ..openai_api.completions_models import CompletionRequest, parse_completion_request
from ..openai_api.models import ChatCompletionRequest, parse_chat_request
from ..openai_api.responses_models import parse_responses_request
from ..openai_api.responses_wire import response_echo
from ..openai_api.routes import RouteKind
from ..openai_api.wire import ChatCompletion
from ..sse import DONE, encode_data, encode_event
from .chat_request import chat_request_to_gemini
from .chat_stream import GeminiToChatStream, gemini_to_chat_completion
from .completions import GeminiToCompletionStream, completion_request_to_gemini, gemini_to_text_completion
from .parts import InlineImage, image_url_params
from .responses_request import (
    ResponsesCall,
    input_items,
    responses_image_url_params,
    responses_request_to_gemini,
    tool_names,
)
from .responses_store import ResponseStore, StoredResponse, output_as_input
from .responses_stream import GeminiToResponsesStream, gemini_to_response


@dataclass(frozen=True, slots=True)
class Ids:
    """Identifiers of one answer, made once by the caller so translation stays pure."""

    id: str
    created: int
    new_call_id: Callable[[], str]

    @classmethod
    def new(cls, prefix: str) -> Ids:
        return cls(f"{prefix}{os.urandom(12).hex()}", int(time.time()), lambda: secrets.token_hex(12))


class Endpoint(Protocol):
    name: str
    id_prefix: str
    stream_format: Any

    def parse(self, body: bytes) -> Any: ...
    def model(self, parsed: Any) -> str: ...
    def stream(self, parsed: Any) -> bool: ...
    def session_key(self, parsed: Any) -> str: ...
    def image_urls(self, parsed: Any) -> dict[str, str]: ...  # http(s) URL -> the param naming it
    def to_gemini(self, parsed: Any, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]: ...
    def stream_translator(self, parsed: Any, ids: Ids) -> Any: ...
    def complete(self, parsed: Any, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]: ...


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

    def session_key(self, parsed: ChatCompletionRequest) -> str:
        return ""

    def image_urls(self, parsed: ChatCompletionRequest) -> dict[str, str]:
        return image_url_params(parsed)

    def to_gemini(
        self, parsed: ChatCompletionRequest, model: str, images: Mapping[str, InlineImage]
    ) -> dict[str, Any]:
        return chat_request_to_gemini(parsed, model=model, images=images)

    def stream_translator(self, parsed: ChatCompletionRequest, ids: Ids) -> GeminiToChatStream:
        include_usage = bool(parsed.stream_options and parsed.stream_options.include_usage)
        return GeminiToChatStream(
            completion_id=ids.id,
            created=ids.created,
            model=parsed.model,
            include_usage=include_usage,
            n=parsed.n or 1,
            id_factory=ids.new_call_id,
        )

    def complete(self, parsed: ChatCompletionRequest, response: dict[str, Any], ids: Ids) -> ChatCompletion:
        return gemini_to_chat_completion(
            response,
            completion_id=ids.id,
            created=ids.created,
            model=parsed.model,
            id_factory=ids.new_call_id,
        )


class ResponsesStreamFormat:
    """``event: <type>`` + ``data: {json}`` frames; the terminal event ends the stream (no ``[DONE]``).

    A gateway failure mid-stream still ends with ``response.failed``: a Responses stream that just stops
    makes Codex send the whole turn again, five times.
    """

    end = b""

    def encode(self, item: Any) -> bytes:
        return encode_event(item["type"], item)

    def failure(self, translator: Any, err: errors.GatewayError) -> list[Any]:
        return translator.abort(err)


class _SavingStream:
    """A Responses stream translator that saves its response for ``previous_response_id`` once it ends."""

    def __init__(
        self, translator: GeminiToResponsesStream, save: Callable[[GeminiToResponsesStream], None]
    ) -> None:
        self._translator = translator
        self._save = save
        self._saved_once = False

    def feed(self, event: dict[str, Any]) -> list[Any]:
        return self._saved(self._translator.feed(event))

    def finish(self) -> list[Any]:
        return self._saved(self._translator.finish())

    def abort(self, err: errors.GatewayError) -> list[Any]:
        return self._translator.abort(err)

    def _saved(self, events: list[Any]) -> list[Any]:
        done = self._translator.response is not None and self._translator.error is None
        if done and not self._saved_once:
            self._saved_once = True
            self._save(self._translator)
        return events


class ResponsesEndpoint:
    name = "responses"
    id_prefix = "resp_"
    stream_format = ResponsesStreamFormat()

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def parse(self, body: bytes) -> ResponsesCall:
        req = parse_responses_request(body)
        if req.previous_response_id is None:
            assert req.model is not None  # parse_responses_request demands one without a chain
            return ResponsesCall(req, req.model, input_items(req))
        stored = self.store.get(req.previous_response_id)
        if stored is None:
            raise errors.NotFound(
                f"Previous response with id '{req.previous_response_id}' not found. This gateway keeps "
                f"responses in memory for {self.store.ttl:.0f} seconds, and only those created with "
                "'store' left true; send the whole conversation in 'input' instead.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        items = (*stored.items, *input_items(req))
        return ResponsesCall(req, req.model or stored.model, items, history=len(stored.items))

    def model(self, parsed: ResponsesCall) -> str:
        return parsed.model

    def stream(self, parsed: ResponsesCall) -> bool:
        return bool(parsed.request.stream)

    def session_key(self, parsed: ResponsesCall) -> str:
        """``prompt_cache_key`` (Codex sends its session id): requests of one session share a cache."""
        return parsed.request.prompt_cache_key or ""

    def image_urls(self, parsed: ResponsesCall) -> dict[str, str]:
        return responses_image_url_params(parsed)

    def to_gemini(
        self, parsed: ResponsesCall, model: str, images: Mapping[str, InlineImage]
    ) -> dict[str, Any]:
        return responses_request_to_gemini(parsed, model=model, images=images)

    def stream_translator(self, parsed: ResponsesCall, ids: Ids) -> GeminiToResponsesStream | _SavingStream:
        translator = self._translator(parsed, ids)
        if not parsed.stores:
            return translator
        return _SavingStream(translator, lambda t: self._save(parsed, ids.id, t))

    def complete(self, parsed: ResponsesCall, response: dict[str, Any], ids: Ids) -> dict[str, Any]:
        translator = self._translator(parsed, ids)
        answer = gemini_to_response(response, translator)
        if parsed.stores:
            self._save(parsed, ids.id, translator)
        return answer

    def _translator(self, parsed: ResponsesCall, ids: Ids) -> GeminiToResponsesStream:
        return GeminiToResponsesStream(
            response_id=ids.id,
            created_at=ids.created,
            echo=response_echo(parsed.request, parsed.model),
            id_factory=ids.new_call_id,
            names=tool_names(parsed),
            include_encrypted=parsed.request.wants_encrypted_reasoning,
        )

    def _save(self, parsed: ResponsesCall, response_id: str, translator: GeminiToResponsesStream) -> None:
        items = (*parsed.items, *output_as_input(translator.stored_output()))
        self.store.put(response_id, StoredResponse(parsed.model, items))


class CompletionsEndpoint:
    name = "completions"
    id_prefix = "cmpl-"
    stream_format = DataStreamFormat()

    def parse(self, body: bytes) -> CompletionRequest:
        return parse_completion_request(body)

    def model(self, parsed: CompletionRequest) -> str:
        return parsed.model

    def stream(self, parsed: CompletionRequest) -> bool:
        return bool(parsed.stream)

    def session_key(self, parsed: CompletionRequest) -> str:
        return ""

    def image_urls(self, parsed: CompletionRequest) -> dict[str, str]:
        return {}

    def to_gemini(
        self, parsed: CompletionRequest, model: str, images: Mapping[str, InlineImage]
    ) -> dict[str, Any]:
        return completion_request_to_gemini(parsed)

    def stream_translator(self, parsed: CompletionRequest, ids: Ids) -> GeminiToCompletionStream:
        return GeminiToCompletionStream(
            completion_id=ids.id,
            created=ids.created,
            model=parsed.model,
            include_usage=bool(parsed.stream_options and parsed.stream_options.include_usage),
            id_factory=ids.new_call_id,
            n=parsed.n or 1,
            echo=parsed.prompt_text if parsed.echo else None,
        )

    def complete(self, parsed: CompletionRequest, response: dict[str, Any], ids: Ids) -> dict[str, Any]:
        return gemini_to_text_completion(
            response,
            completion_id=ids.id,
            created=ids.created,
            model=parsed.model,
            id_factory=ids.new_call_id,
            n=parsed.n or 1,
            echo=parsed.prompt_text if parsed.echo else None,
        )


_ENDPOINTS: dict[RouteKind, Endpoint] = {
    RouteKind.CHAT: ChatEndpoint(),
    RouteKind.RESPONSES: ResponsesEndpoint(ResponseStore()),
    RouteKind.COMPLETIONS: CompletionsEndpoint(),
}


def endpoint_for(kind: RouteKind) -> Endpoint:
    try:
        return _ENDPOINTS[kind]
    except KeyError:
        raise errors.UnknownRoute(f"The {kind.value} API is not implemented by this gateway yet.") from None
