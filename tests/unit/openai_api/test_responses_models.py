"""parse_responses_request: what Codex and the openai SDK send parses; rejections are 400s naming fields."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.responses_models import (
    CustomTool,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    FunctionTool,
    HostedTool,
    InputText,
    MessageItem,
    NamespaceTool,
    ReasoningItem,
    WebSearchCallItem,
    WebSearchTool,
    parse_responses_request,
)


def body(**fields: Any) -> bytes:
    return orjson.dumps({"model": "gemini-2.5-flash", "input": "hi", **fields})


def rejected(raw: bytes) -> InvalidRequest:
    with pytest.raises(InvalidRequest) as info:
        parse_responses_request(raw)
    assert info.value.status == 400
    return info.value


CODEX_BODY: dict[str, Any] = {
    "model": "gemini-2.5-flash", "stream": True, "tool_choice": "auto", "parallel_tool_calls": True,
    "reasoning": {"effort": "medium", "summary": "auto"}, "store": False,
    "include": ["reasoning.encrypted_content"], "prompt_cache_key": "01a2-session",
    "client_metadata": {"thread_id": "01a2"},
    "input": [
        {"type": "message", "role": "developer", "content": [{"type": "input_text", "text": "rules"}]},
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "do it"}]},
        {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "t"}],
         "content": None,
         "encrypted_content": "gemini-thought-signature:abc"},
        {"type": "function_call", "status": "completed", "id": "fc_1", "name": "close_agent",
         "namespace": "multi_agent_v1", "arguments": "{}", "call_id": "call_a"},
        {"type": "custom_tool_call", "id": "ctc_1", "status": "completed", "call_id": "call_c",
         "name": "apply_patch", "input": "*** Begin Patch"},
        {"type": "function_call_output", "id": "fco_1", "call_id": "call_a", "output": "ok"},
        {"type": "custom_tool_call_output", "id": "ctco_1", "call_id": "call_c", "output": "Exit code: 0"},
        {"type": "web_search_call", "id": "ws_1", "status": "completed", "action": {"type": "search"}},
    ],
    "tools": [
        {"type": "function", "name": "exec_command", "description": "run", "strict": False,
         "parameters": {"type": "object", "properties": {}}},
        {"type": "custom", "name": "apply_patch", "description": "patch",
         "format": {"type": "grammar", "syntax": "lark", "definition": "start: x"}},
        {"type": "namespace", "name": "multi_agent_v1", "description": "agents",
         "tools": [{"type": "function", "name": "close_agent", "strict": False,
                    "parameters": {"type": "object"}}]},
        {"type": "web_search", "external_web_access": False},
        {"type": "image_generation", "output_format": "png"},
    ],
}


def test_a_codex_request_parses_to_typed_items_and_tools() -> None:
    req = parse_responses_request(orjson.dumps(CODEX_BODY))
    assert [type(i) for i in req.input] == [MessageItem, MessageItem, ReasoningItem, FunctionCallItem,
                                            CustomToolCallItem, FunctionCallOutputItem,
                                            CustomToolCallOutputItem, WebSearchCallItem]
    assert req.input[0] == MessageItem(role="developer", content=[InputText(type="input_text", text="rules")])
    assert req.input[3].namespace == "multi_agent_v1"
    assert [type(t) for t in req.tools] == [FunctionTool, CustomTool, NamespaceTool, WebSearchTool,
                                            HostedTool]
    assert req.tools[4].model_dump() == {"type": "image_generation", "output_format": "png"}
    assert (req.summary_mode, req.wants_encrypted_reasoning, req.prompt_cache_key) == ("auto", True,
                                                                                       "01a2-session")
    assert req.store is False and req.stream is True


def test_easy_messages_and_generate_summary() -> None:
    req = parse_responses_request(body(input=[{"role": "user", "content": "hi"}],
                                       reasoning={"generate_summary": "concise"}))
    assert req.input == [MessageItem(role="user", content="hi")]
    assert req.summary_mode == "concise"


@pytest.mark.parametrize(("fields", "param", "fragment"), [
    ({"input": [{"type": "wizard"}]}, "input[0].type", "Supported values are"),
    ({"input": [{"content": "x"}]}, "input[0].type", "Missing required parameter"),
    ({"input": [{"role": "tool", "content": "x"}]}, "input[0].role", "Supported values are"),
    ({"input": [{"type": "function_call", "name": "f", "arguments": "{}"}]}, "input[0].call_id", "Missing"),
    ({"input": 5}, "input", "a string or an array"),
    ({"temperature": 3}, "temperature", "<= 2"),
    ({"tools": [{"type": "function"}]}, "tools[0].name", "Missing"),
    ({"tools": [{"name": "f"}]}, "tools[0].type", "Missing"),
    ({"max_output_tokens": 0}, "max_output_tokens", ">= 1"),
    ({"background": True}, "background", "not supported"),
    ({"conversation": "conv_1"}, "conversation", "not supported"),
    ({"model": None}, "model", "Missing required parameter"),
])
def test_rejections_name_the_field(fields: dict[str, Any], param: str, fragment: str) -> None:
    err = rejected(body(**fields))
    assert err.param == param
    assert fragment in err.message


def test_invalid_json_names_the_responses_api() -> None:
    err = rejected(b"{oops")
    assert err.param is None
    assert "OpenAI Responses API" in err.message


def test_a_chained_request_may_omit_the_model() -> None:
    req = parse_responses_request(orjson.dumps({"previous_response_id": "resp_1", "input": "more"}))
    assert req.model is None and req.previous_response_id == "resp_1"


def test_unknown_fields_are_tolerated() -> None:
    req = parse_responses_request(body(service_tier="auto", truncation="auto", top_logprobs=0,
                                       safety_identifier="u", stream_options={"include_obfuscation": False},
                                       prompt_cache_retention="24h"))
    assert req.model == "gemini-2.5-flash"


HUGE = b"1" + b"0" * 30  # 10**30: beyond 64 bits


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"max_output_tokens": "N"}, "max_output_tokens"),
        ({"top_logprobs": "N"}, "top_logprobs"),
        ({"tools": [{"type": "function", "name": "f", "parameters": {"default": ["N"]}}]},
         "tools[0].parameters.default[0]"),
        ({"tools": [{"type": "file_search", "ranking": {"score_threshold": "N"}}]},
         "tools[0].ranking.score_threshold"),  # a hosted tool's fields are echoed back
        ({"text": {"format": {"type": "json_schema", "name": "x", "schema": {"maxItems": "N"}}}},
         "text.format.schema.maxItems"),
    ],
)
def test_numbers_out_of_range_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    err = rejected(body(**fields).replace(b'"N"', HUGE))
    assert err.param == param
    assert "out of range" in err.message or "expected a value" in err.message
