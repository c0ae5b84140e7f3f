"""Responses ``tools`` / ``tool_choice`` → Gemini ``tools`` and ``toolConfig``; Gemini call names back.

* ``function`` → a function declaration (``tools.function_declaration``: cleaned schema).
* ``namespace`` → its member tools, flattened. Gemini has one flat name space, so a member is declared
  as ``<namespace>__<name>``; a call of that name comes back as ``name`` plus ``namespace``, which is
  what Codex routes on (tested with Codex 0.169: a qualified name is "unsupported call").
* ``custom`` (freeform, e.g. Codex's ``apply_patch``) → a function with one required string argument
  ``input``; the description tells the model to put the raw text there and quotes the tool's grammar.
  A call comes back as a ``custom_tool_call`` whose ``input`` is that string.
* ``web_search*`` → ``{"googleSearch": {}}``, but only when no function is declared (Gemini rejects
  Google Search mixed with function declarations on several models) and the client did not forbid live
  access (``external_web_access: false``, Codex's "cached" mode). Otherwise it is left out.
* Other hosted tools (file search, code interpreter, MCP…) are left out: Gemini cannot run them.
* ``tool_choice``: ``none`` / ``auto`` / ``required`` → NONE / AUTO / ANY; ``{"type": "function" |
  "custom", "name"}`` → ANY limited to that function; ``allowed_tools`` → only the listed tools are
  declared, with AUTO or ANY; a hosted tool type leaves the choice to the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from ..errors import InvalidRequest
from ..openai_api.models import FunctionDefinition
from ..openai_api.responses_models import (
    CustomTool,
    FunctionTool,
    GrammarToolFormat,
    NamespaceTool,
    ResponsesTool,
    ToolChoice,
    ToolChoiceObject,
    WebSearchTool,
)
from .tools import function_declaration

NAMESPACE_SEPARATOR = "__"
_MODES = {"none": "NONE", "auto": "AUTO", "required": "ANY"}
_CUSTOM_INPUT_SCHEMA = {
    "type": "OBJECT",
    "properties": {"input": {"type": "STRING", "description": "The complete raw input of the tool."}},
    "required": ["input"],
}


@dataclass(frozen=True, slots=True)
class DeclaredTool:
    """A tool as the client knows it: its kind, its own name and its namespace."""

    kind: Literal["function", "custom"]
    name: str
    namespace: str | None = None


@dataclass(frozen=True, slots=True)
class ToolNames:
    """Gemini function names ↔ the client's tools. Unknown names are plain functions."""

    by_gemini_name: Mapping[str, DeclaredTool] = field(default_factory=dict)

    def lookup(self, gemini_name: str) -> DeclaredTool:
        return self.by_gemini_name.get(gemini_name) or DeclaredTool("function", gemini_name)


def gemini_name(name: str, namespace: str | None) -> str:
    return f"{namespace}{NAMESPACE_SEPARATOR}{name}" if namespace else name


@dataclass(frozen=True, slots=True)
class ToolPlan:
    tools: list[dict[str, Any]] | None
    tool_config: dict[str, Any] | None
    names: ToolNames


@dataclass(frozen=True, slots=True)
class _Declaration:
    param: str
    tool: DeclaredTool
    body: dict[str, Any]


def responses_tools_to_gemini(tools: Sequence[ResponsesTool] | None, choice: ToolChoice | None) -> ToolPlan:
    declarations, web_search = _declarations(tools or ())
    declarations = _restrict(declarations, choice)
    tool_config = _tool_config(choice, declarations)
    gemini_tools: list[dict[str, Any]] = []
    if declarations:
        gemini_tools.append({"functionDeclarations": [d.body for d in declarations]})
    elif web_search and choice != "none":
        gemini_tools.append({"googleSearch": {}})
    names = ToolNames({gemini_name(d.tool.name, d.tool.namespace): d.tool for d in declarations})
    return ToolPlan(gemini_tools or None, tool_config, names)


def _declarations(tools: Sequence[ResponsesTool]) -> tuple[list[_Declaration], bool]:
    found: list[_Declaration] = []
    web_search = False
    for i, tool in enumerate(tools):
        param = f"tools[{i}]"
        if isinstance(tool, FunctionTool | CustomTool):
            found.append(_declare(tool, None, param))
        elif isinstance(tool, NamespaceTool):
            found += [_declare(m, tool.name, f"{param}.tools[{j}]") for j, m in enumerate(tool.tools)]
        elif isinstance(tool, WebSearchTool):
            web_search = web_search or tool.external_web_access is not False
    seen: set[str] = set()
    for d in found:
        if d.body["name"] in seen:
            raise InvalidRequest(
                f"Duplicate tool name '{d.body['name']}' in '{d.param}'.", param=f"{d.param}.name"
            )
        seen.add(d.body["name"])
    return found, web_search


def _declare(tool: FunctionTool | CustomTool, namespace: str | None, param: str) -> _Declaration:
    name = gemini_name(tool.name, namespace)
    if isinstance(tool, CustomTool):
        description = custom_tool_description(tool)
        body = {"name": name, "description": description, "parameters": _CUSTOM_INPUT_SCHEMA}
        return _Declaration(param, DeclaredTool("custom", tool.name, namespace), body)
    fn = FunctionDefinition.model_construct(
        name=name, description=tool.description, parameters=tool.parameters
    )
    body = function_declaration(fn, param=param)
    return _Declaration(param, DeclaredTool("function", tool.name, namespace), body)


def custom_tool_description(tool: CustomTool) -> str:
    lines = [tool.description or f"The {tool.name} tool."]
    lines.append(
        "This tool takes free-form text, not JSON: put the tool's complete raw input, exactly as it should "
        "be read, into the string argument `input`."
    )
    if isinstance(tool.format, GrammarToolFormat):
        lines.append(f"The input must match this {tool.format.syntax} grammar:\n{tool.format.definition}")
    return "\n\n".join(lines)


def _restrict(declarations: list[_Declaration], choice: ToolChoice | None) -> list[_Declaration]:
    """``allowed_tools``: only the listed tools are declared (Gemini restricts names only with ANY)."""
    if not isinstance(choice, ToolChoiceObject) or choice.type != "allowed_tools":
        return declarations
    allowed = {t.name for t in choice.tools or () if t.name}
    return [d for d in declarations if d.tool.name in allowed]


def _tool_config(choice: ToolChoice | None, declarations: list[_Declaration]) -> dict[str, Any] | None:
    if choice is None:
        return None
    if isinstance(choice, str):
        return _mode(choice, declarations, "tool_choice")
    if choice.type == "allowed_tools":
        return _mode(choice.mode or "auto", declarations, "tool_choice.mode")
    if choice.type not in ("function", "custom"):
        return None  # a hosted tool: nothing to force on Gemini's side
    wanted = gemini_name(choice.name or "", choice.namespace)
    if not any(d.body["name"] == wanted and d.tool.kind == choice.type for d in declarations):
        raise InvalidRequest(
            f"Invalid 'tool_choice.name': {choice.type} tool '{choice.name}' is not declared in 'tools'.",
            param="tool_choice.name",
        )
    return {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": [wanted]}}


def _mode(mode: str, declarations: list[_Declaration], param: str) -> dict[str, Any] | None:
    if not declarations:
        if mode == "required":
            raise InvalidRequest(
                f"Invalid '{param}': 'required' needs at least one function or custom tool in 'tools'.",
                param=param,
            )
        return None  # a mode without declarations means nothing to Gemini
    return {"functionCallingConfig": {"mode": _MODES[mode]}}
