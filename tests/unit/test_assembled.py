"""assembled.py: streamed answers put together for mitmweb's content views."""

from __future__ import annotations

from pathlib import Path

import orjson

from antigravity_gw import assembled

TRANSCRIPTS = Path(__file__).resolve().parents[1] / "transcripts"


def sse(*events: object, done: bool = True) -> bytes:
    out = b"".join(b"data: " + orjson.dumps(e) + b"\n\n" for e in events)
    return out + (b"data: [DONE]\n\n" if done else b"")


def chunk(delta: dict, finish: str | None = None, **extra: object) -> dict:
    return {"object": "chat.completion.chunk", "model": "gpt-4o",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], **extra}


def test_a_chat_stream_becomes_its_text_reasoning_tool_calls_and_usage():
    data = sse(chunk({"role": "assistant", "reasoning_content": "Let me "}),
               chunk({"reasoning_content": "think."}),
               chunk({"content": "Hello, "}), chunk({"content": "world"}),
               chunk({"tool_calls": [{"index": 0, "id": "call_1", "type": "function",
                                      "function": {"name": "get_weather", "arguments": '{"city":'}}]}),
               chunk({"tool_calls": [{"index": 0, "function": {"arguments": '"Paris"}'}}]}, "tool_calls"),
               {"object": "chat.completion.chunk", "model": "gpt-4o", "choices": [],
                "usage": {"prompt_tokens": 7, "completion_tokens": 5, "total_tokens": 12}})
    got = assembled.openai_stream(data)
    assert (got.kind, got.model, got.text, got.reasoning) == ("chat.completions", "gpt-4o", "Hello, world",
                                                              "Let me think.")
    assert [(c.name, c.call_id, c.arguments) for c in got.tool_calls] == [("get_weather", "call_1",
                                                                           '{"city":"Paris"}')]
    assert got.finish == "tool_calls" and got.usage["total_tokens"] == 12 and not got.error
    shown = got.render()
    assert "── text ──\nHello, world" in shown and "── tool call get_weather (call_1) ──" in shown
    assert '"city": "Paris"' in shown and "total_tokens=12" in shown


def test_a_chat_stream_that_ended_with_an_error_says_so():
    data = sse(chunk({"content": "Hel"}), {"error": {"message": "The upstream stream broke off.",
                                                     "type": "upstream_error", "code": "upstream_error"}},
               done=False)
    got = assembled.openai_stream(data)
    assert got.text == "Hel" and got.error == "upstream_error: The upstream stream broke off."
    expected = "⚠ ended with an error: upstream_error: The upstream stream broke off."
    assert got.render().splitlines()[1] == expected


def test_a_responses_stream_becomes_its_text_reasoning_calls_and_usage():
    events = [
        ("response.created", {"response": {"model": "gpt-5", "status": "in_progress"}}),
        ("response.reasoning_summary_text.delta", {"delta": "Thinking"}),
        ("response.output_text.delta", {"delta": "Bonjour"}),
        ("response.output_text.delta", {"delta": " !"}),
        ("response.output_item.added", {"output_index": 2, "item": {"type": "function_call", "name": "shell",
                                                                    "call_id": "call_9"}}),
        ("response.function_call_arguments.delta", {"output_index": 2, "delta": '{"cmd":"ls"}'}),
        ("response.completed", {"response": {"model": "gpt-5", "status": "completed",
                                             "usage": {"input_tokens": 3, "output_tokens": 4}}}),
    ]
    data = b"".join(b"event: " + n.encode() + b"\ndata: " + orjson.dumps({"type": n, **e}) + b"\n\n"
                    for n, e in events)
    got = assembled.openai_stream(data)
    assert (got.kind, got.model, got.text, got.reasoning, got.finish) == ("responses", "gpt-5", "Bonjour !",
                                                                         "Thinking", "completed")
    assert [(c.name, c.call_id, c.arguments) for c in got.tool_calls] == [("shell", "call_9", '{"cmd":"ls"}')]
    assert got.usage == {"input_tokens": 3, "output_tokens": 4}


def test_a_failed_responses_stream_names_its_error():
    data = sse({"type": "response.output_text.delta", "delta": "x"},
               {"type": "response.failed", "response": {"status": "failed",
                                                        "error": {"code": "server_error", "message": "cut"}}},
               done=False)
    got = assembled.openai_stream(data)
    assert got.error == "server_error: cut" and got.finish == "failed"


def test_a_gemini_stream_transcript_becomes_text_thoughts_and_usage():
    got = assembled.gemini_stream((TRANSCRIPTS / "chat_text_thoughts.gemini.sse").read_bytes())
    assert got.text == "Bonjour, le monde 🌍" and got.reasoning == "Vérifions la question…"
    assert got.finish == "STOP" and got.usage["totalTokenCount"] == 38 and got.model == "gemini-2.5-flash"


def test_a_gemini_stream_with_tool_calls_lists_them():
    got = assembled.gemini_stream((TRANSCRIPTS / "chat_tool_calls.gemini.sse").read_bytes())
    assert got.tool_calls and all(c.name for c in got.tool_calls)


def test_a_gemini_error_event_is_the_stream_error():
    got = assembled.gemini_stream((TRANSCRIPTS / "chat_error_midstream.gemini.sse").read_bytes())
    assert got.error


def test_garbage_is_counted_not_raised():
    got = assembled.openai_stream(b"data: {not json\n\ndata: [1,2]\n\n")
    assert (got.events, got.unreadable) == (2, 2)
    assert "2 unreadable event(s) skipped" in got.render()


def test_a_gemini_request_reads_as_turns_tools_and_config():
    body = {"model": "gemini-2.5-flash", "project": "p1", "request": {
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "contents": [{"role": "user", "parts": [{"text": "Weather?"}]},
                     {"role": "model", "parts": [{"functionCall": {"name": "get_weather",
                                                                   "args": {"city": "Paris"}}}]},
                     {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                                                                       "response": {"temp": 21}}}]}],
        "tools": [{"functionDeclarations": [{"name": "get_weather"}]}],
        "generationConfig": {"temperature": 0.2}}}
    shown = assembled.gemini_request(body)
    assert shown.startswith("model: gemini-2.5-flash   project: p1")
    assert "── system ──\nBe brief." in shown and "── user ──\nWeather?" in shown
    assert '→ call get_weather({"city":"Paris"})' in shown and '← result of get_weather: {"temp":21}' in shown
    assert "tools: get_weather" in shown and 'generationConfig: {"temperature":0.2}' in shown


def test_an_anthropic_messages_stream_becomes_its_text_thinking_tool_use_and_usage():
    from antigravity_gw.errors import UpstreamError
    from antigravity_gw.sse import encode_event
    from antigravity_gw.translate.messages_stream import GeminiToMessagesStream

    translator = GeminiToMessagesStream(message_id="msg_1", model="claude-x", id_factory=lambda: "t1",
                                        family="c")
    events = translator.feed({"candidates": [{"content": {"parts": [
        {"text": "Let me look.", "thought": True, "thoughtSignature": "sig"}, {"text": "Running it."},
        {"functionCall": {"name": "bash", "args": {"command": "ls"}}}]}, "finishReason": "STOP"}],
        "usageMetadata": {"promptTokenCount": 7, "candidatesTokenCount": 3}})
    events += translator.finish()
    got = assembled.openai_stream(b"".join(encode_event(e["type"], e) for e in events))
    assert (got.kind, got.model, got.text, got.reasoning, got.finish) == (
        "messages", "claude-x", "Running it.", "Let me look.", "tool_use")
    calls = [(c.name, c.call_id, c.arguments) for c in got.tool_calls]
    assert calls == [("bash", "call_t1", '{"command":"ls"}')]
    assert got.usage["output_tokens"] == 3 and got.unreadable == 0

    failed = GeminiToMessagesStream(message_id="msg_2", model="claude-x", id_factory=lambda: "t2")
    events = failed.feed({"candidates": [{"content": {"parts": [{"text": "cut"}]}}]})
    events += failed.abort(UpstreamError("Google broke off"))
    got = assembled.openai_stream(b"".join(encode_event(e["type"], e) for e in events))
    assert got.kind == "messages" and got.text == "cut" and got.error == "api_error: Google broke off"
