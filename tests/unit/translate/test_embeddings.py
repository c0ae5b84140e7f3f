"""translate/embeddings.py: /v1/embeddings ⇄ batchEmbedContents, floats and base64."""

from __future__ import annotations

import base64
import struct

import orjson
import pytest

from antigravity_gw.errors import UpstreamProtocolError
from antigravity_gw.openai_api.embeddings_models import parse_embedding_request
from antigravity_gw.translate.embeddings import embedding_request_to_gemini, gemini_to_embeddings


def request(**fields):
    return parse_embedding_request(orjson.dumps({"model": "emb", **fields}))


def test_each_text_is_one_request_of_the_batch():
    out = embedding_request_to_gemini(request(input=["a", "b"], dimensions=3), model="text-embedding-004")
    assert out == {"requests": [
        {"model": "models/text-embedding-004", "content": {"parts": [{"text": t}]}, "outputDimensionality": 3}
        for t in ("a", "b")]}


def test_floats_and_base64_little_endian_float32():
    answer = {"embeddings": [{"values": [0.5, -0.25]}]}
    assert gemini_to_embeddings(answer, req=request(input="a")) == {
        "object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.5, -0.25]}],
        "model": "emb", "usage": {"prompt_tokens": 0, "total_tokens": 0}}
    packed = gemini_to_embeddings(answer, req=request(input="a", encoding_format="base64"))
    packed = packed["data"][0]["embedding"]
    assert struct.unpack("<2f", base64.b64decode(packed)) == (0.5, -0.25)


def test_an_answer_that_does_not_fit_the_inputs_is_googles_fault():
    with pytest.raises(UpstreamProtocolError):
        gemini_to_embeddings({"embeddings": [{"values": [1.0]}]}, req=request(input=["a", "b"]))
    with pytest.raises(UpstreamProtocolError):
        gemini_to_embeddings({"embeddings": [{"values": "nope"}]}, req=request(input="a"))
