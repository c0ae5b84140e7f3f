"""Gemini ``GenerateContentResponse`` events → OpenAI ``chat.completion.chunk`` dicts; a non-stream reply is
the fold of the same translator, so ids, finish reasons and usage agree in both modes.

Rules of the stream (one ``GeminiToChatStream`` per response):
1. One ``id``, ``created`` and ``model`` for every chunk (passed in; nothing here reads a clock).
   Each chunk carries one choice; a Gemini candidate ``index`` is a choice index.
2. A choice opens with ``delta: {"role": "assistant", "content": ""}`` the first time its candidate appears.
3. Parts, in order: ``text`` → ``content``; ``text`` with ``thought: true`` → ``reasoning_content``;
   ``functionCall`` → one ``tool_calls`` delta with the complete arguments (Gemini sends them whole), its id
   carrying the part's ``thoughtSignature`` (``signatures.py``); ``inlineData`` → a markdown data-URL image
   in ``content``. A signature on a part that is not a call is kept for the candidate's next call (Gemini
   validates signatures on calls only; one that no call claims is dropped).
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

from ..errors import GatewayError, UpstreamError, UpstreamProtocolError
from ..openai_api.wire import (
    ChatChoice,
    ChatCompletion,
    ChatCompletionChunk,
    ChatMessageOut,
    ChatUsage,
    ChoiceDelta,
    FinishReason,
    FunctionCallOut,
    ToolCallOut,
    chat_completion,
    chunk,
    chunk_choice,
    chunk_header,
    tool_call_delta,
)
from .finish import gemini_finish_to_openai
from .signatures import encode_tool_call_id
from .usage import gemini_usage_counts, gemini_usage_to_openai

IdFactory = Callable[[], str]  # returns a fresh alphanumeric token for a tool call id
# What feed()/finish() return: chunks, and at most one OpenAI error body, always the stream's last item.
StreamItem = ChatCompletionChunk | dict[str, Any]


@dataclass(slots=True)
class _Choice:
    tool_calls: int = 0
    finished: bool = False
    pending_signature: str | None = None


class GeminiToChatStream:
    def __init__(
        self,
        *,
        completion_id: str,
        created: int,
        model: str,
        include_usage: bool,
        id_factory: IdFactory,
        n: int = 1,
    ) -> None:
        self._header = chunk_header(completion_id, created, model)
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
        try:
            self._event(event, out)
        except ValueError as exc:
            self._fail(UpstreamProtocolError(f"Gemini sent a malformed stream event: {exc}."), out)
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

    def _event(self, event: Any, out: list[StreamItem]) -> None:
        if not isinstance(event, Mapping):
            raise ValueError("an event is not a JSON object")
        if "error" in event:
            self._fail(google_stream_error(event["error"]), out)
            return
        if "usageMetadata" in event:
            gemini_usage_counts(_obj(event["usageMetadata"], "usageMetadata"))  # validate now, not at the end
            self._usage = event["usageMetadata"]
        candidates = _list(event.get("candidates"), "candidates")
        feedback = _obj(event.get("promptFeedback"), "promptFeedback")
        if not candidates and (reason := feedback.get("blockReason")):
            self._blocked(str(reason), feedback.get("blockReasonMessage"), out)
        for candidate in candidates:
            self._candidate(_obj(candidate, "candidate"), out)

    def _candidate(self, candidate: Mapping[str, Any], out: list[StreamItem]) -> None:
        index = candidate.get("index", 0)
        if isinstance(index, bool) or not isinstance(index, int) or index < 0:
            raise ValueError(f"candidate index {index!r} is not a non-negative integer")
        choice = self._choice(index, out)
        content = _obj(candidate.get("content"), "candidate.content")
        for part in _list(content.get("parts"), "content.parts"):
            self._part(index, choice, _obj(part, "part"), out)
        reason = candidate.get("finishReason")
        if reason is not None and not choice.finished:
            choice.finished = True
            finish = gemini_finish_to_openai(str(reason), has_tool_calls=choice.tool_calls > 0)
            out.append(self._chunk(index, {}, finish))

    def _part(self, index: int, choice: _Choice, part: Mapping[str, Any], out: list[StreamItem]) -> None:
        signature = part.get("thoughtSignature") or part.get("thought_signature")
        if signature is not None and not isinstance(signature, str):
            raise ValueError("thoughtSignature is not a string")
        if "functionCall" in part:
            out.append(
                self._tool_call(index, choice, part["functionCall"], signature or choice.pending_signature)
            )
            choice.pending_signature = None
            return
        if signature:
            choice.pending_signature = signature
        delta = _part_delta(part)
        if delta:
            out.append(self._chunk(index, delta))

    def _tool_call(self, index: int, choice: _Choice, value: Any, signature: str | None) -> StreamItem:
        call = _obj(value, "functionCall")
        name, args, gemini_id = call.get("name"), call.get("args") or {}, call.get("id")
        if not isinstance(name, str) or not name:
            raise ValueError("functionCall has no name")
        if not isinstance(args, Mapping):
            raise ValueError(f"functionCall {name!r} has args that are not an object")
        if gemini_id is not None and not isinstance(gemini_id, str):
            raise ValueError(f"functionCall {name!r} has an id that is not a string")
        call_id = encode_tool_call_id(self._new_token(), gemini_id=gemini_id, signature=signature)
        arguments = orjson.dumps(args).decode()
        delta: ChoiceDelta = {"tool_calls": [tool_call_delta(choice.tool_calls, call_id, name, arguments)]}
        choice.tool_calls += 1
        return self._chunk(index, delta)

    def _blocked(self, reason: str, detail: Any, out: list[StreamItem]) -> None:
        refusal = f"The prompt was blocked by Google (blockReason: {reason})."
        if isinstance(detail, str) and detail:
            refusal += f" {detail}"
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

    def _chunk(self, index: int, delta: ChoiceDelta, finish: FinishReason | None = None) -> StreamItem:
        return chunk(self._header, chunk_choice(index, delta, finish), include_usage=self._include_usage)

    def _fail(self, error: GatewayError, out: list[StreamItem]) -> None:
        self.error = error
        self._closed = True
        out.append(error.to_openai())


def _part_delta(part: Mapping[str, Any]) -> ChoiceDelta | None:
    """The delta a non-call part adds; None for parts with nothing to show (a bare signature, new kinds)."""
    if "text" in part:
        text = part["text"]
        if not isinstance(text, str):
            raise ValueError("a part's text is not a string")
        if not text:
            return None
        return {"reasoning_content": text} if part.get("thought") is True else {"content": text}
    if "inlineData" in part:
        blob = _obj(part["inlineData"], "inlineData")
        mime, data = blob.get("mimeType"), blob.get("data")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise ValueError("inlineData lacks mimeType or data")
        return {"content": f"![image](data:{mime};base64,{data})"}
    if "executableCode" in part:
        code = _obj(part["executableCode"], "executableCode")
        return {"content": f"\n```{str(code.get('language', '')).lower()}\n{code.get('code', '')}\n```\n"}
    if "codeExecutionResult" in part:
        result = _obj(part["codeExecutionResult"], "codeExecutionResult")
        return {"content": f"\n```\n{result.get('output', '')}\n```\n"}
    return None


def google_stream_error(body: Any) -> UpstreamError:
    """A ``google.rpc.Status`` that arrived inside a 200 stream → the error ending the OpenAI stream."""
    body = body if isinstance(body, Mapping) else {}
    status, code, message = body.get("status"), body.get("code"), body.get("message")
    head = " ".join(str(x) for x in (code, status) if x)
    text = (
        f"Google returned an error mid-stream ({head}): {message}"
        if head
        else f"Google returned an error mid-stream: {message}"
    )
    return UpstreamError(text, code=status.lower() if isinstance(status, str) and status else None)


def _obj(value: Any, what: str) -> Mapping[str, Any]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is not an array")
    return value


# --- non-stream: the fold of the stream --------------------------------------------------------------


@dataclass(slots=True)
class _Message:
    content: list[str] = field(default_factory=list)
    reasoning: list[str] = field(default_factory=list)
    refusal: list[str] = field(default_factory=list)
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
) -> ChatCompletion:
    """One unary ``GenerateContentResponse`` → ``chat.completion``; raises the ``GatewayError`` a stream
    would have ended with (an in-band error, a truncated or malformed reply)."""
    return gemini_events_to_chat_completion(
        [response], completion_id=completion_id, created=created, model=model, id_factory=id_factory, n=n
    )


def gemini_events_to_chat_completion(
    events: Iterable[Mapping[str, Any]],
    *,
    completion_id: str,
    created: int,
    model: str,
    id_factory: IdFactory,
    n: int = 1,
) -> ChatCompletion:
    """The same for a streamed upstream reply collected into one response."""
    stream = GeminiToChatStream(
        completion_id=completion_id,
        created=created,
        model=model,
        include_usage=True,
        id_factory=id_factory,
        n=n,
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
    for call in delta.get("tool_calls", ()):
        function: FunctionCallOut = {
            "name": call["function"]["name"],
            "arguments": call["function"]["arguments"],
        }
        message.tool_calls.append({"id": call["id"], "type": "function", "function": function})


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
    return {"index": index, "message": out, "logprobs": None, "finish_reason": message.finish}
