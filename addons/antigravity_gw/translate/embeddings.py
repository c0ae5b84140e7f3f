"""``/v1/embeddings`` ⇄ Gemini ``batchEmbedContents`` (API-key accounts; Cloud Code has no such call).

Each text is one request of the batch (``outputDimensionality`` from ``dimensions``); the answer's
``embeddings[i].values`` become ``data[i].embedding``, as floats or, with ``encoding_format: base64``, as
the base64 of little-endian float32s (what the openai SDK decodes). Google reports no token count for
embeddings unless it sends ``usageMetadata``; without it usage is 0.
"""

from __future__ import annotations

import base64
import struct
from collections.abc import Mapping
from typing import Any

from ..errors import UpstreamProtocolError
from ..openai_api.embeddings_models import EmbeddingRequest


def embedding_request_to_gemini(req: EmbeddingRequest, *, model: str) -> dict[str, Any]:
    requests = []
    for text in req.texts:
        one: dict[str, Any] = {"model": f"models/{model}", "content": {"parts": [{"text": text}]}}
        if req.dimensions is not None:
            one["outputDimensionality"] = req.dimensions
        requests.append(one)
    return {"requests": requests}


def gemini_to_embeddings(response: Mapping[str, Any], *, req: EmbeddingRequest) -> dict[str, Any]:
    embeddings = response.get("embeddings")
    if not isinstance(embeddings, list) or len(embeddings) != len(req.texts):
        raise UpstreamProtocolError(
            "Google's batchEmbedContents answer does not hold one embedding per input.")
    data = []
    for i, embedding in enumerate(embeddings):
        values = embedding.get("values") if isinstance(embedding, dict) else None
        if not isinstance(values, list) or not all(isinstance(v, int | float) for v in values):
            raise UpstreamProtocolError(f"Google's embedding {i} has no list of numbers.")
        vector: Any = values
        if req.encoding_format == "base64":
            vector = base64.b64encode(struct.pack(f"<{len(values)}f", *values)).decode()
        data.append({"object": "embedding", "index": i, "embedding": vector})
    usage = response.get("usageMetadata")
    tokens = usage.get("promptTokenCount") if isinstance(usage, dict) else None
    tokens = tokens if isinstance(tokens, int) else 0
    return {"object": "list", "data": data, "model": req.model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
