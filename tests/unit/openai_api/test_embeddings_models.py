"""openai_api/embeddings_models.py: what /v1/embeddings accepts, and the 400s naming the field."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.embeddings_models import MAX_INPUTS, parse_embedding_request


def parse(**fields: Any):
    return parse_embedding_request(orjson.dumps({"model": "text-embedding-004", **fields}))


def test_a_text_or_a_list_of_texts():
    assert parse(input="hi").texts == ["hi"]
    req = parse(input=["a", "b"], dimensions=256, encoding_format="base64")
    assert (req.texts, req.dimensions, req.encoding_format) == (["a", "b"], 256, "base64")


@pytest.mark.parametrize(("fields", "param"), [
    ({"input": [1, 2, 3]}, "input[0]"),
    ({"input": [[1, 2]]}, "input[0]"),
    ({"input": ["a", ""]}, "input[1]"),
    ({"input": ""}, "input"),
    ({"input": []}, "input"),
    ({"input": ["x"] * (MAX_INPUTS + 1)}, "input"),
    ({"input": "x", "dimensions": 0}, "dimensions"),
    ({"input": "x", "encoding_format": "int8"}, "encoding_format"),
    ({}, "input"),
])
def test_what_cannot_be_embedded_is_a_400_naming_the_field(fields, param):
    with pytest.raises(InvalidRequest) as e:
        parse(**fields)
    assert e.value.param == param
