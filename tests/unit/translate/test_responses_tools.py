"""responses_tools_to_gemini: Responses tools and tool_choice → Gemini; Gemini names back to tools."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.responses_models import parse_responses_request
from antigravity_gw.translate.responses_tools import DeclaredTool, ToolPlan, responses_tools_to_gemini

FN = {"type": "function", "name": "exec_command", "description": "Run a command", "strict": False,
      "parameters": {"type": "object", "properties": {"cmd": {"type": "string"}}, "required": ["cmd"],
                     "additionalProperties": False}}
FN_DECL = {"name": "exec_command", "description": "Run a command",
           "parameters": {"type": "OBJECT", "properties": {"cmd": {"type": "STRING"}}, "required": ["cmd"]}}
GRAMMAR = 'start: begin_patch hunk+ end_patch\nbegin_patch: "*** Begin Patch" LF\n'
CUSTOM = {"type": "custom", "name": "apply_patch", "description": "Edit files. This is a FREEFORM tool.",
          "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR}}
NAMESPACE = {"type": "namespace", "name": "multi_agent_v1", "description": "Sub-agents",
             "tools": [{"type": "function", "name": "wait_agent", "parameters": {"type": "object",
                                                                                 "properties": {}}}]}
WEB = {"type": "web_search", "external_web_access": True}


def plan(tools: list[dict[str, Any]] | None, choice: Any = None) -> ToolPlan:
    body: dict[str, Any] = {"model": "m", "input": "x"}
    if tools is not None:
        body["tools"] = tools
    if choice is not None:
        body["tool_choice"] = choice
    req = parse_responses_request(orjson.dumps(body))
    return responses_tools_to_gemini(req.tools, req.tool_choice)


def test_codex_tools_are_flattened_and_mapped_back() -> None:
    p = plan([FN, CUSTOM, NAMESPACE, {"type": "web_search", "external_web_access": False},
              {"type": "file_search", "vector_store_ids": ["vs_1"]}], "auto")
    assert p.tools == [{"functionDeclarations": [
        FN_DECL,
        {"name": "apply_patch",
         "description": "Edit files. This is a FREEFORM tool.\n\nThis tool takes free-form text, not JSON: "
                        "put the tool's complete raw input, exactly as it should be read, into the string "
                        f"argument `input`.\n\nThe input must match this lark grammar:\n{GRAMMAR}",
         "parameters": {"type": "OBJECT",
                        "properties": {"input": {"type": "STRING",
                                                 "description": "The complete raw input of the tool."}},
                        "required": ["input"]}},
        {"name": "multi_agent_v1__wait_agent"},
    ]}]
    assert p.tool_config == {"functionCallingConfig": {"mode": "AUTO"}}
    assert p.names.lookup("apply_patch") == DeclaredTool("custom", "apply_patch")
    assert p.names.lookup("multi_agent_v1__wait_agent") == DeclaredTool("function", "wait_agent",
                                                                        "multi_agent_v1")
    assert p.names.lookup("exec_command") == DeclaredTool("function", "exec_command")
    assert p.names.lookup("undeclared") == DeclaredTool("function", "undeclared")


@pytest.mark.parametrize(("tools", "choice", "expected"), [
    ([WEB], None, [{"googleSearch": {}}]),
    ([{"type": "web_search_preview"}], "auto", [{"googleSearch": {}}]),
    ([WEB], "none", None),
    ([{"type": "web_search", "external_web_access": False}], None, None),
    ([WEB, FN], None, [{"functionDeclarations": [FN_DECL]}]),
    ([{"type": "code_interpreter", "container": {"type": "auto"}}], None, None),
    (None, None, None),
])
def test_web_search_is_google_search_only_alone_and_when_live_access_is_allowed(
    tools: list[dict[str, Any]] | None, choice: Any, expected: Any
) -> None:
    p = plan(tools, choice)
    assert p.tools == expected
    assert p.tool_config is None


@pytest.mark.parametrize(("choice", "expected"), [
    ("none", {"mode": "NONE"}),
    ("required", {"mode": "ANY"}),
    ({"type": "function", "name": "exec_command"}, {"mode": "ANY", "allowedFunctionNames": ["exec_command"]}),
    ({"type": "custom", "name": "apply_patch"}, {"mode": "ANY", "allowedFunctionNames": ["apply_patch"]}),
    ({"type": "function", "name": "wait_agent", "namespace": "multi_agent_v1"},
     {"mode": "ANY", "allowedFunctionNames": ["multi_agent_v1__wait_agent"]}),
])
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    assert plan([FN, CUSTOM, NAMESPACE], choice).tool_config == {"functionCallingConfig": expected}


def test_allowed_tools_restricts_the_declarations() -> None:
    p = plan([FN, CUSTOM, NAMESPACE],
             {"type": "allowed_tools", "mode": "required", "tools": [{"type": "custom",
                                                                      "name": "apply_patch"}]})
    assert [d["name"] for d in p.tools[0]["functionDeclarations"]] == ["apply_patch"]
    assert p.tool_config == {"functionCallingConfig": {"mode": "ANY"}}


def test_a_hosted_tool_choice_leaves_the_choice_to_the_model() -> None:
    assert plan([FN, WEB], {"type": "web_search_preview"}).tool_config is None


@pytest.mark.parametrize(("tools", "choice", "param"), [
    ([FN], {"type": "function", "name": "missing"}, "tool_choice.name"),
    ([FN], {"type": "custom", "name": "exec_command"}, "tool_choice.name"),
    ([WEB], "required", "tool_choice"),
    ([FN, FN], None, "tools[1].name"),
    ([FN, {**NAMESPACE, "tools": [], "name": "x"}, {"type": "function", "name": "x__y"},
      {**NAMESPACE, "name": "x", "tools": [{"type": "function",
                                            "name": "y"}]}], None, "tools[3].tools[0].name"),
    ([{"type": "function", "name": "f", "parameters": {"type": "string"}}], None, "tools[0].parameters"),
])
def test_tool_mistakes_are_400s_naming_the_field(tools: list[dict[str, Any]], choice: Any,
                                                 param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        plan(tools, choice)
    assert info.value.param == param
