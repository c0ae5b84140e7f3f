"""One object per client-facing API (OpenAI's chat, responses, completions…; Anthropic's Messages API)
bundling its translation steps.

``Endpoint.parse(body)`` validates a request into a typed per-request object (a ``ParsedRequest``) that
answers every question the mitmproxy glue asks: the model the client named, whether it streams, the
session key for sticky scheduling, the image URLs to fetch, the Gemini request, the answer (a stream
translator or a whole body) and the API's own error body. Adding an API is adding an ``Endpoint`` and
its parsed request, not another branch in the hooks.

The Responses endpoint owns the one piece of state translation needs, the store of responses
(``responses_store.py``, made by whoever builds the registry: the Gateway): ``parse`` resolves
``previous_response_id``, ``item_reference`` items and the Gemini data of this gateway's short call ids
from it (an unknown id is a 404 before anything goes upstream). What memory lacks, ``parse`` asks for
with ``NeedsStoredState``: the glue reads it from the database off the event loop and calls
``reparse``. A finished response is saved unless the request said ``store: false`` (its calls' data
is remembered either way). ``input_tokens``, ``compact`` and ``embeddings`` are endpoints too; their
parsed requests name the Gemini call they make instead of generateContent (``rpc``).
"""

from __future__ import annotations

import os
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, Protocol

from .. import errors
from ..error_shapes import ANTHROPIC_ERRORS, OPENAI_ERRORS, ErrorShape
from ..openai_api.completions_models import CompletionRequest, parse_completion_request
from ..openai_api.embeddings_models import EmbeddingRequest, parse_embedding_request
from ..openai_api.images_models import ImageGenerationRequest, parse_image_edit, parse_image_generation
from ..openai_api.messages_models import MessagesRequest, parse_messages_request
from ..openai_api.models import ChatCompletionRequest, parse_chat_request
from ..openai_api.responses_models import (
    CompactionTrigger,
    CustomToolCallItem,
    FunctionCallItem,
    InputItem,
    ItemReference,
    parse_responses_request,
)
from ..openai_api.responses_wire import response_echo
from ..openai_api.routes import RouteKind
from ..openai_api.wire import ChatCompletion
from ..sse import DONE, encode_data, encode_event
from .chat_request import chat_request_to_gemini
from .chat_stream import GeminiToChatStream, gemini_to_chat_completion
from .completions import GeminiToCompletionStream, completion_request_to_gemini, gemini_to_text_completion
from .embeddings import embedding_request_to_gemini, gemini_to_embeddings
from .images import gemini_to_images, images_request_to_gemini
from .images import image_url_params as images_image_url_params
from .messages_request import image_url_params as messages_image_url_params
from .messages_request import messages_request_to_gemini
from .messages_stream import GeminiToMessagesStream, gemini_to_message
from .model_rules import family_of
from .parts import InlineImage, image_url_params
from .responses_request import (
    ResponsesCall,
    input_items,
    responses_image_url_params,
    responses_request_to_gemini,
    tool_names,
)
from .responses_store import ResponseStore, StoredResponse, item_as_input, output_as_input
from .responses_stream import GeminiToResponsesStream, gemini_to_response
from .signatures import lacks_signature


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

    @property
    def rpc(self) -> str: ...  # "" (generateContent), or the Gemini call it makes instead (countTokens...)

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


# ---- what every OpenAI route shares -----------------------------------------------------------------
class OpenAIErrors:
    """A parsed request of an OpenAI route: its errors are written as OpenAI writes them."""

    __slots__ = ()

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return OPENAI_ERRORS.body(err)


class OpenAIEndpoint:
    """An OpenAI route: OpenAI's error shape and ``data:`` events (the routes that never stream keep the
    default too: a stream format is part of every endpoint)."""

    stream_format: StreamFormat = DataStreamFormat()
    error_shape: ErrorShape = OPENAI_ERRORS


# ---- chat completions -------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedChat(OpenAIErrors):
    request: ChatCompletionRequest
    session_key: str = ""  # chat has no conversation key: the pool hashes the conversation's opening
    rpc = ""

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



class ChatEndpoint(OpenAIEndpoint):
    name = "chat.completions"
    id_prefix = "chatcmpl-"

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


class NeedsStoredState(Exception):
    """``parse`` met ids the in-memory store does not know: the glue loads them from the database (off the
    event loop) into the store, then calls ``reparse``, which treats what is still missing as missing."""

    def __init__(self, responses: list[str], items: list[str], calls: list[str],
                 reparse: Callable[[], ParsedRequest]) -> None:
        super().__init__(f"stored state needed: {len(responses)} response(s), {len(items)} item(s), "
                         f"{len(calls)} call(s)")
        self.responses, self.items, self.calls = responses, items, calls
        self.reparse = reparse


_ITEM_PREFIX = {"message": "msg_", "function_call": "fc_", "function_call_output": "fco_",
                "custom_tool_call": "ctc_", "custom_tool_call_output": "ctco_", "reasoning": "rs_",
                "web_search_call": "ws_"}


def listed_input(items: Sequence[InputItem], new_id: Callable[[], str]) -> tuple[dict[str, Any], ...]:
    """A request's own input items as ``input_items`` lists them: each with an id, a message's content
    as parts (``input_text`` for user/system/developer, ``output_text`` for assistant) and a status."""
    out = []
    for item in items:
        data = item.model_dump(mode="json", by_alias=True, exclude_none=True)
        kind = data.get("type", "message")
        data["type"] = kind
        if not data.get("id"):
            data["id"] = _ITEM_PREFIX.get(kind, "item_") + new_id()
        if kind == "message":
            if isinstance(data["content"], str):
                part = "output_text" if data["role"] == "assistant" else "input_text"
                data["content"] = [{"type": part, "text": data["content"]}]
            if data["role"] == "assistant":
                data["content"] = [{**p, "annotations": [], "logprobs": []} if p.get("type") == "output_text"
                                   else p for p in data["content"]]
            data.setdefault("status", "completed")
        elif kind in ("function_call", "function_call_output", "custom_tool_call", "custom_tool_call_output"):
            data.setdefault("status", "completed")
        out.append(data)
    return tuple(out)


@dataclass(frozen=True, slots=True)
class ParsedResponses(OpenAIErrors):
    call: ResponsesCall  # the request with its resolved conversation
    store: ResponseStore
    rpc = ""

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

    def stream_translator(self, ids: Ids) -> _SavingStream:
        return _SavingStream(self.translator(ids), lambda t: self._save(ids, t))

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        translator = self.translator(ids)
        answer = gemini_to_response(response, translator)
        self._save(ids, translator)
        return answer


    def translator(self, ids: Ids) -> GeminiToResponsesStream:
        call = self.call
        return GeminiToResponsesStream(
            response_id=ids.id,
            created_at=ids.created,
            echo=response_echo(call.request, call.model),
            id_factory=ids.new_call_id,
            names=tool_names(call),
            include_encrypted=call.request.wants_encrypted_reasoning,
            compact=call.compacts,
            family=ids.family,
        )

    def _save(self, ids: Ids, translator: GeminiToResponsesStream) -> None:
        """Every answered call is remembered (the signature fallback); the response itself unless
        ``store: false``."""
        if not self.call.stores or translator.response is None:
            self.store.remember_calls(translator.call_refs)
            return
        call = self.call
        output = tuple(translator.stored_output())
        items = (*call.items, *output_as_input(output))
        stored = StoredResponse(
            model=call.model, items=items, id=ids.id, created_at=ids.created,
            previous_response_id=call.request.previous_response_id, response=translator.response,
            input=listed_input(call.items[call.history:], ids.new_call_id), output=output,
            calls=dict(translator.call_refs))
        self.store.put(ids.id, stored)


class ResponsesEndpoint(OpenAIEndpoint):
    name = "responses"
    id_prefix = "resp_"
    stream_format: StreamFormat = ResponsesStreamFormat()

    def __init__(self, store: ResponseStore) -> None:
        self.store = store

    def parse(self, body: bytes) -> ParsedResponses:
        return self._parse(body, lookups=2)

    def _parse(self, body: bytes, *, lookups: int) -> ParsedResponses:
        """``lookups``: how often the database may still be asked (twice: referenced items can name calls
        only known once they are loaded, so the second time asks for those calls only); what the store
        lacks after that does not exist."""
        req = parse_responses_request(body)
        store = self.store
        own = input_items(req)
        prev = req.previous_response_id
        stored = store.get(prev) if prev is not None else None
        references = [item.id for item in own if isinstance(item, ItemReference)]
        history = stored.items if stored is not None else ()
        resolved = [store.item(i) for i in references]
        known = [item_as_input(item) for item in resolved if item is not None]
        call_ids = [item.call_id for item in (*history, *own, *known)
                    if isinstance(item, FunctionCallItem | CustomToolCallItem)
                    and lacks_signature(item.call_id)]
        if lookups:
            first = lookups == 2  # the second time only calls: what referenced items newly named
            missing = ([prev] if first and prev is not None and stored is None else [],
                       [i for i, item in zip(references, resolved, strict=True) if first and item is None],
                       [c for c in call_ids if store.call(c) is None])
            if any(missing):
                raise NeedsStoredState(*missing, reparse=lambda: self._parse(body, lookups=lookups - 1))
        if prev is not None and stored is None:
            raise errors.NotFound(
                f"Previous response with id '{prev}' not found. It was never stored (the request said "
                "'store': false), was deleted, or is older than ag_response_store_days; send the whole "
                "conversation in 'input' instead.",
                param="previous_response_id",
                code="previous_response_not_found",
            )
        if references:
            own = tuple(self._referenced(item, i) for i, item in enumerate(own))
        if req.model is None and stored is None:  # parse_responses_request demands one without a chain
            raise errors.InvalidRequest("Missing required parameter: 'model'.", param="model")
        model = req.model or (stored.model if stored is not None else "")
        refs = {c: ref for c in call_ids if (ref := store.call(c)) is not None}
        call = ResponsesCall(req, model, (*history, *own), history=len(history), call_refs=refs)
        return ParsedResponses(call, store)

    def _referenced(self, item: InputItem, index: int) -> InputItem:
        if not isinstance(item, ItemReference):
            return item
        found = self.store.item(item.id)
        if found is None:
            raise errors.NotFound(
                f"Item with id '{item.id}' not found: 'input[{index}]' references an item of a stored "
                "response, and none has it (never stored, deleted, or expired). Send the item itself.",
                param=f"input[{index}].id", code="item_not_found")
        return item_as_input(found)


# ---- requests derived from another route's: input_tokens, compact, count_tokens ---------------------------
def _wrapped(parse: Callable[[], Any], wrap: Callable[[Any], ParsedRequest]) -> ParsedRequest:
    """``wrap(parse())``, also after the glue loaded stored state (``NeedsStoredState.reparse``)."""
    try:
        return wrap(parse())
    except NeedsStoredState as need:
        reparse = need.reparse  # ``need`` itself is unbound once the except clause ends
        raise NeedsStoredState(need.responses, need.items, need.calls,
                               reparse=lambda: _wrapped(reparse, wrap)) from None


def _never_streams(ids: Ids) -> Any:
    raise errors.InvalidRequest("This route does not stream.", param="stream")


def _for_counting(request: dict[str, Any]) -> dict[str, Any]:
    """A generate request as countTokens takes it: the settings are not counted, and it refuses thinking's."""
    request.pop("generationConfig", None)
    request.pop("toolConfig", None)
    return request


def _counted(response: dict[str, Any]) -> int:
    total = response.get("totalTokens")
    if not isinstance(total, int):
        raise errors.UpstreamProtocolError("Google's countTokens answer has no totalTokens.")
    return total


@dataclass(frozen=True, slots=True)
class _Derived[Inner: ParsedRequest]:
    """A non-stream request made from another route's parsed request (``inner``): its model, session
    key, images, Gemini request and error body are ``inner``'s; it differs in its answer (``complete``),
    and maybe in the Gemini call it makes (``rpc``)."""

    inner: Inner
    rpc = ""
    stream = False

    @property
    def model(self) -> str:
        return self.inner.model

    @property
    def session_key(self) -> str:
        return self.inner.session_key

    def image_urls(self) -> dict[str, str]:
        return self.inner.image_urls()

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return self.inner.to_gemini(model, images)

    stream_translator = staticmethod(_never_streams)

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return self.inner.error_body(err)


@dataclass(frozen=True, slots=True)
class _Counted[Inner: ParsedRequest](_Derived[Inner]):
    """``inner``'s input counted by Gemini's countTokens instead of answered."""

    rpc = "countTokens"

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return _for_counting(self.inner.to_gemini(model, images))


@dataclass(frozen=True, slots=True)
class ParsedInputTokens(_Counted[ParsedResponses]):
    """``POST /v1/responses/input_tokens``: the Responses request's input, counted by Gemini's countTokens."""

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        return {"object": "response.input_tokens", "input_tokens": _counted(response)}



class InputTokensEndpoint(OpenAIEndpoint):
    name = "responses.input_tokens"
    id_prefix = "resp_"

    def __init__(self, responses: ResponsesEndpoint) -> None:
        self.responses = responses

    def parse(self, body: bytes) -> ParsedRequest:
        return _wrapped(lambda: self.responses.parse(body), ParsedInputTokens)


@dataclass(frozen=True, slots=True)
class ParsedCompact(_Derived[ParsedResponses]):
    """``POST /v1/responses/compact``: the conversation, compacted into one ``compaction`` item. The
    answer lists the input's user messages, then that item (OpenAI's ``response.compaction`` object).
    ``inner``: the Responses request with a compaction_trigger appended."""

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        answer = gemini_to_response(response, self.inner.translator(ids))
        call = self.inner.call
        users = [item for item in listed_input(call.items[call.history:-1], ids.new_call_id)
                 if item.get("type") == "message" and item.get("role") == "user"]
        return {"id": answer["id"], "object": "response.compaction", "created_at": answer["created_at"],
                "output": [*users, *answer["output"]], "usage": answer["usage"]}



class CompactEndpoint(OpenAIEndpoint):
    name = "responses.compact"
    id_prefix = "resp_"

    def __init__(self, responses: ResponsesEndpoint) -> None:
        self.responses = responses

    def parse(self, body: bytes) -> ParsedRequest:
        return _wrapped(lambda: self.responses.parse(body), self._compacting)

    @staticmethod
    def _compacting(parsed: ParsedResponses) -> ParsedCompact:
        call = parsed.call
        compacting = replace(call, items=(*call.items, CompactionTrigger(type="compaction_trigger")),
                             request=call.request.model_copy(update={"store": False, "stream": False}))
        return ParsedCompact(replace(parsed, call=compacting))


# ---- embeddings -------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedEmbeddings(OpenAIErrors):
    request: EmbeddingRequest
    rpc = "batchEmbedContents"
    stream = False
    session_key = ""

    @property
    def model(self) -> str:
        return self.request.model

    def image_urls(self) -> dict[str, str]:
        return {}

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return embedding_request_to_gemini(self.request, model=model)

    stream_translator = staticmethod(_never_streams)

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        return gemini_to_embeddings(response, req=self.request)



class EmbeddingsEndpoint(OpenAIEndpoint):
    name = "embeddings"
    id_prefix = "emb-"

    def parse(self, body: bytes) -> ParsedEmbeddings:
        return ParsedEmbeddings(parse_embedding_request(body))


# ---- legacy completions -----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedCompletion(OpenAIErrors):
    request: CompletionRequest
    session_key: str = ""
    rpc = ""

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



class CompletionsEndpoint(OpenAIEndpoint):
    name = "completions"
    id_prefix = "cmpl-"

    def parse(self, body: bytes) -> ParsedCompletion:
        return ParsedCompletion(parse_completion_request(body))


# ---- images -----------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ParsedImages(OpenAIErrors):
    """An images/generations or images/edits request: one non-stream call to the image model."""

    request: ImageGenerationRequest
    session_key: str = ""
    rpc = ""  # generateContent, with the image model's requestType

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



class ImagesEndpoint(OpenAIEndpoint):
    name = "images.generations"
    id_prefix = "img-"

    def parse(self, body: bytes) -> ParsedImages:
        return ParsedImages(parse_image_generation(body))


class ImageEditsEndpoint(ImagesEndpoint):
    name = "images.edits"

    def parse(self, body: bytes) -> ParsedImages:
        return ParsedImages(parse_image_edit(body))


# ---- Anthropic's Messages API ------------------------------------------------------------------------
class AnthropicErrors:
    """A parsed request of an Anthropic route: its errors are written as Anthropic writes them."""

    __slots__ = ()

    def error_body(self, err: errors.GatewayError) -> dict[str, Any]:
        return ANTHROPIC_ERRORS.body(err)


class AnthropicEndpoint:
    """An Anthropic route: Anthropic's error shape (the stream format as for ``OpenAIEndpoint``)."""

    stream_format: StreamFormat = DataStreamFormat()
    error_shape: ErrorShape = ANTHROPIC_ERRORS


@dataclass(frozen=True, slots=True)
class ParsedMessages(AnthropicErrors):
    """``POST /v1/messages``: Anthropic's shapes in and out, the same pool, retries and model rules."""

    request: MessagesRequest
    rpc = ""

    @property
    def model(self) -> str:
        return self.request.model

    @property
    def stream(self) -> bool:
        return bool(self.request.stream)

    @property
    def session_key(self) -> str:
        """``metadata.user_id`` (Claude Code sends its user and session there): one session, one account."""
        metadata = self.request.metadata
        return (metadata.user_id or "") if metadata is not None else ""

    def image_urls(self) -> dict[str, str]:
        return messages_image_url_params(self.request)

    def to_gemini(self, model: str, images: Mapping[str, InlineImage]) -> dict[str, Any]:
        return messages_request_to_gemini(self.request, model=model, images=images)

    def stream_translator(self, ids: Ids) -> GeminiToMessagesStream:
        return GeminiToMessagesStream(message_id=ids.id, model=self.request.model, id_factory=ids.new_call_id,
                                      family=ids.family)

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        return gemini_to_message(response, self.stream_translator(ids))


class MessagesEndpoint(AnthropicEndpoint):
    name = "messages"
    id_prefix = "msg_"
    stream_format: StreamFormat = ResponsesStreamFormat()  # the same framing: ``event: <type>`` + data

    def parse(self, body: bytes) -> ParsedMessages:
        return ParsedMessages(parse_messages_request(body))


@dataclass(frozen=True, slots=True)
class ParsedCountTokens(_Counted[ParsedMessages]):
    """``POST /v1/messages/count_tokens``: the Messages request's input, counted by Gemini's countTokens."""

    def complete(self, response: dict[str, Any], ids: Ids) -> Mapping[str, Any]:
        return {"input_tokens": _counted(response)}


class CountTokensEndpoint(AnthropicEndpoint):
    name = "messages.count_tokens"
    id_prefix = "msg_"

    def parse(self, body: bytes) -> ParsedCountTokens:
        request = parse_messages_request(body, counting=True)
        return ParsedCountTokens(ParsedMessages(request.model_copy(update={"stream": False})))


# ---- the registry -----------------------------------------------------------------------------------
class Endpoints:
    """The APIs one gateway serves, by route; built by its owner (the Gateway) with the state they keep."""

    def __init__(self, store: ResponseStore | None = None) -> None:
        self.response_store = store if store is not None else ResponseStore()
        responses = ResponsesEndpoint(self.response_store)
        self._by_route: dict[RouteKind, Endpoint] = {
            RouteKind.CHAT: ChatEndpoint(),
            RouteKind.RESPONSES: responses,
            RouteKind.COMPLETIONS: CompletionsEndpoint(),
            RouteKind.INPUT_TOKENS: InputTokensEndpoint(responses),
            RouteKind.COMPACT: CompactEndpoint(responses),
            RouteKind.EMBEDDINGS: EmbeddingsEndpoint(),
            RouteKind.IMAGES: ImagesEndpoint(),
            RouteKind.IMAGE_EDITS: ImageEditsEndpoint(),
            RouteKind.MESSAGES: MessagesEndpoint(),
            RouteKind.COUNT_TOKENS: CountTokensEndpoint(),
        }

    def for_route(self, kind: RouteKind) -> Endpoint:
        try:
            return self._by_route[kind]
        except KeyError:
            raise errors.UnknownRoute(
                f"The {kind.value} API is not implemented by this gateway yet.") from None
