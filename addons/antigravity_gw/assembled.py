"""Streams and requests put together for a person to read (mitmweb's content views, ``ag.flow.upstream``).

- ``openai_stream``: a chat, legacy completions, Responses or Anthropic Messages SSE answer as the client
  got it → text, reasoning, tool calls, finish reason, usage and the error it ended with, if any;
- ``gemini_stream``: Google's SSE answer (Cloud Code's ``response`` envelope or the public API's) → the same;
- ``gemini_request``: a generateContent body → model, system instruction, turns, tools, config.

Pure and forgiving: events that are not JSON or not what they should be are counted and skipped, never
raised, since the views show whatever a flow holds (an edited request, a cut stream). Runs only when
someone looks at a flow, never on the request path.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from .sse import SSEDecoder


@dataclass
class ToolCall:
    name: str = ""
    call_id: str = ""
    arguments: str = ""


@dataclass
class Assembled:
    """One streamed answer, whole."""

    kind: str = ""  # chat.completions, responses, completions, messages, gemini
    model: str = ""
    text: str = ""
    reasoning: str = ""
    tool_calls: list[ToolCall] = field(default_factory=list)
    finish: str = ""
    usage: dict[str, Any] = field(default_factory=dict)
    error: str = ""
    events: int = 0
    unreadable: int = 0  # events that were not JSON objects

    def render(self) -> str:
        head = f"{self.kind or 'stream'}: {self.events} events"
        lines = [f"{head}, model {self.model}" if self.model else head]
        if self.error:
            lines.append(f"⚠ ended with an error: {self.error}")
        if self.reasoning:
            lines += ["", "── reasoning ──", self.reasoning]
        if self.text:
            lines += ["", "── text ──", self.text]
        for call in self.tool_calls:
            named = f"{call.name} ({call.call_id})" if call.call_id else call.name
            lines += ["", f"── tool call {named} ──", _pretty_arguments(call.arguments)]
        tail = []
        if self.finish:
            tail.append(f"finish: {self.finish}")
        if self.usage:
            tail.append("usage: " + ", ".join(f"{k}={v}" for k, v in self.usage.items()
                                               if isinstance(v, (int, float, str))))
        if self.unreadable:
            tail.append(f"{self.unreadable} unreadable event(s) skipped")
        if tail:
            lines += ["", *tail]
        return "\n".join(lines)


def sse_events(data: bytes) -> list[tuple[str, Any]]:
    """(event name, parsed data) of each SSE event; data that is not JSON is kept as ``None``."""
    decoder = SSEDecoder()
    found = []
    for ev in [*decoder.feed(data), *decoder.finish()]:
        if ev.comment or not ev.data or ev.data == b"[DONE]":
            continue
        try:
            parsed = orjson.loads(ev.data)
        except orjson.JSONDecodeError:
            parsed = None
        found.append((getattr(ev, "event", "") or "", parsed))
    return found


def looks_like_sse(data: bytes) -> bool:
    head = data[:512].lstrip()
    return head.startswith((b"data:", b"event:", b":"))


def openai_stream(data: bytes) -> Assembled:
    out = Assembled()
    calls: dict[Any, ToolCall] = {}
    text: list[str] = []
    reasoning: list[str] = []
    for name, ev in sse_events(data):
        out.events += 1
        if not isinstance(ev, dict):
            out.unreadable += 1
            continue
        kind = ev.get("type") or name
        if kind in _MESSAGES_EVENTS or (kind == "error" and out.kind == "messages"):
            out.kind = "messages"
            _messages_event(kind, ev, out, calls, text, reasoning)
            continue
        if isinstance(kind, str) and kind.startswith(("response.", "error")) and "choices" not in ev:
            out.kind = "responses"
            _responses_event(kind, ev, out, calls, text, reasoning)
            continue
        if isinstance(ev.get("error"), dict):
            out.error = _error_text(ev["error"])
            continue
        out.kind = out.kind or ("chat.completions" if ev.get("object") == "chat.completion.chunk" else
                                "completions")
        out.model = ev.get("model") or out.model
        if isinstance(ev.get("usage"), dict):
            out.usage = ev["usage"]
        for choice in ev.get("choices") or ():
            if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                continue  # n > 1: the first answer is the one shown
            if choice.get("finish_reason"):
                out.finish = choice["finish_reason"]
            if isinstance(choice.get("text"), str):
                text.append(choice["text"])
            delta = choice.get("delta") or {}
            if isinstance(delta.get("content"), str):
                text.append(delta["content"])
            if isinstance(delta.get("reasoning_content"), str):
                reasoning.append(delta["reasoning_content"])
            for tc in delta.get("tool_calls") or ():
                call = calls.setdefault(tc.get("index", len(calls)), ToolCall())
                call.call_id = tc.get("id") or call.call_id
                fn = tc.get("function") or {}
                call.name = fn.get("name") or call.name
                call.arguments += fn.get("arguments") or ""
    out.text, out.reasoning, out.tool_calls = "".join(text), "".join(reasoning), list(calls.values())
    return out


def _responses_event(kind: str, ev: dict[str, Any], out: Assembled, calls: dict[Any, ToolCall],
                     text: list[str], reasoning: list[str]) -> None:
    if kind == "response.output_text.delta":
        text.append(ev.get("delta") or "")
    elif kind in ("response.reasoning_summary_text.delta", "response.reasoning_text.delta"):
        reasoning.append(ev.get("delta") or "")
    elif kind == "response.output_item.added":
        item = ev.get("item") or {}
        if item.get("type") in ("function_call", "custom_tool_call"):
            calls[ev.get("output_index")] = ToolCall(item.get("name") or "", item.get("call_id") or "")
    elif kind in ("response.function_call_arguments.delta", "response.custom_tool_call_input.delta"):
        calls.setdefault(ev.get("output_index"), ToolCall()).arguments += ev.get("delta") or ""
    elif kind in ("response.created", "response.completed", "response.incomplete", "response.failed"):
        resp = ev.get("response") or {}
        out.model = resp.get("model") or out.model
        if kind != "response.created":
            out.finish = resp.get("status") or kind.removeprefix("response.")
        if isinstance(resp.get("usage"), dict):
            out.usage = resp["usage"]
        if isinstance(resp.get("error"), dict):
            out.error = _error_text(resp["error"])
    elif kind == "error":
        out.error = _error_text(ev.get("error") if isinstance(ev.get("error"), dict) else ev)


_MESSAGES_EVENTS = frozenset({"message_start", "ping", "content_block_start", "content_block_delta",
                              "content_block_stop", "message_delta", "message_stop"})


def _messages_event(kind: str, ev: dict[str, Any], out: Assembled, calls: dict[Any, ToolCall],
                    text: list[str], reasoning: list[str]) -> None:
    """One event of Anthropic's Messages stream."""
    if kind == "message_start":
        message = ev.get("message") or {}
        out.model = message.get("model") or out.model
    elif kind == "content_block_start":
        block = ev.get("content_block") or {}
        if block.get("type") == "tool_use":
            calls[ev.get("index")] = ToolCall(block.get("name") or "", block.get("id") or "")
    elif kind == "content_block_delta":
        delta = ev.get("delta") or {}
        if delta.get("type") == "text_delta":
            text.append(delta.get("text") or "")
        elif delta.get("type") == "thinking_delta":
            reasoning.append(delta.get("thinking") or "")
        elif delta.get("type") == "input_json_delta":
            calls.setdefault(ev.get("index"), ToolCall()).arguments += delta.get("partial_json") or ""
    elif kind == "message_delta":
        out.finish = (ev.get("delta") or {}).get("stop_reason") or out.finish
        if isinstance(ev.get("usage"), dict):
            out.usage = ev["usage"]
    elif kind == "error":
        out.error = _error_text(ev.get("error") if isinstance(ev.get("error"), dict) else ev)


def gemini_stream(data: bytes) -> Assembled:
    out = Assembled(kind="gemini")
    text: list[str] = []
    reasoning: list[str] = []
    for _, ev in sse_events(data):
        out.events += 1
        if not isinstance(ev, dict):
            out.unreadable += 1
            continue
        if isinstance(ev.get("response"), dict):  # Cloud Code's envelope
            ev = ev["response"]
        if isinstance(ev.get("error"), dict):
            out.error = _error_text(ev["error"])
            continue
        out.model = ev.get("modelVersion") or out.model
        if isinstance(ev.get("usageMetadata"), dict):
            out.usage = ev["usageMetadata"]
        candidates = ev.get("candidates") or ()
        first = candidates[0] if candidates and isinstance(candidates[0], dict) else {}
        if first.get("finishReason"):
            out.finish = first["finishReason"]
        for part in (first.get("content") or {}).get("parts") or ():
            if not isinstance(part, dict):
                continue
            if isinstance(part.get("text"), str):
                (reasoning if part.get("thought") else text).append(part["text"])
            if isinstance(part.get("functionCall"), dict):
                fc = part["functionCall"]
                out.tool_calls.append(ToolCall(fc.get("name") or "", fc.get("id") or "",
                                               orjson.dumps(fc.get("args") or {}).decode()))
    out.text, out.reasoning = "".join(text), "".join(reasoning)
    return out


def gemini_request(body: dict[str, Any]) -> str:
    """A generateContent body (Cloud Code's envelope or the public API's) as a readable summary."""
    lines = []
    if "request" in body and isinstance(body["request"], dict):  # Cloud Code: model/project outside
        lines.append(f"model: {body.get('model', '?')}   project: {body.get('project', '?')}")
        body = body["request"]
    system = body.get("systemInstruction") or body.get("system_instruction")
    if isinstance(system, dict):
        lines += ["", "── system ──", _parts_text(system.get("parts"))]
    for turn in body.get("contents") or ():
        if isinstance(turn, dict):
            lines += ["", f"── {turn.get('role', '?')} ──", _parts_text(turn.get("parts"))]
    tools = [fd.get("name", "?") for t in body.get("tools") or () if isinstance(t, dict)
             for fd in t.get("functionDeclarations") or t.get("function_declarations") or ()
             if isinstance(fd, dict)]
    if tools:
        lines += ["", "tools: " + ", ".join(tools)]
    config = body.get("generationConfig")
    if isinstance(config, dict) and config:
        lines += ["", "generationConfig: " + orjson.dumps(config).decode()]
    return "\n".join(lines).lstrip("\n")


def _parts_text(parts: Any) -> str:
    shown = []
    for part in parts or ():
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("text"), str):
            shown.append(("(thought) " if part.get("thought") else "") + part["text"])
        elif "functionCall" in part:
            fc = part["functionCall"] or {}
            shown.append(f"→ call {fc.get('name', '?')}({orjson.dumps(fc.get('args') or {}).decode()})")
        elif "functionResponse" in part:
            fr = part["functionResponse"] or {}
            result = orjson.dumps(fr.get("response")).decode()[:500]
            shown.append(f"← result of {fr.get('name', '?')}: {result}")
        elif "inlineData" in part or "inline_data" in part:
            data = part.get("inlineData") or part.get("inline_data") or {}
            shown.append(f"[{data.get('mimeType') or data.get('mime_type') or 'inline data'}, "
                         f"{len(data.get('data') or '') * 3 // 4} bytes]")
        else:
            shown.append(orjson.dumps(part).decode()[:500])
    return "\n".join(shown)


def _error_text(err: Any) -> str:
    if not isinstance(err, dict):
        return str(err)
    code = err.get("code") or err.get("status") or err.get("type") or ""
    return f"{code}: {err.get('message', '')}".strip(": ") if code else str(err.get("message", ""))


def _pretty_arguments(arguments: str) -> str:
    try:
        return orjson.dumps(orjson.loads(arguments), option=orjson.OPT_INDENT_2).decode()
    except orjson.JSONDecodeError:
        return arguments
