"""tools / tool_choice (and legacy functions / function_call) → functionDeclarations / toolConfig."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.models import ChatCompletionRequest, parse_chat_request
from antigravity_gw.translate.tools import tool_choice_to_gemini, tools_to_gemini

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
            "additionalProperties": False,
        },
        "strict": True,
    },
}
NOW = {"type": "function", "function": {"name": "now", "parameters": {"type": "object", "properties": {}}}}
PING = {"type": "function", "function": {"name": "ping"}}


def request(**fields: Any) -> ChatCompletionRequest:
    return parse_chat_request(
        orjson.dumps({"model": "m", "messages": [{"role": "user", "content": "x"}], **fields})
    )


def test_declarations_keep_name_description_and_cleaned_parameters() -> None:
    assert tools_to_gemini(request(tools=[WEATHER, NOW, PING])) == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                },
                {"name": "now"},  # an object without properties means "no arguments": no parameters at all
                {"name": "ping"},
            ]
        }
    ]


def test_no_tools_means_no_tools_key() -> None:
    assert tools_to_gemini(request()) is None
    assert tools_to_gemini(request(tools=[])) is None


def test_legacy_functions_are_declared_too() -> None:
    assert tools_to_gemini(request(functions=[WEATHER["function"]])) == [
        {
            "functionDeclarations": [
                {
                    "name": "get_weather",
                    "description": "Weather for a city",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {"city": {"type": "STRING"}},
                        "required": ["city"],
                    },
                }
            ]
        }
    ]


@pytest.mark.parametrize(
    ("tools", "message", "param"),
    [
        (
            [WEATHER, WEATHER],
            "Duplicate function name 'get_weather' in 'tools[1].function'.",
            "tools[1].function.name",
        ),
        (
            [
                {
                    "type": "function",
                    "function": {
                        "name": "f",
                        "parameters": {"type": "object", "properties": {"a": {"$ref": "#/nope"}}},
                    },
                }
            ],
            "Invalid schema in 'tools[0].function.parameters': cannot resolve '$ref': '#/nope'.",
            "tools[0].function.parameters",
        ),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            "Invalid schema in 'tools[0].function.parameters': function parameters must be an object schema.",
            "tools[0].function.parameters",
        ),
    ],
)
def test_bad_tools_are_400_with_param(tools: list[Any], message: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        tools_to_gemini(request(tools=tools))
    assert (info.value.message, info.value.param) == (message, param)


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("none", {"functionCallingConfig": {"mode": "NONE"}}),
        ("auto", {"functionCallingConfig": {"mode": "AUTO"}}),
        ("required", {"functionCallingConfig": {"mode": "ANY"}}),
        (
            {"type": "function", "function": {"name": "now"}},
            {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["now"]}},
        ),
    ],
)
def test_tool_choice_modes(choice: Any, expected: dict[str, Any]) -> None:
    assert tool_choice_to_gemini(request(tools=[WEATHER, NOW], tool_choice=choice)) == expected


def test_absent_tool_choice_leaves_the_default() -> None:
    assert tool_choice_to_gemini(request(tools=[WEATHER])) is None


@pytest.mark.parametrize("choice", ["none", "auto"])
def test_none_or_auto_without_tools_sends_no_config(choice: str) -> None:
    assert tool_choice_to_gemini(request(tool_choice=choice)) is None


def test_legacy_function_call_maps_like_tool_choice() -> None:
    functions = [WEATHER["function"]]
    assert tool_choice_to_gemini(request(functions=functions, function_call="none")) == {
        "functionCallingConfig": {"mode": "NONE"}
    }
    assert tool_choice_to_gemini(request(functions=functions, function_call={"name": "get_weather"})) == {
        "functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_weather"]}
    }


@pytest.mark.parametrize(
    ("fields", "message", "param"),
    [
        (
            {"tool_choice": "required"},
            "Invalid 'tool_choice': 'required' needs at least one tool in 'tools'.",
            "tool_choice",
        ),
        (
            {"tools": [WEATHER], "tool_choice": {"type": "function", "function": {"name": "nope"}}},
            "Invalid 'tool_choice.function.name': function 'nope' is not declared in 'tools'.",
            "tool_choice.function.name",
        ),
        (
            {"functions": [WEATHER["function"]], "function_call": {"name": "nope"}},
            "Invalid 'function_call.name': function 'nope' is not declared in 'tools'.",
            "function_call.name",
        ),
    ],
)
def test_impossible_choices_are_400(fields: dict[str, Any], message: str, param: str) -> None:
    with pytest.raises(InvalidRequest) as info:
        tool_choice_to_gemini(request(**fields))
    assert (info.value.message, info.value.param) == (message, param)


def test_parallel_tool_calls_is_accepted_and_changes_nothing() -> None:
    with_flag = request(tools=[WEATHER], tool_choice="auto", parallel_tool_calls=False)
    without = request(tools=[WEATHER], tool_choice="auto")
    assert tools_to_gemini(with_flag) == tools_to_gemini(without)
    assert tool_choice_to_gemini(with_flag) == tool_choice_to_gemini(without)
