"""Gemini ``GenerateContentResponse`` events → OpenAI ``chat.completion.chunk`` dicts; a non-stream reply is
the fold of the same translator, so ids, finish reasons and usage agree in both modes.

Rules of the stream (one ``GeminiToChatStream`` per response):
1. One ``id``, ``created`` and ``model`` for every chunk (passed in; nothing here reads a clock).
   Each chunk carries one choice; a Gemini candidate ``index`` is a choice index.
2. A choice opens with ``delta: {"role": "assistant", "content": ""}`` the first time its candidate appears.
3. Parts, in order: ``text`` → ``content``; ``text`` with ``thought: true`` → ``reasoning_content``;
   ``functionCall`` → one ``tool_calls`` delta with the complete arguments (Gemini sends them whole), its id
   carrying the part's ``thoughtSignature`` (``signatures.py``); ``inlineData`` → a markdown data-URL image
   in ``content`` and the same image in ``images`` (OpenRouter's structured list), whose entry carries the
   part's ``thoughtSignature`` as ``extra_content.google.thought_signature`` (Google's own OpenAI-compatible
   field, as on tool calls): a multi-turn image edit sends it back (``chat_request.py``). A signature on a
   part that is not a call is also kept for the candidate's next call (Gemini validates signatures on
   calls; one that no call claims is dropped). The id also names the
   model family that minted the signature (``family``) and, for Claude, carries the thought text it
   signs, so the thinking block can be replayed whole (``signatures.py``, ``model_rules.py``).
4. ``finishReason`` → one final chunk for that choice, ``delta: {}`` (``finish.py`` maps the value).
5. ``promptFeedback.blockReason`` with no candidates → each of the ``n`` choices gets a ``refusal`` delta
   naming the reason and finishes with ``content_filter``. The same holds for non-stream: a 200 whose
   choices carry ``message.refusal``, as OpenAI reports its own refusals.
6. ``finish()``: every choice that appeared must have finished, and at least one must have appeared;
   otherwise the response was truncated. Then, with ``include_usage``, a ``choices: []`` chunk carries
   the last ``usageMetadata`` seen; all other chunks then carry ``"usage": null``, as OpenAI's do.
7. An in-band Google error (``{"error": {...}}``), a truncation or malformed data ends the stream with one
   chunk ``{"error": {message, type, param, code}}`` (type ``upstream_error``: Google's fault, so clients may
   retry); ``self.error`` keeps the exception, later ``feed``/``finish`` calls return nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, cast

import orjson

from ..errors import GatewayError, UpstreamProtocolError
from ..openai_api.wire import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessageOut,
    ChatUsage,
    ChoiceDelta,
    FinishReason,
    FunctionCallOut,
    ImageOut,
    ToolCallOut,
    chat_completion,
    chunk,
    chunk_choice,
    chunk_header,
    tool_call_delta,
)
from .finish import gemini_finish_to_openai
from .gemini_events import (
    GeminiEventReader,
    candidate_index,
    candidate_parts,
    function_call,
    part_signature,
    part_text,
)
from .signatures import encode_tool_call_id
from .usage import gemini_usage_to_openai

IdFactory = Callable[[], str]  # returns a fresh alphanumeric token for a tool call id
# What feed()/finish() return: chunks, and at most one OpenAI error body, always the stream's last item.
StreamItem = ChatCompletionChunk | dict[str, Any]


@dataclass(slots=True)
class _Choice:
    tool_calls: int = 0
    finished: bool = False
    pending_signature: str | None = None
    thoughts: list[str] = field(default_factory=list)  # Claude's thought text since the last call


class GeminiToChatStream(GeminiEventReader[StreamItem]):
    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        id_factory: IdFactory,
        n: int = 1,
        family: str | None = None,
    ) -> None:
        """``family``: the signature family of the upstream model (``model_rules.family_of``)."""
        self._header = chunk_header(completion_id, created, model)
        self._family = family
        self._include_usage = include_usage
        self._new_token = id_factory
        self._n = n
        self._choices: dict[int, _Choice] = {}
        self._usage: Mapping[str, Any] | None = None
        self._closed = False
        self.error: GatewayError | None = None

    def feed(self, event: Mapping[str, Any]) -> list[StreamItem]:
        out: list[StreamItem] = []
        if self._closed:
            return out
        self._read(event, out)
        return out

    def finish(self) -> list[StreamItem]:
        out: list[StreamItem] = []
        if self._closed:
            return out
        unfinished = sorted(i for i, c in self._choices.items() if not c.finished)
        if not self._choices or unfinished:
            what = "any candidate" if not self._choices else f"a finish reason for choice {unfinished[0]}"
            self._fail(
                UpstreamProtocolError(
                    f"Gemini's response ended without {what}: the reply is truncated.",
                    code="upstream_truncated",
                ),
                out,
            )
            return out
        self._closed = True
        if self._include_usage:
            out.append(
                chunk(self._header, None, include_usage=True, usage=gemini_usage_to_openai(self._usage))
            )
        return out

    # --- events --------------------------------------------------------------------------------------

    def _candidate(self, candidate: Mapping[str, Any], out: list[StreamItem]) -> None:
        index = candidate_index(candidate)
        choice = self._choice(index, out)
        for part in candidate_parts(candidate):
            self._part(index, choice, part, out)
        reason = candidate.get("finishReason")
        if reason is not None and not choice.finished:
            choice.finished = True
            finish = gemini_finish_to_openai(str(reason), has_tool_calls=choice.tool_calls > 0)
            out.append(self._chunk(index, {}, finish))

    def _part(self, index: int, choice: _Choice, part: Mapping[str, Any], out: list[StreamItem]) -> None:
        signature = part_signature(part)
        if "functionCall" in part:
            out.append(
                self._tool_call(index, choice, part["functionCall"], signature or choice.pending_signature)
            )
            choice.pending_signature = None
            return
        if signature:
            choice.pending_signature = signature
        if self._family == "c" and part.get("thought") is True and isinstance(part.get("text"), str):
            choice.thoughts.append(part["text"])
        delta = _part_delta(part, signature)
        if delta:
            out.append(self._chunk(index, delta))

    def _tool_call(self, index: int, choice: _Choice, value: Any, signature: str | None) -> StreamItem:
        name, args, gemini_id = function_call(value)
        thought = "".join(choice.thoughts) if choice.thoughts else None
        choice.thoughts.clear()
        call_id = encode_tool_call_id(
            self._new_token(), gemini_id=gemini_id, signature=signature, family=self._family, thought=thought
        )
        arguments = orjson.dumps(args).decode()
        delta: ChoiceDelta = {"tool_calls": [tool_call_delta(choice.tool_calls, call_id, name, arguments,
                                                             signature)]}
        choice.tool_calls += 1
        return self._chunk(index, delta)

    def _blocked(self, refusal: str, out: list[StreamItem]) -> None:
        for index in range(self._n):
            choice = self._choice(index, out)
            if not choice.finished:
                choice.finished = True
                out.append(self._chunk(index, {"refusal": refusal}))
                out.append(self._chunk(index, {}, "content_filter"))

    # --- chunk building ------------------------------------------------------------------------------

    def _choice(self, index: int, out: list[StreamItem]) -> _Choice:
        choice = self._choices.get(index)
        if choice is None:
            choice = self._choices[index] = _Choice()
            out.append(self._chunk(index, {"role": "assistant", "content": ""}))
        return choice

    def abort(self, error: GatewayError) -> list[StreamItem]:
        """The gateway itself failed mid-stream: one OpenAI error body ends the stream."""
        out: list[StreamItem] = []
        self._fail(error, out)
        return out

    def _chunk(self, index: int, delta: ChoiceDelta, finish: FinishReason | None = None) -> StreamItem:
        return chunk(self._header, chunk_choice(index, delta, finish), include_usage=self._include_usage)

    def _fail(self, error: GatewayError, out: list[StreamItem]) -> None:
        self.error = error
        self._closed = True
        out.append(error.to_openai())


def _part_delta(part: Mapping[str, Any], signature: str | None) -> ChoiceDelta | None:
    """The delta a non-call part adds; None for parts with nothing to show (a bare signature, new kinds).
    An image keeps its signature in its ``images`` entry: a multi-turn edit must send it back with it."""
    text = part_text(part)
    if not text:
        return None
    if "text" in part and part.get("thought") is True:
        return {"reasoning_content": text}
    if "inlineData" in part:  # part_text checked it; the markdown is "![image](<data URL>)"
        image: ImageOut = {"type": "image_url", "image_url": {"url": text[9:-1]}}
        if signature:
            image["extra_content"] = {"google": {"thought_signature": signature}}
        return {"content": text, "images": [image]}
    return {"content": text}


# --- non-stream: the fold of the stream --------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
    images: list[ImageOut] = field(default_factory=list)
    tool_calls: list[ToolCallOut] = field(default_factory=list)
    finish: FinishReason = "stop"


def gemini_to_chat_completion(
    response: Mapping[str, Any],
    *,
    completion_id: str,
    created: int,
    model: str,
    id_factory: IdFactory,
    n: int = 1,
    family: str | None = None,
) -> ChatCompletion:
    """One unary ``GenerateContentResponse`` → ``chat.completion``; raises the ``GatewayError`` a stream
    would have ended with (an in-band error, a truncated or malformed reply)."""
    return gemini_events_to_chat_completion(
        [response], completion_id=completion_id, created=created, model=model, id_factory=id_factory, n=n,
        family=family,
    )


def gemini_events_to_chat_completion(
    events: Iterable[Mapping[str, Any]],
    *,
    completion_id: str,
    created: int,
    model: str,
    id_factory: IdFactory,
    n: int = 1,
    family: str | None = None,
) -> ChatCompletion:
    """The same for a streamed upstream reply collected into one response."""
    stream = GeminiToChatStream(
        completion_id=completion_id,
        created=created,
        model=model,
        include_usage=True,
        id_factory=id_factory,
        n=n,
        family=family,
    )
    items = [item for event in events for item in stream.feed(event)]
    items += stream.finish()
    if stream.error is not None:
        raise stream.error
    chunks = cast("list[ChatCompletionChunk]", items)  # no error body: stream.error would be set
    return fold_chat_chunks(chunks, completion_id=completion_id, created=created, model=model)


def fold_chat_chunks(
    chunks: Iterable[ChatCompletionChunk], *, completion_id: str, created: int, model: str
) -> ChatCompletion:
    messages: dict[int, _Message] = {}
    usage: ChatUsage | None = None
    for item in chunks:
        if not item["choices"]:
            usage = item.get("usage")
            continue
        choice = item["choices"][0]
        message = messages.setdefault(choice["index"], _Message())
        _fold_delta(message, choice["delta"])
        if choice["finish_reason"] is not None:
            message.finish = choice["finish_reason"]
    choices = [_choice_out(index, messages[index]) for index in sorted(messages)]
    return chat_completion(completion_id, created, model, choices, usage or gemini_usage_to_openai(None))


def _fold_delta(message: _Message, delta: ChoiceDelta) -> None:
    if delta.get("content"):
        message.content.append(delta["content"])
    if "reasoning_content" in delta:
        message.reasoning.append(delta["reasoning_content"])
    if "refusal" in delta:
        message.refusal.append(delta["refusal"])
    if "images" in delta:
        message.images += delta["images"]
    for call in delta.get("tool_calls", ()):
        function: FunctionCallOut = {
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"],
        }
        out: ToolCallOut = {"id": call["id"], "type": "function", "function": function}
        if "extra_content" in call:
            out["extra_content"] = call["extra_content"]
        message.tool_calls.append(out)


def _choice_out(index: int, message: _Message) -> ChatChoice:
    text = "".join(message.content)
    out: ChatMessageOut = {
        "role": "assistant",
        # OpenAI's shape: null content when the message is only tool calls or a refusal.
        "content": None if not text and (message.tool_calls or message.refusal) else text,
        "refusal": "".join(message.refusal) or None,
    }
    if message.reasoning:
        out["reasoning_content"] = "".join(message.reasoning)
    if message.tool_calls:
        out["tool_calls"] = message.tool_calls
    if message.images:
        out["images"] = message.images
    return {"index": index, "message": out, "logprobs": None, "finish_reason": message.finish}
