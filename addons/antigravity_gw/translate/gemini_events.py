"""Reading Gemini ``GenerateContentResponse`` events: the walk and the checks both stream translators share.

Gemini's events are loosely typed JSON, so every piece is checked as it is read; a malformed one raises
``ValueError`` saying what is wrong, and ``GeminiEventReader._read`` turns that into the
``UpstreamProtocolError`` that ends the stream. The walk over one event is the same for chat and for the
Responses API (an in-band error, then ``usageMetadata``, then a blocked prompt, then each candidate in
order); what a candidate or a blocked prompt means is left to the translator.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from ..errors import GatewayError, UpstreamError, UpstreamProtocolError
from .usage import gemini_usage_counts

PLACEHOLDER = "_placeholder"  # model_rules declares it; defined here so model_rules imports nothing back


class GeminiEventReader[Out](ABC):
    """Walks Gemini events for a stream translator whose output items are ``Out``."""

    _usage: Mapping[str, Any] | None  # the last ``usageMetadata`` seen (a subclass sets it to None first)

    def _read(self, event: Mapping[str, Any], out: list[Out]) -> None:
        """One event → ``out``; a malformed event fails the stream instead."""
        try:
            self._event(event, out)
        except ValueError as exc:
            self._fail(UpstreamProtocolError(f"Gemini sent a malformed stream event: {exc}."), out)

    def _event(self, event: Any, out: list[Out]) -> None:
        if type(event) is not dict and not isinstance(event, Mapping):  # JSON gives dicts: skip the ABC check
            raise ValueError("an event is not a JSON object")
        if "error" in event:
            self._fail(google_stream_error(event["error"]), out)
            return
        if "usageMetadata" in event:
            usage = event["usageMetadata"]
            gemini_usage_counts(as_object(usage, "usageMetadata"))  # validate now, not at the end
            self._usage = usage
        candidates = as_list(event.get("candidates"), "candidates")
        feedback = as_object(event.get("promptFeedback"), "promptFeedback")
        if not candidates and (reason := feedback.get("blockReason")):
            self._blocked(_block_refusal(str(reason), feedback.get("blockReasonMessage")), out)
        for candidate in candidates:
            self._candidate(as_object(candidate, "candidate"), out)

    @abstractmethod
    def _candidate(self, candidate: Mapping[str, Any], out: list[Out]) -> None:
        """One candidate of an event (its parts, its finish reason)."""

    @abstractmethod
    def _blocked(self, refusal: str, out: list[Out]) -> None:
        """Google blocked the prompt: there are no candidates, only this refusal text to show."""

    @abstractmethod
    def _fail(self, error: GatewayError, out: list[Out]) -> None:
        """End the stream with ``error``."""


def _block_refusal(reason: str, detail: Any) -> str:
    refusal = f"The prompt was blocked by Google (blockReason: {reason})."
    if isinstance(detail, str) and detail:
        refusal += f" {detail}"
    return refusal


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


# --- candidates and parts ----------------------------------------------------------------------------


def candidate_index(candidate: Mapping[str, Any]) -> int:
    index = candidate.get("index", 0)
    if type(index) is not int or index < 0:  # exactly int: a JSON true is a bool, not an index
        raise ValueError(f"candidate index {index!r} is not a non-negative integer")
    return index


def candidate_parts(candidate: Mapping[str, Any]) -> Iterator[Mapping[str, Any]]:
    """The candidate's parts in order, each checked as it is reached (parts before a bad one still count)."""
    content = as_object(candidate.get("content"), "candidate.content")
    for part in as_list(content.get("parts"), "content.parts"):
        yield as_object(part, "part")


def part_signature(part: Mapping[str, Any]) -> str | None:
    signature = part.get("thoughtSignature") or part.get("thought_signature")
    if signature is not None and not isinstance(signature, str):
        raise ValueError("thoughtSignature is not a string")
    return signature


class FunctionCall(NamedTuple):
    name: str
    args: Mapping[str, Any]
    gemini_id: str | None  # Gemini's own call id, when it sent one


def function_call(value: Any) -> FunctionCall:
    call = as_object(value, "functionCall")
    name, args, gemini_id = call.get("name"), call.get("args") or {}, call.get("id")
    if not isinstance(name, str) or not name:
        raise ValueError("functionCall has no name")
    if not isinstance(args, Mapping):
        raise ValueError(f"functionCall {name!r} has args that are not an object")
    if gemini_id is not None and not isinstance(gemini_id, str):
        raise ValueError(f"functionCall {name!r} has an id that is not a string")
    if PLACEHOLDER in args:  # the argument the gateway declared for Claude's argument-less tools
        args = {k: v for k, v in args.items() if k != PLACEHOLDER}
    return FunctionCall(name, args, gemini_id)


def part_text(part: Mapping[str, Any]) -> str | None:
    """The text a part that is not a call shows: its text (possibly empty), an ``inlineData`` image as a
    markdown data URL, code and its result as code blocks; None for parts with nothing to show."""
    if "text" in part:
        text = part["text"]
        if not isinstance(text, str):
            raise ValueError("a part's text is not a string")
        return text
    if "inlineData" in part:
        blob = as_object(part["inlineData"], "inlineData")
        mime, data = blob.get("mimeType"), blob.get("data")
        if not isinstance(mime, str) or not isinstance(data, str):
            raise ValueError("inlineData lacks mimeType or data")
        return f"![image](data:{mime};base64,{data})"
    if "executableCode" in part:
        code = as_object(part["executableCode"], "executableCode")
        return f"\n```{str(code.get('language', '')).lower()}\n{code.get('code', '')}\n```\n"
    if "codeExecutionResult" in part:
        result = as_object(part["codeExecutionResult"], "codeExecutionResult")
        return f"\n```\n{result.get('output', '')}\n```\n"
    return None


# --- JSON shapes -------------------------------------------------------------------------------------


def as_object(value: Any, what: str) -> Mapping[str, Any]:
    """An optional JSON object: absent (None) reads as empty, anything else but an object is malformed."""
    # Runs for every piece of every stream event: a dict (all JSON objects are) skips the ABC check.
    if type(value) is dict:
        return value
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"{what} is not an object")
    return value


def as_list(value: Any, what: str) -> list[Any]:
    """An optional JSON array, read as ``as_object`` reads objects."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise ValueError(f"{what} is not an array")
    return value
