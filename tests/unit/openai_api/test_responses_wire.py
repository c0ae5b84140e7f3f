"""response_echo / response_object: the request settings a response repeats, valid for the SDK's model."""

from __future__ import annotations

import orjson
from openai.types.responses import Response

from antigravity_gw.openai_api.responses_models import parse_responses_request
from antigravity_gw.openai_api.responses_wire import response_echo, response_object

TOOLS = [
    {"type": "function", "name": "f", "description": "d", "parameters": {"type": "object"}, "strict": None},
    {"type": "custom", "name": "apply_patch",
     "format": {"type": "grammar", "syntax": "lark", "definition": "s"}},
    {"type": "file_search", "vector_store_ids": ["vs_1"]},
]


def test_the_echo_repeats_what_the_client_set_and_fills_defaults() -> None:
    req = parse_responses_request(orjson.dumps({
        "model": "gpt-4o", "input": "x", "instructions": "be kind", "max_output_tokens": 50,
        "parallel_tool_calls": False, "previous_response_id": "resp_0", "prompt_cache_key": "k",
        "reasoning": {"effort": "low", "summary": "auto"}, "store": False, "temperature": 0.3, "top_p": 0.5,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"},
                            "strict": True}},
        "tool_choice": {"type": "function", "name": "f"}, "tools": TOOLS, "user": "u", "metadata": {"a": "b"},
    }))
    assert response_echo(req, "gemini-2.5-pro") == {
        "instructions": "be kind", "max_output_tokens": 50, "model": "gemini-2.5-pro",
        "parallel_tool_calls": False, "previous_response_id": "resp_0", "prompt_cache_key": "k",
        "reasoning": {"effort": "low", "summary": "auto"}, "store": False, "temperature": 0.3,
        "text": {"format": {"type": "json_schema", "name": "s", "schema": {"type": "object"},
                            "strict": True}},
        "tool_choice": {"type": "function", "name": "f"}, "tools": TOOLS, "top_p": 0.5,
        "truncation": "disabled", "user": "u", "metadata": {"a": "b"},
    }


def test_a_response_object_validates_against_the_sdk() -> None:
    req = parse_responses_request(orjson.dumps({"model": "m", "input": "x", "tools": TOOLS}))
    body = response_object(response_id="resp_1", created_at=1, status="completed",
                           echo=response_echo(req, "m"), output=[], usage=None)
    assert Response.model_validate(body).tools[2].type == "file_search"
    assert list(body)[:6] == ["id", "object", "created_at", "status", "background", "error"]


def test_function_tools_are_echoed_with_strict_and_parameters_even_when_the_client_left_them_out() -> None:
    req = parse_responses_request(orjson.dumps({"model": "m", "input": "x", "tools": [
        {"type": "function", "name": "f"},
        {"type": "function", "name": "g", "strict": True, "parameters": {"type": "object"}},
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "h"}]}]}))
    assert response_echo(req, "m")["tools"] == [
        {"type": "function", "name": "f", "strict": None, "parameters": None},
        {"type": "function", "name": "g", "strict": True, "parameters": {"type": "object"}},
        {"type": "namespace", "name": "ns", "tools": [{"type": "function", "name": "h", "strict": None,
                                                       "parameters": None}]},
    ]


def test_null_fields_openais_schema_forbids_are_left_out() -> None:
    req = parse_responses_request(orjson.dumps({"model": "m", "input": "x"}))
    body = response_object(response_id="resp_1", created_at=1, status="in_progress",
                           echo=response_echo(req, "m"), output=[], usage=None)
    assert not {"usage", "user", "prompt_cache_key"} & set(body)
