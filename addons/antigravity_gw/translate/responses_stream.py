"""Gemini ``GenerateContentResponse`` events → OpenAI Responses API stream events; a non-stream reply is
the fold of the same translator, so items, ids, statuses and usage agree in both modes.

Everything that decides which event may follow which lives in this module, as data (h11 ``_state.py``
style). The rules:

1. The response: ``NEW --START--> OPEN --COMPLETE|INCOMPLETE|FAIL--> CLOSED`` (``RESPONSE_TRANSITIONS``).
   START emits ``response.created`` + ``response.in_progress`` (status ``in_progress``, no output) before
   anything else; the terminal step emits exactly one ``response.completed`` / ``response.incomplete`` /
   ``response.failed`` carrying the whole response object. Every event carries the same response id.
   Once CLOSED, ``feed`` / ``finish`` / ``abort`` return nothing.
2. Each output item: ``NEW --ADD--> ADDED --OPEN_PART--> STREAMING --DELTA*--> STREAMING
   --CLOSE_PART--> ADDED --DONE--> DONE`` (``ITEM_TRANSITIONS``); which events a step emits depends on
   the item's kind (``ITEM_EVENTS``). One item is open at a time: opening the next one finishes the
   open one, so ``output_item.done`` events come in ``output_index`` order (Codex records items in that
   order and sends them back in it).
3. ``sequence_number`` is assigned in ``_emit`` only, from 0. A step that the tables do not allow is a
   gateway bug: ``StreamStateError`` is raised (the stream adapter then ends the stream with
   ``abort``).
4. Gemini parts: thought text → a ``reasoning`` item (one per run of thoughts, its text a summary part);
   text (and ``inlineData`` as a markdown data-URL image, code blocks) → a ``message`` item with one
   ``output_text`` part; ``functionCall`` → a ``function_call`` item, or a ``custom_tool_call`` item
   when it names a custom tool (``responses_tools.ToolNames``), with the arguments in one delta (Gemini
   sends them whole). Only candidate 0 is read (the gateway never asks for more).
5. Thought signatures: a ``call_id`` stays within OpenAI's 64 characters (``short_tool_call_id``: Gemini's
   call id only when it fits), and ``call_refs`` keeps every call's Gemini id, signature (its own, else
   the last unclaimed one) and the family of the model that minted it, for the store, the fallback. A
   signature on a thought part, or on the part that ends a run of thoughts, goes into that reasoning
   item's ``encrypted_content``, shown to the client only when ``include`` asks for
   ``reasoning.encrypted_content`` (``stored_output`` always has it); with that ``include``, a signed call
   that no reasoning item precedes gets one (empty summary) carrying its signature, so the client's next
   turn brings it back without any server state. ``encrypted_content`` names the signature's family too,
   and for Claude carries the thought text, as Claude wants its thinking block back whole.
6. The end (``finish()``, at the end of the upstream stream): ``finishReason`` STOP and the like →
   ``completed``; MAX_TOKENS → ``incomplete`` (``max_output_tokens``); a filter reason, or a prompt
   blocked by ``promptFeedback`` (a ``refusal`` message item) → ``incomplete`` (``content_filter``);
   MALFORMED_FUNCTION_CALL → ``failed`` (clients such as Codex retry a failed response). The open item
   is finished first, ``incomplete`` when the response is.
7. Failures end the response with ``response.failed`` (``error.code`` ``rate_limit_exceeded`` for a
   quota error, else ``server_error``; the message says what happened): an in-band Google error, a
   malformed event, a stream that ends without a finish reason, or the gateway's own failure
   (``abort``). Open items get no done events; the failed response lists them as ``incomplete``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Literal

import orjson

from ..errors import GatewayError, UpstreamError, UpstreamProtocolError
from ..openai_api.responses_wire import response_object
from .finish import FILTERED
from .gemini_events import (
    GeminiEventReader,
    candidate_index,
    candidate_parts,
    function_call,
    part_signature,
    part_text,
)
from .responses_tools import ToolNames
from .signatures import ToolCallRef, encode_compaction, encode_reasoning_signature, short_tool_call_id
from .usage import gemini_usage_to_responses

Event = dict[str, Any]
IdFactory = Callable[[], str]
Kind = Literal["reasoning", "text", "refusal", "function_call", "custom_tool_call", "compaction"]


class StreamStateError(GatewayError):
    """The translator tried a step its tables forbid: a bug in the gateway, never the client's fault."""


# --- the tables --------------------------------------------------------------------------------------


class Step(StrEnum):
    ADD = "add"
    OPEN_PART = "open_part"
    DELTA = "delta"
    CLOSE_PART = "close_part"
    DONE = "done"


class ItemState(StrEnum):
    NEW = "new"
    ADDED = "added"
    STREAMING = "streaming"
    DONE = "done"


ITEM_TRANSITIONS: dict[ItemState, dict[Step, ItemState]] = {
    ItemState.NEW: {Step.ADD: ItemState.ADDED},
    ItemState.ADDED: {Step.OPEN_PART: ItemState.STREAMING, Step.DONE: ItemState.DONE},
    ItemState.STREAMING: {Step.DELTA: ItemState.STREAMING, Step.CLOSE_PART: ItemState.ADDED},
    ItemState.DONE: {},
}

_ADDED = ("response.output_item.added",)
_DONE = ("response.output_item.done",)
ITEM_EVENTS: dict[Kind, dict[Step, tuple[str, ...]]] = {
    "reasoning": {
        Step.ADD: _ADDED,
        Step.OPEN_PART: ("response.reasoning_summary_part.added",),
        Step.DELTA: ("response.reasoning_summary_text.delta",),
        Step.CLOSE_PART: ("response.reasoning_summary_text.done", "response.reasoning_summary_part.done"),
        Step.DONE: _DONE,
    },
    "text": {
        Step.ADD: _ADDED,
        Step.OPEN_PART: ("response.content_part.added",),
        Step.DELTA: ("response.output_text.delta",),
        Step.CLOSE_PART: ("response.output_text.done", "response.content_part.done"),
        Step.DONE: _DONE,
    },
    "refusal": {
        Step.ADD: _ADDED,
        Step.OPEN_PART: ("response.content_part.added",),
        Step.DELTA: ("response.refusal.delta",),
        Step.CLOSE_PART: ("response.refusal.done", "response.content_part.done"),
        Step.DONE: _DONE,
    },
    "function_call": {
        Step.ADD: _ADDED,
        Step.OPEN_PART: (),
        Step.DELTA: ("response.function_call_arguments.delta",),
        Step.CLOSE_PART: ("response.function_call_arguments.done",),
        Step.DONE: _DONE,
    },
    "custom_tool_call": {
        Step.ADD: _ADDED,
        Step.OPEN_PART: (),
        Step.DELTA: ("response.custom_tool_call_input.delta",),
        Step.CLOSE_PART: ("response.custom_tool_call_input.done",),
        Step.DONE: _DONE,
    },
    "compaction": {Step.ADD: _ADDED, Step.OPEN_PART: (), Step.DELTA: (), Step.CLOSE_PART: (),
                   Step.DONE: _DONE},
}


class Outcome(StrEnum):
    START = "start"
    COMPLETED = "completed"
    INCOMPLETE = "incomplete"
    FAILED = "failed"


class ResponseState(StrEnum):
    NEW = "new"
    OPEN = "open"
    CLOSED = "closed"


RESPONSE_TRANSITIONS: dict[ResponseState, dict[Outcome, ResponseState]] = {
    ResponseState.NEW: {Outcome.START: ResponseState.OPEN},
    ResponseState.OPEN: {
        Outcome.COMPLETED: ResponseState.CLOSED,
        Outcome.INCOMPLETE: ResponseState.CLOSED,
        Outcome.FAILED: ResponseState.CLOSED,
    },
    ResponseState.CLOSED: {},
}
RESPONSE_EVENTS: dict[Outcome, tuple[str, ...]] = {
    Outcome.START: ("response.created", "response.in_progress"),
    Outcome.COMPLETED: ("response.completed",),
    Outcome.INCOMPLETE: ("response.incomplete",),
    Outcome.FAILED: ("response.failed",),
}

PROMPT_BLOCKED = "PROMPT_BLOCKED"  # a pseudo finish reason: promptFeedback blocked the prompt
# finishReason → (outcome, incomplete_details.reason); anything else completes the response.
FINISH_OUTCOMES: dict[str, tuple[Outcome, str | None]] = {
    "MAX_TOKENS": (Outcome.INCOMPLETE, "max_output_tokens"),
    PROMPT_BLOCKED: (Outcome.INCOMPLETE, "content_filter"),
    **{reason: (Outcome.INCOMPLETE, "content_filter") for reason in FILTERED},
    "MALFORMED_FUNCTION_CALL": (Outcome.FAILED, None),
    "UNEXPECTED_TOOL_CALL": (Outcome.FAILED, None),
}
_ID_PREFIX: dict[Kind, str] = {
    "reasoning": "rs_",
    "text": "msg_",
    "refusal": "msg_",
    "function_call": "fc_",
    "custom_tool_call": "ctc_",
    "compaction": "cmp_",
}


# --- items -------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Item:
    kind: Kind
    index: int
    id: str
    state: ItemState = ItemState.NEW
    status: str = "in_progress"
    parts: list[str] = field(default_factory=list)  # closed parts' text
    buffer: list[str] = field(default_factory=list)  # the open part's deltas
    call_id: str = ""
    name: str = ""
    namespace: str | None = None
    signature: str | None = None
    family: str | None = None  # the signature's model family (``model_rules.family_of``)

    @property
    def text(self) -> str:
        """The open part's text so far."""
        return "".join(self.buffer)

    def json(self, *, encrypted: bool) -> dict[str, Any]:
        """The item as the client sees it now (``encrypted``: with a reasoning item's signature)."""
        texts = [*self.parts, self.text] if self.state is ItemState.STREAMING else self.parts
        if self.kind == "reasoning":
            summary = [_summary(t) for t in texts]
            out: dict[str, Any] = {"id": self.id, "type": "reasoning", "summary": summary}
            if encrypted and self.signature:
                thought = "".join(texts) if self.family == "c" else ""
                out["encrypted_content"] = encode_reasoning_signature(
                    self.signature, family=self.family, thought=thought
                )
            return out
        if self.kind == "compaction":
            compacted = encode_compaction("".join(texts))
            return {"id": self.id, "type": "compaction", "encrypted_content": compacted}
        if self.kind in ("text", "refusal"):
            content = [_content_part(self.kind, t) for t in texts]
            return {"id": self.id, "type": "message", "status": self.status, "content": content,
                    "role": "assistant"}
        value = texts[0] if texts else ""
        if self.kind == "custom_tool_call":
            out = {"id": self.id, "type": "custom_tool_call", "status": self.status, "call_id": self.call_id,
                   "name": self.name, "input": value}
        else:
            out = {"id": self.id, "type": "function_call", "status": self.status, "arguments": value,
                   "call_id": self.call_id, "name": self.name}
        if self.namespace:
            out["namespace"] = self.namespace
        return out


_NO_SIGNATURE = _Item("reasoning", -1, "")


def _summary(text: str) -> dict[str, Any]:
    return {"type": "summary_text", "text": text}


def _content_part(kind: Kind, text: str) -> dict[str, Any]:
    if kind == "refusal":
        return {"type": "refusal", "refusal": text}
    return {"type": "output_text", "annotations": [], "logprobs": [], "text": text}


_PART_EVENTS = frozenset(
    {
        "response.content_part.added",
        "response.content_part.done",
        "response.reasoning_summary_part.added",
        "response.reasoning_summary_part.done",
    }
)


def _part_fields(item: _Item, event_type: str, delta: str) -> dict[str, Any]:
    """The fields of one item event (besides ``type`` and ``sequence_number``)."""
    where: dict[str, Any] = {"item_id": item.id, "output_index": item.index}
    if item.kind == "reasoning":
        where["summary_index"] = len(item.parts)
    elif item.kind in ("text", "refusal"):
        where["content_index"] = len(item.parts)
    if event_type.endswith(".delta"):
        logprobs: dict[str, list[Any]] = {"logprobs": []} if item.kind == "text" else {}
        return {**where, "delta": delta, **logprobs}
    if event_type in _PART_EVENTS:
        text = "" if event_type.endswith(".added") else item.text
        part = _summary(text) if item.kind == "reasoning" else _content_part(item.kind, text)
        return {**where, "part": part}
    return {**where, **_done_value(item)}


def _done_value(item: _Item) -> dict[str, Any]:
    """The whole value of a ``*.done`` event that closes a part."""
    if item.kind == "function_call":
        return {"arguments": item.text, "name": item.name}
    if item.kind == "custom_tool_call":
        return {"input": item.text}
    if item.kind == "refusal":
        return {"refusal": item.text}
    if item.kind == "text":
        return {"text": item.text, "logprobs": []}
    return {"text": item.text}


# --- the translator ----------------------------------------------------------------------------------


class GeminiToResponsesStream(GeminiEventReader[Event]):
    def __init__(
        self,
        *,
        response_id: str,
        created_at: int,
        echo: dict[str, Any],
        id_factory: IdFactory,
        names: ToolNames | None = None,
        include_encrypted: bool = False,
        compact: bool = False,
        family: str | None = None,
    ) -> None:
        self._id = response_id
        self._family = family
        self._created_at = created_at
        self._echo = echo
        self._new_token = id_factory
        self._names = names or ToolNames()
        self._encrypted = include_encrypted
        self._compact = compact  # a compaction_trigger: the text is gathered into one compaction item
        self._summary: list[str] = []
        self._state = ResponseState.NEW
        self._seq = 0
        self._delivered: tuple[ResponseState, int] = (ResponseState.NEW, 0)  # state and seq the client saw
        self._items: list[_Item] = []
        self._open: _Item | None = None
        self._pending_signature: str | None = None
        self._finish_reason: str | None = None
        self._usage: Mapping[str, Any] | None = None
        self.call_refs: dict[str, ToolCallRef] = {}  # call_id -> Gemini's call id and signature
        self.response: dict[str, Any] | None = None  # the terminal response object, once there is one
        self.error: GatewayError | None = None

    # --- public verbs ---------------------------------------------------------------------------------

    def feed(self, event: Mapping[str, Any]) -> list[Event]:
        out: list[Event] = []
        if self._state is ResponseState.CLOSED:
            return out
        self._start(out)
        self._read(event, out)
        return self._deliver(out)

    def finish(self) -> list[Event]:
        out: list[Event] = []
        if self._state is not ResponseState.CLOSED:
            self._start(out)
            self._end(out)
        return self._deliver(out)

    def abort(self, error: GatewayError) -> list[Event]:
        """The gateway itself failed mid-stream: end the response as failed, whatever state it is in.

        Events of the call that raised never reached the client, so the stream resumes from what it saw:
        the sequence numbers continue from there, and ``response.created`` comes first if it was lost.
        """
        self._state, self._seq = self._delivered
        out: list[Event] = []
        if self._state is not ResponseState.CLOSED:
            self._start(out)
            self._fail(error, out)
        return self._deliver(out)

    def stored_output(self) -> list[dict[str, Any]]:
        """The output items with every reasoning signature, for ``previous_response_id``."""
        return [item.json(encrypted=True) for item in self._items]

    def _deliver(self, out: list[Event]) -> list[Event]:
        self._delivered = (self._state, self._seq)
        return out

    def _end(self, out: list[Event]) -> None:
        if self._finish_reason is None:
            what = "any content" if not self._items else "a finish reason"
            error = UpstreamProtocolError(
                f"Gemini's response ended without {what}: the reply is truncated.", code="upstream_truncated"
            )
            self._fail(error, out)
            return
        outcome, reason = FINISH_OUTCOMES.get(self._finish_reason, (Outcome.COMPLETED, None))
        if outcome is Outcome.FAILED:
            finish = self._finish_reason
            message = f"Gemini ended its reply with finishReason {finish}; the reply is unusable."
            self._fail(UpstreamError(message, code=finish.lower()), out)
            return
        self._close_open(out, "incomplete" if outcome is Outcome.INCOMPLETE else "completed")
        if self._compact:
            item = self._item("compaction", out, new=True)
            item.parts = ["".join(self._summary)]
            self._step(item, Step.ADD, out)
            self._finish_item(item, "completed", out)
        details = {"reason": reason} if reason else None
        self._terminal(outcome, out, usage=gemini_usage_to_responses(self._usage), incomplete_details=details)

    # --- Gemini events --------------------------------------------------------------------------------

    def _candidate(self, candidate: Mapping[str, Any], out: list[Event]) -> None:
        if candidate_index(candidate) != 0:
            return
        for part in candidate_parts(candidate):
            self._part(part, out)
        if (reason := candidate.get("finishReason")) is not None and self._finish_reason is None:
            self._finish_reason = str(reason)

    def _part(self, part: Mapping[str, Any], out: list[Event]) -> None:
        if self._compact:
            if part.get("thought") is not True and (text := part_text(part)):
                self._summary.append(text)
            return
        signature = part_signature(part)
        if part.get("thought") is True:
            self._thought(part, signature, out)
            return
        reasoning = self._open_reasoning()
        if signature and reasoning is not None and not reasoning.signature:
            reasoning.signature = signature  # the part that ends a run of thoughts signs it
        if "functionCall" in part:
            self._call(part["functionCall"], signature or self._pending_signature, out)
            self._pending_signature = None
            return
        if signature:
            self._pending_signature = signature
        if text := part_text(part):
            self._stream(self._item("text", out), text, out)

    def _thought(self, part: Mapping[str, Any], signature: str | None, out: list[Event]) -> None:
        text = part.get("text", "")
        if not isinstance(text, str):
            raise ValueError("a part's text is not a string")
        reasoning = self._open_reasoning()
        if text:
            reasoning = self._item("reasoning", out)
            self._stream(reasoning, text, out)
        if signature:
            self._pending_signature = signature
            if reasoning is not None:
                reasoning.signature = signature

    def _call(self, value: Any, signature: str | None, out: list[Event]) -> None:
        name, args, gemini_id = function_call(value)
        tool = self._names.lookup(name)
        kind: Kind = "custom_tool_call" if tool.kind == "custom" else "function_call"
        if signature and self._encrypted and (self._open_reasoning() or _NO_SIGNATURE).signature != signature:
            self._item("reasoning", out, new=True).signature = signature  # its carrier back to us
            self._step(self._items[-1], Step.ADD, out)
        item = self._item(kind, out, new=True)
        item.call_id = short_tool_call_id(self._new_token(), gemini_id=gemini_id)
        self.call_refs[item.call_id] = ToolCallRef(gemini_id, signature, family=self._family)
        item.name, item.namespace = tool.name, tool.namespace
        self._step(item, Step.ADD, out)
        payload = _custom_input(args) if kind == "custom_tool_call" else orjson.dumps(args).decode()
        self._stream(item, payload, out)
        self._finish_item(item, "completed", out)

    def _blocked(self, refusal: str, out: list[Event]) -> None:
        self._stream(self._item("refusal", out), refusal, out)
        self._finish_reason = self._finish_reason or PROMPT_BLOCKED

    # --- items ----------------------------------------------------------------------------------------

    def _item(self, kind: Kind, out: list[Event], *, new: bool = False) -> _Item:
        """The open item if it is of this kind (text and thoughts continue), else a new one, added.

        ``new``: always a new item, not yet added (the caller fills it in and adds it).
        """
        if not new and self._open is not None and self._open.kind == kind:
            return self._open
        self._close_open(out, "completed")
        item = _Item(kind, len(self._items), _ID_PREFIX[kind] + self._new_token(), family=self._family)
        self._items.append(item)
        self._open = item
        if not new:
            self._step(item, Step.ADD, out)
        return item

    def _open_reasoning(self) -> _Item | None:
        return self._open if self._open is not None and self._open.kind == "reasoning" else None

    def _stream(self, item: _Item, text: str, out: list[Event]) -> None:
        if item.state is ItemState.ADDED:
            self._step(item, Step.OPEN_PART, out)
        if text:
            self._step(item, Step.DELTA, out, text)

    def _close_open(self, out: list[Event], status: str) -> None:
        if self._open is not None:
            self._finish_item(self._open, status, out)

    def _finish_item(self, item: _Item, status: str, out: list[Event]) -> None:
        if item.state is ItemState.STREAMING:
            self._step(item, Step.CLOSE_PART, out)
        item.status = status
        self._step(item, Step.DONE, out)
        self._open = None

    def _step(self, item: _Item, step: Step, out: list[Event], delta: str = "") -> None:
        try:
            item.state = ITEM_TRANSITIONS[item.state][step]
        except KeyError:
            raise StreamStateError(
                f"{item.kind} item {item.id}: '{step}' is not allowed when {item.state}"
            ) from None
        if step is Step.DELTA:
            item.buffer.append(delta)
        for event_type in ITEM_EVENTS[item.kind][step]:
            if step in (Step.ADD, Step.DONE):
                fields = {"output_index": item.index, "item": item.json(encrypted=self._encrypted)}
            else:
                fields = _part_fields(item, event_type, delta)
            out.append(self._emit(event_type, fields))
        if step is Step.CLOSE_PART:
            item.parts.append(item.text)
            item.buffer = []

    # --- the response ---------------------------------------------------------------------------------

    def _start(self, out: list[Event]) -> None:
        if self._state is ResponseState.NEW:
            self._advance(Outcome.START, out, self._response("in_progress", []))

    def _fail(self, error: GatewayError, out: list[Event]) -> None:
        self.error = error
        for item in self._items:
            if item.state is not ItemState.DONE:
                item.status = "incomplete"
        quota = error.status == 429 or error.code == "resource_exhausted"
        code = "rate_limit_exceeded" if quota else "server_error"
        self._terminal(Outcome.FAILED, out, usage=None, error={"code": code, "message": error.message})

    def _terminal(self, outcome: Outcome, out: list[Event], **fields: Any) -> None:
        output = [item.json(encrypted=self._encrypted) for item in self._items]
        self.response = self._response(outcome.value, output, **fields)
        self._advance(outcome, out, self.response)
        self._open = None

    def _advance(self, outcome: Outcome, out: list[Event], response: dict[str, Any]) -> None:
        try:
            self._state = RESPONSE_TRANSITIONS[self._state][outcome]
        except KeyError:
            raise StreamStateError(
                f"response {self._id}: '{outcome}' is not allowed when {self._state}"
            ) from None
        out.extend(self._emit(event_type, {"response": response}) for event_type in RESPONSE_EVENTS[outcome])

    def _response(self, status: str, output: list[dict[str, Any]], **fields: Any) -> dict[str, Any]:
        return response_object(
            response_id=self._id,
            created_at=self._created_at,
            status=status,
            echo=self._echo,
            output=output,
            usage=fields.get("usage"),
            error=fields.get("error"),
            incomplete_details=fields.get("incomplete_details"),
        )

    def _emit(self, event_type: str, fields: dict[str, Any]) -> Event:
        event = {"type": event_type, **fields, "sequence_number": self._seq}
        self._seq += 1
        return event


def _custom_input(args: Mapping[str, Any]) -> str:
    """A custom tool's raw input: the ``input`` string it was declared with (else the args as JSON)."""
    value = args.get("input")
    return value if isinstance(value, str) else orjson.dumps(args).decode()


# --- non-stream: the fold of the stream --------------------------------------------------------------


def gemini_to_response(response: Mapping[str, Any], stream: GeminiToResponsesStream) -> dict[str, Any]:
    """One unary ``GenerateContentResponse`` through ``stream`` → the response object; raises the
    ``GatewayError`` a stream would have ended with."""
    stream.feed(response)
    stream.finish()
    if stream.error is not None:
        raise stream.error
    assert stream.response is not None  # finish() always ends the response
    return stream.response
