"""translate/gemini_events.py: the checks both stream translators make on Gemini's events (the walk itself
is tested through them, in test_chat_stream.py and test_responses_stream.py)."""

from typing import Any

import pytest

from antigravity_gw.translate.gemini_events import (
    FunctionCall,
    as_list,
    as_object,
    candidate_index,
    candidate_parts,
    function_call,
    part_signature,
    part_text,
)


def test_absent_objects_and_arrays_read_as_empty_and_wrong_types_are_malformed() -> None:
    assert (as_object(None, "x"), as_list(None, "x")) == ({}, [])
    with pytest.raises(ValueError, match=r"^usageMetadata is not an object$"):
        as_object([], "usageMetadata")
    with pytest.raises(ValueError, match=r"^candidates is not an array$"):
        as_list({}, "candidates")


@pytest.mark.parametrize("index", [True, -1, 1.0, "0"])
def test_a_candidate_index_must_be_a_non_negative_integer(index: Any) -> None:
    assert candidate_index({}) == 0
    with pytest.raises(ValueError, match="is not a non-negative integer"):
        candidate_index({"index": index})


def test_parts_before_a_malformed_one_are_still_read() -> None:
    parts = candidate_parts({"content": {"parts": [{"text": "a"}, "oops"]}})
    assert next(parts) == {"text": "a"}
    with pytest.raises(ValueError, match=r"^part is not an object$"):
        next(parts)


def test_a_signature_is_read_under_either_spelling() -> None:
    assert part_signature({"thoughtSignature": "s1"}) == "s1"
    assert part_signature({"thought_signature": "s2"}) == "s2"
    assert part_signature({"text": "x"}) is None
    with pytest.raises(ValueError, match="thoughtSignature is not a string"):
        part_signature({"thoughtSignature": 7})


def test_function_calls_are_checked() -> None:
    assert function_call({"name": "f", "id": "c1"}) == FunctionCall("f", {}, "c1")
    for bad, words in [({"args": {}}, "has no name"), ({"name": "f", "args": [1]}, "not an object"),
                       ({"name": "f", "id": 3}, "id that is not a string")]:
        with pytest.raises(ValueError, match=words):
            function_call(bad)


@pytest.mark.parametrize(("part", "text"), [
    ({"text": ""}, ""),
    ({"text": "hi", "thought": True}, "hi"),
    ({"inlineData": {"mimeType": "image/png", "data": "AAAA"}}, "![image](data:image/png;base64,AAAA)"),
    ({"executableCode": {"language": "PYTHON", "code": "print(1)"}}, "\n```python\nprint(1)\n```\n"),
    ({"codeExecutionResult": {"output": "1"}}, "\n```\n1\n```\n"),
    ({"thoughtSignature": "s"}, None),
])
def test_part_text(part: dict[str, Any], text: str | None) -> None:
    assert part_text(part) == text
