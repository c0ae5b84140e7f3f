"""Validate what the gateway answers against OpenAI's own OpenAPI schemas (vendored in
tests/schemas/openai_responses.schema.json; its ``source`` says where from and which version).

``check(name, instance)`` validates against one component schema (``Response``, ``ResponseItemList``…);
``check_event(event)`` picks a stream event's schema by its ``type`` (the members of
``ResponseStreamEvent``), so a failure names the event schema, not a 60-way ``anyOf``. Both raise
``jsonschema.ValidationError``.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import orjson
from jsonschema import Draft202012Validator

SCHEMA_FILE = Path(__file__).resolve().parents[1] / "schemas" / "openai_responses.schema.json"


@functools.cache
def document() -> dict[str, Any]:
    return orjson.loads(SCHEMA_FILE.read_bytes())


@functools.cache
def validator(name: str) -> Draft202012Validator:
    doc = document()
    if name not in doc["components"]["schemas"]:
        raise KeyError(f"{name} is not vendored: add it to ROOTS in tests/schemas/extract_openai.py")
    return Draft202012Validator({"$ref": f"#/components/schemas/{name}", "components": doc["components"]})


@functools.cache
def event_schemas() -> dict[str, str]:
    """Stream event type → the name of its schema."""
    schemas = document()["components"]["schemas"]
    out: dict[str, str] = {}
    for member in schemas["ResponseStreamEvent"]["anyOf"]:
        name = member["$ref"].rsplit("/", 1)[1]
        enum = schemas[name].get("properties", {}).get("type", {}).get("enum", [])
        for event_type in enum:
            out[event_type] = name
    return out


def check(name: str, instance: Any) -> None:
    validator(name).validate(instance)


def check_event(event: dict[str, Any]) -> None:
    name = event_schemas().get(event.get("type", ""))
    if name is None:
        raise AssertionError(f"{event.get('type')!r} is not an event type of OpenAI's ResponseStreamEvent")
    check(name, event)


RESPONSE_ROUTES = (  # (method, path ending, schema of a 2xx JSON body)
    ("POST", "/responses/input_tokens", "TokenCountsResource"),
    ("POST", "/responses/compact", "CompactResource"),
    ("GET", "/input_items", "ResponseItemList"),
    ("POST", "/responses", "Response"),
    ("GET", "", "Response"),  # GET /v1/responses/{id}
    ("POST", "/embeddings", "CreateEmbeddingResponse"),
)


def check_exchange(method: str, path: str, status: int, content_type: str, body: bytes) -> int:
    """Validate one answer of the Responses API (or embeddings); returns how many objects were checked."""
    if status >= 300 or ("/responses" not in path and not path.endswith("/embeddings")):
        return 0
    name = next((schema for m, end, schema in RESPONSE_ROUTES if m == method and path.endswith(end)), None)
    if name is None:
        return 0
    if content_type.startswith("text/event-stream"):
        events = [orjson.loads(line[5:]) for line in body.decode().splitlines() if line.startswith("data:")]
        for event in events:
            check_event(event)
        return len(events)
    answer = orjson.loads(body)
    if name == "CreateEmbeddingResponse":  # the schema knows only float arrays, not encoding_format base64
        answer["data"] = [{**d, "embedding": []} if isinstance(d.get("embedding"), str) else d
                          for d in answer.get("data", [])]
    check(name, answer)
    return 1
