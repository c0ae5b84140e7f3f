"""Inbound ``/v1/embeddings`` bodies, validated once at the door (the rules of ``models.py``).

``input`` is one text or a list of texts (Gemini's ``batchEmbedContents`` takes up to 100 at once, so
more are refused); token-id inputs (lists of integers) cannot be honoured by a Gemini model and are a
400 naming the field. ``dimensions`` becomes ``outputDimensionality``; ``encoding_format`` ``base64``
is little-endian float32, as OpenAI's.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, ValidationError

from ..errors import InvalidRequest
from .models import INT32_MAX, ModelName, _Model, validation_error_to_invalid_request

MAX_INPUTS = 100  # batchEmbedContents' limit


class EmbeddingRequest(_Model):
    model: ModelName
    input: Any
    dimensions: int | None = Field(default=None, ge=1, le=INT32_MAX)
    encoding_format: Literal["float", "base64"] | None = None
    user: str | None = None

    @property
    def texts(self) -> list[str]:
        """The inputs, after ``parse_embedding_request`` checked they are texts."""
        return [self.input] if isinstance(self.input, str) else list(self.input)


def parse_embedding_request(body: bytes) -> EmbeddingRequest:
    try:
        req = EmbeddingRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error_to_invalid_request(exc, api="embeddings") from None
    value = req.input
    if isinstance(value, str):
        if not value:
            raise InvalidRequest("Invalid 'input': the text to embed is empty.", param="input")
        return req
    if not isinstance(value, list) or not value:
        raise InvalidRequest("Invalid 'input': give a string or a non-empty list of strings.", param="input")
    for i, text in enumerate(value):
        if isinstance(text, int | list):
            raise InvalidRequest(
                "Invalid 'input': token ids cannot be embedded by a Gemini model; send the text itself.",
                param=f"input[{i}]")
        if not isinstance(text, str) or not text:
            raise InvalidRequest(f"Invalid 'input[{i}]': expected a non-empty string.", param=f"input[{i}]")
    if len(value) > MAX_INPUTS:
        raise InvalidRequest(f"Invalid 'input': at most {MAX_INPUTS} texts per request (Gemini's batch "
                             "limit), "
                             f"got {len(value)}.", param="input")
    return req
