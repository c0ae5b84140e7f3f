"""One object per OpenAI API (chat, responses, completions) bundling its translation steps.

``Endpoint.parse(body)`` validates a request into a typed per-request object (a ``ParsedRequest``) that
answers every question the mitmproxy glue asks: the model the client named, whether it streams, the
session key for sticky scheduling, the image URLs to fetch, the Gemini request, the answer (a stream
translator or a whole body) and the API's own error body. Adding an API is adding an ``Endpoint`` and
its parsed request, not another branch in the hooks.

The Responses endpoint owns the one piece of state translation needs, the ``previous_response_id``
store (``responses_store.py``, made by whoever builds the registry: the Gateway): ``parse`` resolves
the chain (an unknown id is a 404 before anything goes upstream), and a finished response is saved
when the request did not say ``store: false``.
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from .. import errors
from ..error_shapes import OPENAI_ERRORS, ErrorShape
from ..openai_api.completions_models import CompletionRequest, parse_completion_request
from ..openai_api.images_models import ImageGenerationRequest, parse_image_edit, parse_image_generation
from ..openai_api.models import ChatCompletionRequest, parse_chat_request
from ..openai_api.responses_models import parse_responses_request
from ..openai_api.responses_wire import response_echo
from ..openai_api.routes import RouteKind
from ..openai_api.wire import ChatCompletion
from ..sse import DONE, encode_data, encode_event
from .chat_request import chat_request_to_gemini
from .chat_stream import GeminiToChatStream, gemini_to_chat_completion
from .completions import GeminiToCompletionStream, completion_request_to_gemini, gemini_to_text_completion
from .images import gemini_to_images, images_request_to_gemini
from .images import image_url_params as images_image_url_params
from .model_rules import family_of
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
    family: str | None = None  # the upstream model's signature family (``model_rules.family_of``)

    @classmethod
    def new(cls, prefix: str, *, upstream_model: str = "") -> Ids:
        return cls(f"{prefix}{os.urandom(12).hex()}", int(time.time()), lambda: secrets.token_hex(12),
                   family_of(upstream_model))


class StreamTranslator(Protocol):
    """Gemini events in, the API's stream items out; ``abort``: the items that end the stream when the
    gateway itself fails mid-way (the headers are gone: the failure must be said in-band)."""

    def feed(self, event: dict[str, Any]) -> list[Any]: ...
    def finish(self) -> list[Any]: ...
    def abort(self, err: errors.GatewayError) -> list[Any]: ...


class StreamFormat(Protocol):
    """How one API frames its stream items on the wire."""

    end: bytes  # b"data: [DONE]\n\n" for chat and completions, b"" for Responses

    def encode(self, item: Any) -> bytes: ...


class ParsedRequest(Protocol):
    """One validated client request, typed by its API: everything the glue asks about it."""

    @property
    def model(self) -> str: ...  # as the client named it (before the model map)
    @property
    def stream(self) -> bool: ...
    @property
    def session_key(self) -> str: ...  # the client's own conversation key, "" when it sends none

    def image_urls(self) -> dict[str, str]: ...  # http(s) URL -> the param naming it
    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]: ...
    def stream_translator(self, ids: Ids) -> StreamTranslator: ...
    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]: ...
    def error_body(self, err: errors.GatewayError) -> dict[str, Any]: ...


class Endpoint(Protocol):
    name: str
    id_prefix: str
    stream_format: StreamFormat
    error_shape: ErrorShape  # how this API writes an error down

    def parse(self, body: bytes) -> ParsedRequest: ...


class DataStreamFormat:
    """``data: {json}`` events ending in ``data: [DONE]`` (chat and legacy completions)."""

    end = DONE

    def encode(self, item: Any) -> bytes:
        return encode_data(item)


class ResponsesStreamFormat:
    """``event: <type>`` + ``data: {json}`` frames; the terminal event ends the stream (no ``[DONE]``).

    A gateway failure mid-stream still ends with ``response.failed`` (the translator's ``abort``): a
    Responses stream that just stops makes Codex send the whole turn again, five times.
    """

    end = b""

    def encode(self, item: Any) -> bytes:
        return encode_event(item["type"], item)


# ---- chat completions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedChat:
    request: ChatCompletionRequest
    session_key: str = ""  # chat has no conversation key: the pool hashes the conversation's opening

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return bool(self.request.stream)

    def image_urls(self) -> dict[str, str]:
        return image_url_params(self.request)

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return chat_request_to_gemini(self.request, model=model, images=images)

    def stream_translator(self, ids: Ids) -> GeminiToChatStream:
        req = self.request
        return GeminiToChatStream(
            completion_id=ids.id,
            created=ids.created,
            model=req.model,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            n=req.n or 1,
            id_factory=ids.new_call_id,
            family=ids.family,
        )

    def complete(self, response: dict[str, Any], ids: Ids) -> ChatCompletion:
        return gemini_to_chat_completion(
            response,
            completion_id=ids.id,
            created=ids.created,
            model=self.request.model,
            id_factory=ids.new_call_id,
            family=ids.family,
        )

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return OPENAI_ERRORS.body(err)


class ChatEndpoint:
    name = "chat.completions"
    id_prefix = "chatcmpl-"
    stream_format: StreamFormat = DataStreamFormat()
    error_shape: ErrorShape = OPENAI_ERRORS

    def parse(self, body: bytes) -> ParsedChat:
        return ParsedChat(parse_chat_request(body))


# ---- responses --------------------------------------------------------------------------------------
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


@dataclass(frozen=True, slots=True)
class ParsedResponses:
    call: ResponsesCall  # the request with its resolved conversation
    store: ResponseStore

    @property
    def model(self) -> str:
        return self.call.model

    @property
    def stream(self) -> bool:
        return bool(self.call.request.stream)

    @property
    def session_key(self) -> str:
        """``prompt_cache_key`` (Codex sends its session id): requests of one session share a cache."""
        return self.call.request.prompt_cache_key or ""

    def image_urls(self) -> dict[str, str]:
        return responses_image_url_params(self.call)

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return responses_request_to_gemini(self.call, model=model, images=images)

    def stream_translator(self, ids: Ids) -> GeminiToResponsesStream | _SavingStream:
        translator = self._translator(ids)
        if not self.call.stores:
            return translator
        return _SavingStream(translator, lambda t: self._save(ids.id, t))

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        translator = self._translator(ids)
        answer = gemini_to_response(response, translator)
        if self.call.stores:
            self._save(ids.id, translator)
        return answer

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return OPENAI_ERRORS.body(err)

    def _translator(self, ids: Ids) -> GeminiToResponsesStream:
        call = self.call
        return GeminiToResponsesStream(
            response_id=ids.id,
            created_at=ids.created,
            echo=response_echo(call.request, call.model),
            id_factory=ids.new_call_id,
            names=tool_names(call),
            include_encrypted=call.request.wants_encrypted_reasoning,
            family=ids.family,
        )

    def _save(self, response_id: str, translator: GeminiToResponsesStream) -> None:
        items = (*self.call.items, *output_as_input(translator.stored_output()))
        self.store.put(response_id, StoredResponse(self.call.model, items))


class ResponsesEndpoint:
    name = "responses"
    id_prefix = "resp_"
    stream_format: StreamFormat = ResponsesStreamFormat()
    error_shape: ErrorShape = OPENAI_ERRORS

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def parse(self, body: bytes) -> ParsedResponses:
        req = parse_responses_request(body)
        if req.previous_response_id is None:
            assert req.model is not None  # parse_responses_request demands one without a chain
            return ParsedResponses(ResponsesCall(req, req.model, input_items(req)), self.store)
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
        call = ResponsesCall(req, req.model or stored.model, items, history=len(stored.items))
        return ParsedResponses(call, self.store)


# ---- legacy completions -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedCompletion:
    request: CompletionRequest
    session_key: str = ""

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return bool(self.request.stream)

    def image_urls(self) -> dict[str, str]:
        return {}

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return completion_request_to_gemini(self.request)

    def stream_translator(self, ids: Ids) -> GeminiToCompletionStream:
        req = self.request
        return GeminiToCompletionStream(
            completion_id=ids.id,
            created=ids.created,
            model=req.model,
            include_usage=bool(req.stream_options and req.stream_options.include_usage),
            id_factory=ids.new_call_id,
            n=req.n or 1,
            echo=req.prompt_text if req.echo else None,
        )

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        req = self.request
        return gemini_to_text_completion(
            response,
            completion_id=ids.id,
            created=ids.created,
            model=req.model,
            id_factory=ids.new_call_id,
            n=req.n or 1,
            echo=req.prompt_text if req.echo else None,
        )

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return OPENAI_ERRORS.body(err)


class CompletionsEndpoint:
    name = "completions"
    id_prefix = "cmpl-"
    stream_format: StreamFormat = DataStreamFormat()
    error_shape: ErrorShape = OPENAI_ERRORS

    def parse(self, body: bytes) -> ParsedCompletion:
        return ParsedCompletion(parse_completion_request(body))


# ---- images -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedImages:
    """An images/generations or images/edits request: one non-stream call to the image model."""

    request: ImageGenerationRequest
    session_key: str = ""

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return False

    def image_urls(self) -> dict[str, str]:
        return images_image_url_params(self.request)

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return images_request_to_gemini(self.request, images=images)

    def stream_translator(self, ids: Ids) -> StreamTranslator:
        raise errors.GatewayError("the images API does not stream")  # stream is always False

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        return gemini_to_images(response, created=ids.created, response_format=self.request.response_format)

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return OPENAI_ERRORS.body(err)


class ImagesEndpoint:
    name = "images.generations"
    id_prefix = "img-"
    stream_format: StreamFormat = DataStreamFormat()  # never used: images do not stream
    error_shape: ErrorShape = OPENAI_ERRORS

    def parse(self, body: bytes) -> ParsedImages:
        return ParsedImages(parse_image_generation(body))


class ImageEditsEndpoint(ImagesEndpoint):
    name = "images.edits"

    def parse(self, body: bytes) -> ParsedImages:
        return ParsedImages(parse_image_edit(body))


# ---- the registry -----------------------------------------------------------------------------------
class Endpoints:
    """The APIs one gateway serves, by route; built by its owner (the Gateway) with the state they keep."""

    def __init__(self, store: ResponseStore | None = None) -> None:
        self.response_store = store if store is not None else ResponseStore()  # an empty store is falsy
        self._by_route: dict[RouteKind, Endpoint] = {
            RouteKind.CHAT: ChatEndpoint(),
            RouteKind.RESPONSES: ResponsesEndpoint(self.response_store),
            RouteKind.COMPLETIONS: CompletionsEndpoint(),
            RouteKind.IMAGES: ImagesEndpoint(),
            RouteKind.IMAGE_EDITS: ImageEditsEndpoint(),
        }

    def for_route(self, kind: RouteKind) -> Endpoint:
        try:
            return self._by_route[kind]
        except KeyError:
            raise errors.UnknownRoute(
                f"The {kind.value} API is not implemented by this gateway yet.") from None
