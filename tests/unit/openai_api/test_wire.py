"""The outbound chat shapes are what the openai SDK reads, key for key."""

from __future__ import annotations

from openai.types.chat import ChatCompletion, ChatCompletionChunk

from antigravity_gw.openai_api.wire import (
    ChatUsage,
    chat_completion,
    chunk,
    chunk_choice,
    chunk_header,
    tool_call_delta,
)

USAGE: ChatUsage = {"prompt_tokens": 3, "completion_tokens": 5, "total_tokens": 8,
                    "prompt_tokens_details": {"cached_tokens": 1},
                    "completion_tokens_details": {"reasoning_tokens": 2}}


def test_chunks_parse_as_the_sdks_chunks():
    header = chunk_header("chatcmpl-1", 1700000000, "gemini-2.5-flash")
    text = chunk(header, chunk_choice(0, {"role": "assistant", "content": "Hi"}), include_usage=True)
    call = chunk(header, chunk_choice(0, {"tool_calls": [tool_call_delta(0, "call_1", "f", "{}")]},
                                      "tool_calls"), include_usage=False)
    final = chunk(header, None, include_usage=True, usage=USAGE)
    assert list(text) == ["id", "object", "created", "model", "choices", "usage"]  # OpenAI's key order
    assert ChatCompletionChunk.model_validate(text).choices[0].delta.content == "Hi"
    parsed_call = ChatCompletionChunk.model_validate(call).choices[0]
    assert parsed_call.finish_reason == "tool_calls" and "usage" not in call
    assert parsed_call.delta.tool_calls[0].function.name == "f"
    parsed_final = ChatCompletionChunk.model_validate(final)
    assert parsed_final.choices == [] and parsed_final.usage.completion_tokens_details.reasoning_tokens == 2


def test_a_completion_parses_as_the_sdks_completion():
    choice = {"index": 0, "message": {"role": "assistant", "content": "Hello", "refusal": None},
              "logprobs": None, "finish_reason": "stop"}
    body = chat_completion("chatcmpl-2", 1700000000, "gemini-2.5-pro", [choice], USAGE)
    parsed = ChatCompletion.model_validate(body)
    assert (parsed.object, parsed.choices[0].message.content, parsed.usage.total_tokens) == (
        "chat.completion", "Hello", 8)
