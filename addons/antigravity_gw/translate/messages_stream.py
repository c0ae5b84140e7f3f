"""Gemini ``GenerateContentResponse`` events → Anthropic Messages stream events; a non-stream reply is the
same translator's assembled message, so both modes agree on blocks, ids, stop reason and usage.

The event sequence (one ``GeminiToMessagesStream`` per response; candidate 0 only, Anthropic has no ``n``):
1. ``message_start`` (the message with empty content and the usage known so far), then one ``ping``,
   on the first event.
2. Parts in order, each block opened by ``content_block_start`` and ended by ``content_block_stop``, a new
   block whenever the kind changes: thought text → a ``thinking`` block of ``thinking_delta`` events, its
   ``thoughtSignature`` a ``signature_delta`` (marked with the model family, ``signatures.py``); text →
   a ``text`` block of ``text_delta`` events; ``functionCall`` → a ``tool_use`` block with one
   ``input_json_delta`` holding the whole arguments (Gemini sends calls whole). A tool_use id carries
   Gemini's call id and a signature meant for the call (Gemini 3), as chat's tool call ids do.
3. At the end: ``message_delta`` (``stop_reason``, ``stop_sequence``, the final usage) and ``message_stop``.
4. A blocked prompt answers a text block naming the reason, with ``stop_reason`` ``refusal``.
5. An in-band Google error, a stream without ``finishReason`` or malformed data ends the stream with one
   ``error`` event in Anthropic's shape; ``error`` keeps the exception, later calls return nothing.

Usage follows Anthropic's split: ``input_tokens`` excludes cached reads (``cache_read_input_tokens``);
Gemini reports no cache writes, so ``cache_creation_input_tokens`` is 0.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import orjson

from ..error_shapes import anthropic_error_event
from ..errors import GatewayError, UpstreamProtocolError
from .finish import FILTERED
from .gemini_events import (
    GeminiEventReader,
    candidate_index,
    candidate_parts,
    function_call,
    part_signature,
    part_text,
)
from .signatures import encode_thinking_signature, encode_tool_call_id
from .usage import gemini_usage_counts

Event = dict[str, Any]
_STOP_REASONS = {"STOP": "end_turn", "MAX_TOKENS": "max_tokens"}


def anthropic_usage(usage: Mapping[str, Any] | None) -> dict[str, int]:
    counts = gemini_usage_counts(usage)
    return {
        "input_tokens": counts.prompt - min(counts.cached, counts.prompt),
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": counts.cached,
        "output_tokens": counts.completion,
    }


def stop_reason(finish: str | None, *, has_tool_use: bool) -> str:
    if finish in FILTERED:
        return "refusal"
    if has_tool_use and finish in (None, "STOP"):
        return "tool_use"
    return _STOP_REASONS.get(finish or "STOP", "end_turn")


class GeminiToMessagesStream(GeminiEventReader[Event]):
    def __init__(
        self, *, message_id: str, model: str, id_factory: Callable[[], str], family: str | None = None
    ) -> None:
        self._id = message_id
        self._model = model
        self._new_token = id_factory
        self._family = family
        self._usage: Mapping[str, Any] | None = None
        self._started = False
        self._open: str | None = None  # the kind of the open block
        self._pending_signature: str | None = None  # a signature meant for the next call (Gemini 3)
        self.blocks: list[dict[str, Any]] = []  # the message's content as assembled so far
        self.finish_reason: str | None = None
        self.finished = False
        self.error: GatewayError | None = None

    # --- the translator protocol ----------------------------------------------------------------------
    def feed(self, event: Mapping[str, Any]) -> list[Event]:
        if self.error is not None or self.finished:
            return []
        out: list[Event] = []
        self._read(event, out)
        return out

    def finish(self) -> list[Event]:
        if self.error is not None or self.finished:
            return []
        out: list[Event] = []
        if self.finish_reason is None:
            self._fail(
                UpstreamProtocolError(
                    "Google's stream ended before the answer was complete (no finishReason)."
                ),
                out,
            )
            return out
        self._close(out)
        self.finished = True
        out.append(
            {
                "type": "message_delta",
                "delta": {"stop_reason": self.stop_reason, "stop_sequence": None},
                "usage": self.usage,
            }
        )
        out.append({"type": "message_stop"})
        return out

    def abort(self, error: GatewayError) -> list[Event]:
        if self.error is not None or self.finished:
            return []
        out: list[Event] = []
        self._fail(error, out)
        return out

    # --- what the answer says -------------------------------------------------------------------------
    @property
    def usage(self) -> dict[str, int]:
        return anthropic_usage(self._usage)

    @property
    def stop_reason(self) -> str:
        has_tool_use = any(block["type"] == "tool_use" for block in self.blocks)
        return stop_reason(self.finish_reason, has_tool_use=has_tool_use)

    def message(self) -> dict[str, Any]:
        """The whole message (the non-stream answer), once ``finish`` ended it."""
        return {
            **self._message_head(),
            "content": self.blocks,
            "stop_reason": self.stop_reason,
            "usage": self.usage,
        }

    # --- the walk -------------------------------------------------------------------------------------
    def _event(self, event: Any, out: list[Event]) -> None:
        self._start(event, out)
        super()._event(event, out)

    def _start(self, event: Any, out: list[Event]) -> None:
        if self._started:
            return
        self._started = True
        usage = event.get("usageMetadata") if isinstance(event, Mapping) else None
        head = self._message_head()
        try:
            head["usage"] = anthropic_usage(usage if isinstance(usage, Mapping) else None)
        except ValueError:
            head["usage"] = anthropic_usage(None)  # the walk reports the malformed counts
        head["usage"]["output_tokens"] = 0
        out.append({"type": "message_start", "message": head})
        out.append({"type": "ping"})

    def _message_head(self) -> dict[str, Any]:
        return {
            "id": self._id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": anthropic_usage(None),
        }

    def _candidate(self, candidate: Mapping[str, Any], out: list[Event]) -> None:
        if candidate_index(candidate) != 0:
            return
        for part in candidate_parts(candidate):
            self._part(part, out)
        reason = candidate.get("finishReason")
        if reason is not None:
            self.finish_reason = str(reason)

    def _part(self, part: Mapping[str, Any], out: list[Event]) -> None:
        signature = part_signature(part)
        if "functionCall" in part:
            self._tool_use(part["functionCall"], signature or self._pending_signature, out)
            self._pending_signature = None
            return
        text = part_text(part)
        if part.get("thought") is True:
            if text or signature:
                self._ensure("thinking", out)
            if text:
                self._delta({"type": "thinking_delta", "thinking": text}, out)
                self.blocks[-1]["thinking"] += text
            if signature:
                self._sign(signature, out)
            return
        if signature:
            if self._open == "thinking" and not self.blocks[-1]["signature"]:
                self._sign(signature, out)  # a thinking block's signature on the part after it
            else:
                self._pending_signature = signature
        if text:
            self._ensure("text", out)
            self._delta({"type": "text_delta", "text": text}, out)
            self.blocks[-1]["text"] += text

    def _sign(self, signature: str, out: list[Event]) -> None:
        encoded = encode_thinking_signature(signature, family=self._family)
        self._delta({"type": "signature_delta", "signature": encoded}, out)
        self.blocks[-1]["signature"] = encoded

    def _tool_use(self, value: Any, signature: str | None, out: list[Event]) -> None:
        name, args, gemini_id = function_call(value)
        self._close(out)
        tool_id = encode_tool_call_id(
            self._new_token(), gemini_id=gemini_id, signature=signature, family=self._family
        )
        index = len(self.blocks)
        self.blocks.append({"type": "tool_use", "id": tool_id, "name": name, "input": dict(args)})
        out.append(
            {
                "type": "content_block_start",
                "index": index,
                "content_block": {"type": "tool_use", "id": tool_id, "name": name, "input": {}},
            }
        )
        out.append(
            {
                "type": "content_block_delta",
                "index": index,
                "delta": {"type": "input_json_delta", "partial_json": orjson.dumps(args).decode()},
            }
        )
        out.append({"type": "content_block_stop", "index": index})

    def _ensure(self, kind: str, out: list[Event]) -> None:
        if self._open == kind:
            return
        self._close(out)
        block: dict[str, Any] = {"type": kind, kind if kind == "text" else "thinking": ""}
        if kind == "thinking":
            block["signature"] = ""
        self.blocks.append(block)
        self._open = kind
        out.append(
            {"type": "content_block_start", "index": len(self.blocks) - 1, "content_block": dict(block)}
        )

    def _delta(self, delta: dict[str, Any], out: list[Event]) -> None:
        out.append({"type": "content_block_delta", "index": len(self.blocks) - 1, "delta": delta})

    def _close(self, out: list[Event]) -> None:
        if self._open is not None:
            out.append({"type": "content_block_stop", "index": len(self.blocks) - 1})
            self._open = None

    def _blocked(self, refusal: str, out: list[Event]) -> None:
        self._ensure("text", out)
        self._delta({"type": "text_delta", "text": refusal}, out)
        self.blocks[-1]["text"] += refusal
        self.finish_reason = "SAFETY"

    def _fail(self, error: GatewayError, out: list[Event]) -> None:
        self.error = error
        out.append(anthropic_error_event(error))


def gemini_to_message(response: dict[str, Any], translator: GeminiToMessagesStream) -> dict[str, Any]:
    """A whole Gemini answer → the Messages API's message; a malformed or cut answer raises its error."""
    translator.feed(response)
    translator.finish()
    if translator.error is not None:
        raise translator.error
    return translator.message()
