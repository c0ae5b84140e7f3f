"""What one model family behind Cloud Code demands of a finished Gemini request, applied after the chat or
Responses translation (requirements R-C*, R-G* in ``../shared/reference/cloudcode-models-quota.md``).

Families (``family_of``): ``c`` Claude, ``g3`` Gemini 3, ``g2`` any other Gemini, None for the rest.
A replayed thought signature (``SignedPart``: from a tool-call id or a ``reasoning`` item) knows the
family that minted it, and ``fit_history`` gives each target what it accepts:

* Claude: signatures come off every ``functionCall`` / text part; a Claude thinking block (signature and
  its text) becomes the single ``{thought, text, thoughtSignature}`` part leading its model turn, the
  only shape Claude takes. Anything else (unsigned, another family's, a text Gemini does not have) is
  dropped, never faked: Claude rejects fabricated signatures and the skip sentinel.
* Gemini 3: signatures of another family are dropped; the first ``functionCall`` of a model turn
  that carries none gets the documented escape value ``skip_thought_signature_validator`` (history
  Gemini did not produce: another model, a hand-edited or foreign tool call). Never more than one per
  turn: the value on every call is itself rejected.
* Other Gemini: signatures of other families are dropped (Gemini 2.5 does not require any).

``fit_claude`` then shapes the request for Claude: function calling ``VALIDATED`` (a declaration
without arguments gets the ``_placeholder`` property, taken off the calls again by
``gemini_events.function_call``), tool names Claude accepts, ``maxOutputTokens`` above the thinking
budget and at most 64000, thinking turned off for a request whose running tool turn lost its thinking
block (instead of Claude's 400), and a 400 for a conversation ending with an assistant message (Claude
has no prefill).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from ..errors import InvalidRequest
from .gemini_events import PLACEHOLDER
from .parts import Part

SKIP_SIGNATURE = "skip_thought_signature_validator"
CLAUDE_MAX_OUTPUT_TOKENS = 64000
CLAUDE_MIN_BUDGET = 1024
_PLACEHOLDER_SCHEMA = {
    "type": "OBJECT",
    "properties": {
        PLACEHOLDER: {"type": "BOOLEAN", "description": "Always true; this tool takes no arguments."}
    },
    "required": [PLACEHOLDER],
}
_CLAUDE_TOOL_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
# The translators' key order (prefix-cache stability, ``chat_request.py``).
_KEY_ORDER = ("systemInstruction", "tools", "toolConfig", "generationConfig", "contents")


@lru_cache(maxsize=256)  # asked twice per request; model names are few
def family_of(model: str) -> str | None:
    name = model.lower()
    if "claude" in name:
        return "c"
    if "gemini-3" in name:
        return "g3"
    if "gemini" in name:
        return "g2"
    return None


@dataclass(slots=True)
class SignedPart:
    """A part of the translated history and the signature data the client's history carried for it."""

    part: Part  # a ``functionCall`` or text part, changed in place by ``fit_history``
    signature: str
    family: str | None  # None: an id made before families were recorded (Gemini's, then)
    thought: str | None = None  # Claude's thought text


def fit_history(contents: list[dict[str, Any]], signed: Sequence[SignedPart], *, target: str | None) -> None:
    """Put each replayed signature where ``target``'s family accepts it (see the module docstring)."""
    if target == "c":
        _fit_claude_history(contents, signed)
        return
    for item in signed:
        if _accepts(target, item.family):
            item.part["thoughtSignature"] = item.signature
        else:
            item.part.pop("thoughtSignature", None)
    if target == "g3":
        _escape_unsigned_calls(contents)


def _accepts(target: str | None, family: str | None) -> bool:
    """Does a model of family ``target`` take a signature minted by ``family`` (None: not recorded)?"""
    if target in ("g3", "g2"):
        return family is None or family == target  # 2.5 signatures are not replay-safe on 3, nor back
    return family != "c"


def _escape_unsigned_calls(contents: list[dict[str, Any]]) -> None:
    for turn in contents:
        if turn["role"] != "model":
            continue
        first_call = next((p for p in turn["parts"] if "functionCall" in p), None)
        if first_call is not None and not first_call.get("thoughtSignature"):
            first_call["thoughtSignature"] = SKIP_SIGNATURE


def _fit_claude_history(contents: list[dict[str, Any]], signed: Sequence[SignedPart]) -> None:
    thinking: dict[int, Part] = {}  # id(part) → the thinking block that leads its turn
    for item in signed:
        item.part.pop("thoughtSignature", None)
        if item.family == "c" and item.thought:
            block = {"thought": True, "text": item.thought, "thoughtSignature": item.signature}
            thinking[id(item.part)] = block
    for turn in contents:
        if turn["role"] != "model":
            continue
        lead = next((thinking[id(p)] for p in turn["parts"] if id(p) in thinking), None)
        parts = [p for p in turn["parts"] if p.get("thought") is not True]
        turn["parts"] = [lead, *parts] if lead is not None else parts


# --- Claude's request shape ----------------------------------------------------------------------------


def fit_claude(out: dict[str, Any]) -> None:
    """Shape a translated request for Claude (see the module docstring); raises ``InvalidRequest``."""
    contents = out["contents"]
    if contents and contents[-1]["role"] == "model":
        raise InvalidRequest(
            "Claude models do not support assistant message prefill: the conversation must end with a user "
            "or tool message (tool output), not an assistant message.",
        )
    if "tools" in out:
        _fit_claude_tools(out)
    config = out.get("generationConfig", {})
    if "thinkingConfig" in config and _running_tool_turn_lacks_thinking(contents):
        del config["thinkingConfig"]  # Claude would answer 400 "must start with a thinking block"
    _fit_claude_tokens(config)
    if "thinkingConfig" not in config:
        for turn in contents:
            if turn["role"] == "model":
                turn["parts"] = [p for p in turn["parts"] if p.get("thought") is not True]
    if not config:
        out.pop("generationConfig", None)
    if "toolConfig" in out:  # added after contents: put the keys back in the translators' fixed order
        ordered = {key: out[key] for key in _KEY_ORDER if key in out}
        out.clear()
        out.update(ordered)


def _fit_claude_tools(out: dict[str, Any]) -> None:
    for tool in out["tools"]:
        for declaration in tool.get("functionDeclarations", ()):
            name = declaration["name"]
            if not _CLAUDE_TOOL_NAME.fullmatch(name):
                raise InvalidRequest(
                    f"Invalid tool name {name!r}: Claude models accept tool names of 1 to 64 letters, "
                    "digits, '_' and '-' only.",
                    param="tools",
                )
            if not declaration.get("parameters", {}).get("properties"):
                declaration["parameters"] = {**_PLACEHOLDER_SCHEMA, "required": [PLACEHOLDER]}
    calling = out.setdefault("toolConfig", {}).setdefault("functionCallingConfig", {})
    if calling.get("mode", "AUTO") == "AUTO":
        calling["mode"] = "VALIDATED"  # what Antigravity's Claude expects; it validates calls against schemas


def _running_tool_turn_lacks_thinking(contents: list[dict[str, Any]]) -> bool:
    """Claude's rule: with thinking on, the last model turn of the running tool loop (after the last user
    turn that is not only tool results) must start with a thinking block."""
    for turn in reversed(contents):
        if turn["role"] == "model":
            parts = turn["parts"]
            return any("functionCall" in p for p in parts) and parts[0].get("thought") is not True
        if any("functionResponse" not in p for p in turn["parts"]):
            return False
    return False


def _fit_claude_tokens(config: dict[str, Any]) -> None:
    limit = config.get("maxOutputTokens")
    thinking = config.get("thinkingConfig")
    budget = thinking.get("thinkingBudget") if thinking else None
    if limit is not None:
        limit = config["maxOutputTokens"] = min(limit, CLAUDE_MAX_OUTPUT_TOKENS)
    if thinking is None or budget is None:
        return
    if budget < CLAUDE_MIN_BUDGET:
        del config["thinkingConfig"]  # Claude's smallest budget; less means no thinking
        return
    if limit is None:
        config["maxOutputTokens"] = CLAUDE_MAX_OUTPUT_TOKENS  # room for the thinking and the answer
        return
    if budget >= limit:  # the client's limit counts the thinking too: the budget gives way
        budget = thinking["thinkingBudget"] = limit - 1
    if budget < CLAUDE_MIN_BUDGET:
        del config["thinkingConfig"]  # no room to think within the client's limit
