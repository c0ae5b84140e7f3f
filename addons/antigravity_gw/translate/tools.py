"""OpenAI ``tools`` / ``tool_choice`` (and the legacy ``functions`` / ``function_call``) → Gemini
``tools[].functionDeclarations`` and ``toolConfig.functionCallingConfig``.

* Only ``name``, ``description`` and the cleaned ``parameters`` reach Gemini; ``strict`` has no Gemini
  equivalent (Gemini validates calls against the declaration anyway). A function whose parameters are an
  object without properties is declared without ``parameters`` (Gemini's "no arguments").
* ``tool_choice``: ``none`` → NONE, ``auto`` → AUTO, ``required`` → ANY, a named function → ANY with
  ``allowedFunctionNames: [name]``; absent → no ``toolConfig`` (Gemini's default is AUTO).
* ``parallel_tool_calls`` is accepted and ignored: Gemini has no switch for it, and a client that asked
  for ``false`` still handles several calls correctly, one after the other.
"""

from __future__ import annotations

from typing import Any

from ..errors import InvalidRequest
from ..openai_api.models import ChatCompletionRequest, FunctionDefinition, FunctionName, NamedToolChoice
from .schema import clean_schema_for_gemini

_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}


def tools_to_gemini(req: ChatCompletionRequest) -> list[dict[str, Any]] | None:
    """``[{"functionDeclarations": [...]}]`` or None when the request declares no functions."""
    declared = _declared_functions(req)
    if not declared:
        return None
    seen: set[str] = set()
    declarations = []
    for param, fn in declared:
        if fn.name in seen:
            raise InvalidRequest(f"Duplicate function name '{fn.name}' in '{param}'.", param=f"{param}.name")
        seen.add(fn.name)
        declarations.append(function_declaration(fn, param=param))
    return [{"functionDeclarations": declarations}]


def function_declaration(fn: FunctionDefinition, *, param: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": fn.name}
    if fn.description:
        out["description"] = fn.description
    if fn.parameters is None:
        return out
    try:
        parameters = clean_schema_for_gemini(fn.parameters)
    except ValueError as exc:
        raise InvalidRequest(
            f"Invalid schema in '{param}.parameters': {exc}.", param=f"{param}.parameters"
        ) from None
    if parameters["type"] != "OBJECT":
        raise InvalidRequest(
            f"Invalid schema in '{param}.parameters': function parameters must be an object schema.",
            param=f"{param}.parameters",
        )
    if "properties" in parameters:
        out["parameters"] = parameters
    return out


def tool_choice_to_gemini(req: ChatCompletionRequest) -> dict[str, Any] | None:
    """``{"functionCallingConfig": {...}}`` or None when the client left the choice to the model."""
    choice, param = _choice(req)
    names = [fn.name for _, fn in _declared_functions(req)]
    if choice is None or (choice in ("none", "auto") and not names):
        return None  # a mode without declarations means nothing to Gemini
    if isinstance(choice, str):
        if not names:
            raise InvalidRequest(
                f"Invalid '{param}': '{choice}' needs at least one tool in 'tools'.", param=param
            )
        return {"functionCallingConfig": {"mode": _MODES[choice]}}
    if choice.name not in names:
        raise InvalidRequest(
            f"Invalid '{param}.name': function '{choice.name}' is not declared in 'tools'.",
            param=f"{param}.name",
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [choice.name]}}


def _declared_functions(req: ChatCompletionRequest) -> list[tuple[str, FunctionDefinition]]:
    if req.tools:
        return [(f"tools[{i}].function", tool.function) for i, tool in enumerate(req.tools)]
    return [(f"functions[{i}]", fn) for i, fn in enumerate(req.functions or ())]


def _choice(req: ChatCompletionRequest) -> tuple[str | FunctionName | None, str]:
    if req.tool_choice is not None:
        choice = req.tool_choice
        if isinstance(choice, NamedToolChoice):
            return choice.function, "tool_choice.function"
        return choice, "tool_choice"
    if req.function_call is not None:
        return req.function_call, "function_call"
    return None, "tool_choice"
