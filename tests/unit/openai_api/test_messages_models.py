"""parse_messages_request: Anthropic Messages bodies validated into typed requests, failures named."""

from __future__ import annotations

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.messages_models import (
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    parse_messages_request,
)


def parse(body: dict, **kwargs) -> object:
    return parse_messages_request(orjson.dumps(body), **kwargs)


def test_a_claude_code_shaped_body_parses_with_unknown_fields_ignored() -> None:
    req = parse(
        {
            "model": "claude-sonnet-4-5",
            "max_tokens": 32000,
            "stream": True,
            "system": [
                {"type": "text", "text": "You are Claude Code.", "cache_control": {"type": "ephemeral"}}
            ],
            "messages": [
                {
                    "role": "user",
                    "content": [{"type": "text", "text": "hi", "cache_control": {"type": "ephemeral"}}],
                },
                {
                    "role": "assistant",
                    "content": [
                        {"type": "thinking", "thinking": "t", "signature": "s"},
                        {"type": "tool_use", "id": "toolu_1", "name": "Bash", "input": {"command": "ls"}},
                    ],
                },
                {
                    "role": "user",
                    "content": [
                        {
                            "type": "tool_result",
                            "tool_use_id": "toolu_1",
                            "content": [{"type": "text", "text": "a.txt"}],
                            "is_error": False,
                        }
                    ],
                },
            ],
            "tools": [{"name": "Bash", "input_schema": {"type": "object"}}],
            "metadata": {"user_id": "user_abc_session_1"},
            "thinking": {"type": "enabled", "budget_tokens": 4000},
            "context_management": {"edits": []},
            "anthropic_beta": ["x"],
        }
    )
    assert req.metadata.user_id == "user_abc_session_1"
    assert isinstance(req.messages[1].content[0], ThinkingBlock)
    assert isinstance(req.messages[1].content[1], ToolUseBlock)
    assert isinstance(req.messages[2].content[0], ToolResultBlock)


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "m", "messages": [{"role": "user", "content": "x"}]}, "max_tokens"),
        ({"model": "m", "max_tokens": 0, "messages": []}, "max_tokens"),
        ({"max_tokens": 1, "messages": []}, "model"),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "tool", "content": "x"}]},
            "messages[0].role",
        ),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": 3}]},
            "messages[0].content",
        ),
        (
            {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [{"type": "x"}]}]},
            "messages[0].content[0].type",
        ),
        (
            {"model": "m", "max_tokens": 1, "messages": [], "tool_choice": {"type": "tool"}},
            "tool_choice.name",
        ),
        ({"model": "m", "max_tokens": 1, "messages": [], "thinking": {"type": "sometimes"}}, "thinking.type"),
    ],
)
def test_bad_bodies_name_the_field(body: dict, param: str) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse(body)
    assert e.value.param == param


def test_count_tokens_bodies_need_no_max_tokens() -> None:
    assert (
        parse({"model": "m", "messages": [{"role": "user", "content": "x"}]}, counting=True).max_tokens
        is None
    )
