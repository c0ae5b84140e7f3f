"""clean_schema_for_gemini on real-world schemas (pydantic, OpenAI strict, zod-style unions), edge cases."""

from __future__ import annotations

import copy
from enum import StrEnum
from typing import Any, Literal

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, Field

from antigravity_gw.translate.schema import MAX_DEPTH, clean_schema_for_gemini


class Priority(StrEnum):
    low = "low"
    high = "high"


class Address(BaseModel):
    street: str
    city: str | None = None


class Task(BaseModel):
    """A unit of work."""

    title: str = Field(description="Short title", min_length=1, max_length=80)
    priority: Priority = Priority.low
    due: str | None = Field(default=None, json_schema_extra={"format": "date-time"})
    tags: list[str] = []
    addresses: list[Address]
    home: Address | None = None
    mode: Literal["sync", "async"] = "sync"
    weight: float = Field(default=1.0, ge=0, le=10)


ADDRESS_OUT = {
    "type": "OBJECT",
    "properties": {"street": {"type": "STRING"}, "city": {"type": "STRING", "nullable": True}},
    "required": ["street"],
}


def test_pydantic_model_with_defs_optional_lists_and_enums() -> None:
    schema = Task.model_json_schema()
    assert "$defs" in schema  # the input really uses references
    assert clean_schema_for_gemini(schema) == {
        "type": "OBJECT",
        "description": "A unit of work.",
        "properties": {
            "title": {"type": "STRING", "description": "Short title (minLength: 1; maxLength: 80)"},
            "priority": {"type": "STRING", "description": "(default: low)", "enum": ["low", "high"]},
            "due": {"type": "STRING", "format": "date-time", "nullable": True},
            "tags": {"type": "ARRAY", "description": "(default: [])", "items": {"type": "STRING"}},
            "addresses": {"type": "ARRAY", "items": ADDRESS_OUT},
            "home": {**ADDRESS_OUT, "nullable": True},
            "mode": {"type": "STRING", "description": "(default: sync)", "enum": ["sync", "async"]},
            "weight": {"type": "NUMBER", "description": "(default: 1.0)", "minimum": 0, "maximum": 10},
        },
        "required": ["title", "addresses"],
    }


def test_openai_strict_schema_drops_additional_properties_and_keeps_required() -> None:
    strict = {
        "type": "object",
        "properties": {
            "location": {"type": "string", "description": "City and country"},
            "unit": {"type": ["string", "null"], "enum": ["celsius", "fahrenheit", None]},
            "days": {
                "type": "array",
                "items": {"type": "integer", "format": "int32"},
                "minItems": 1,
                "maxItems": 7,
            },
        },
        "required": ["location", "unit", "days"],
        "additionalProperties": False,
        "$schema": "http://json-schema.org/draft-07/schema#",
    }
    assert clean_schema_for_gemini(strict) == {
        "type": "OBJECT",
        "properties": {
            "location": {"type": "STRING", "description": "City and country"},
            "unit": {"type": "STRING", "nullable": True, "enum": ["celsius", "fahrenheit"]},
            "days": {
                "type": "ARRAY",
                "items": {"type": "INTEGER", "format": "int32"},
                "minItems": 1,
                "maxItems": 7,
            },
        },
        "required": ["location", "unit", "days"],
    }


class Node(BaseModel):
    name: str
    children: list[Node] = []


def test_recursive_model_is_cut_with_a_note() -> None:
    out = clean_schema_for_gemini(Node.model_json_schema())
    level2 = out["properties"]["children"]["items"]
    assert level2["properties"]["name"] == {"type": "STRING"}
    assert level2["properties"]["children"]["items"] == {
        "type": "OBJECT",
        "description": "(recursive reference to Node; deeper levels omitted)",
    }


def test_self_reference_to_root_is_cut() -> None:
    schema = {
        "type": "object",
        "description": "tree",
        "properties": {"kids": {"type": "array", "items": {"$ref": "#"}}},
    }
    out = clean_schema_for_gemini(schema)
    deepest = out["properties"]["kids"]["items"]["properties"]["kids"]["items"]["properties"]["kids"]["items"]
    assert deepest == {
        "type": "OBJECT",
        "description": "tree (recursive reference to the root schema; deeper levels omitted)",
    }


def test_all_of_merges_properties_and_required() -> None:
    schema = {
        "allOf": [
            {"$ref": "#/definitions/Base"},
            {"type": "object", "properties": {"extra": {"type": "boolean"}}, "required": ["extra"]},
        ],
        "description": "merged",
        "definitions": {
            "Base": {"type": "object", "properties": {"id": {"type": "integer"}}, "required": ["id"]}
        },
    }
    assert clean_schema_for_gemini(schema) == {
        "type": "OBJECT",
        "description": "merged",
        "properties": {"id": {"type": "INTEGER"}, "extra": {"type": "BOOLEAN"}},
        "required": ["id", "extra"],
    }


@pytest.mark.parametrize(
    ("schema", "expected"),
    [
        ({"anyOf": [{"type": "integer"}, {"type": "null"}]}, {"type": "INTEGER", "nullable": True}),
        (
            {"oneOf": [{"type": "null"}, {"type": "string", "description": "inner"}], "description": "outer"},
            {"type": "STRING", "description": "outer", "nullable": True},
        ),
        ({"anyOf": [{"const": "a"}, {"const": "b"}]}, {"type": "STRING", "enum": ["a", "b"]}),
        (
            {
                "anyOf": [
                    {"type": "string", "enum": ["a"]},
                    {"type": "string", "enum": ["b", "a"]},
                    {"type": "null"},
                ]
            },
            {"type": "STRING", "nullable": True, "enum": ["a", "b"]},
        ),
        (
            {"anyOf": [{"type": "string"}, {"type": "integer"}]},
            {"type": "STRING", "description": "(also accepts: integer)"},
        ),
        (
            {
                "anyOf": [
                    {"type": "string"},
                    {"type": "object", "title": "Spec", "properties": {"k": {"type": "string"}}},
                ]
            },
            {
                "type": "OBJECT",
                "description": "(also accepts: string)",
                "properties": {"k": {"type": "STRING"}},
            },
        ),
        (
            {"type": ["integer", "string", "null"]},
            {"type": "STRING", "description": "(also accepts: integer)", "nullable": True},
        ),
        ({"type": "null"}, {"type": "STRING", "nullable": True}),
        ({"const": "fixed"}, {"type": "STRING", "enum": ["fixed"]}),
        ({"enum": [1, 2, 3]}, {"type": "INTEGER", "description": "(allowed values: 1, 2, 3)"}),
        ({"type": "boolean", "const": True}, {"type": "BOOLEAN", "description": "(allowed values: true)"}),
        (
            {"type": "string", "format": "email", "pattern": "^.+@.+$"},
            {"type": "STRING", "description": "(format: email; pattern: ^.+@.+$)"},
        ),
        (
            {"type": "number", "format": "double", "exclusiveMinimum": 0, "multipleOf": 0.5},
            {"type": "NUMBER", "format": "double", "description": "(exclusiveMinimum: 0; multipleOf: 0.5)"},
        ),
        ({"type": "array"}, {"type": "ARRAY", "items": {"type": "STRING"}}),
        (
            {"type": "array", "prefixItems": [{"type": "number"}, {"type": "string"}]},
            {"type": "ARRAY", "items": {"type": "NUMBER"}},
        ),
        (
            {"type": "array", "items": {"type": "string"}, "uniqueItems": True},
            {"type": "ARRAY", "description": "(items must be unique)", "items": {"type": "STRING"}},
        ),
        ({"type": "object"}, {"type": "OBJECT"}),
        (
            {"type": "object", "additionalProperties": {"type": "integer"}},
            {"type": "OBJECT", "description": "(an object with arbitrary keys)"},
        ),
        ({}, {"type": "STRING"}),
        (
            {"properties": {"a": True, "b": False}, "required": ["a", "b", "c"]},
            {"type": "OBJECT", "properties": {"a": {"type": "STRING"}}, "required": ["a"]},
        ),
        (
            {"type": "string", "title": "T", "examples": ["x"], "default": None, "readOnly": True},
            {"type": "STRING"},
        ),
    ],
)
def test_node_rules(schema: dict[str, Any], expected: dict[str, Any]) -> None:
    assert clean_schema_for_gemini(schema) == expected


def test_siblings_of_a_ref_win_over_the_target() -> None:
    schema = {
        "type": "object",
        "properties": {"p": {"$ref": "#/$defs/P", "description": "the local one"}},
        "$defs": {"P": {"type": "string", "description": "the shared one"}},
    }
    assert clean_schema_for_gemini(schema)["properties"]["p"] == {
        "type": "STRING",
        "description": "the local one",
    }


def test_input_schema_is_not_modified() -> None:
    schema = Task.model_json_schema()
    before = copy.deepcopy(schema)
    clean_schema_for_gemini(schema)
    assert schema == before


@pytest.mark.parametrize(
    ("schema", "message"),
    [
        ({"$ref": "https://example.com/s.json"}, "cannot resolve '$ref': 'https://example.com/s.json'"),
        ({"$ref": "#/$defs/Missing"}, "cannot resolve '$ref': '#/$defs/Missing'"),
        ({"type": "file"}, "unsupported schema type 'file'"),
        ({"type": "object", "properties": {"a": 5}}, "expected a schema object, got 5"),
        ({"anyOf": {"type": "string"}}, "'anyOf' must be an array of schemas"),
    ],
)
def test_bad_schemas_raise_value_error(schema: dict[str, Any], message: str) -> None:
    with pytest.raises(
        ValueError, match="^" + message.replace("$", r"\$").replace("(", r"\(").replace(".", r"\.")
    ):
        clean_schema_for_gemini(schema)


def test_absurd_nesting_is_refused_instead_of_overflowing_the_stack() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(MAX_DEPTH + 5):
        schema = {"type": "array", "items": schema}
    with pytest.raises(ValueError, match="nests deeper than"):
        clean_schema_for_gemini(schema)


def test_deep_but_sane_nesting_is_fine() -> None:
    schema: dict[str, Any] = {"type": "string"}
    for _ in range(20):
        schema = {"type": "object", "properties": {"x": schema}}
    out = clean_schema_for_gemini(schema)
    for _ in range(20):
        out = out["properties"]["x"]
    assert out == {"type": "STRING"}


# --- hostile schemas: any JSON is cleaned or refused with a ValueError (the caller's 400), nothing else ----

_KEYS = st.sampled_from(["type", "properties", "required", "items", "prefixItems", "anyOf", "oneOf", "allOf",
                         "$ref", "enum", "const", "format", "description", "title", "default", "minimum",
                         "maximum", "minItems", "additionalProperties", "pattern", "$defs"])
_SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-3, 3),
                     st.floats(allow_nan=False, allow_infinity=False),
                     st.sampled_from(["object", "array", "string", "null", "integer", "#", "#/$defs/a", "x"]))
_SCHEMAS = st.recursive(_SCALARS, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.one_of(_KEYS, st.text(max_size=3)), inner, max_size=4)),
    max_leaves=15)


@settings(max_examples=800, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@given(_SCHEMAS)
def test_any_json_is_cleaned_or_refused_with_a_value_error(schema: Any) -> None:
    try:
        out = clean_schema_for_gemini(schema)
    except ValueError:
        return
    orjson.dumps(out)


def test_a_type_list_holding_a_non_string_is_refused() -> None:
    with pytest.raises(ValueError, match="'type'"):
        clean_schema_for_gemini({"type": [[]]})


def test_required_that_is_not_a_list_of_names_is_skipped() -> None:
    props = {"a": {"type": "string", "required": True}}  # draft 3
    assert "required" not in clean_schema_for_gemini({"type": "object", "properties": props, "required": 5})
    out = clean_schema_for_gemini({"type": "object", "properties": props, "required": [[], "a", {}]})
    assert out["required"] == ["a"]
    out = clean_schema_for_gemini({"allOf": [{"properties": props, "required": "a"}, {"required": [1, "a"]}]})
    assert out["required"] == ["a"]


def test_all_of_with_properties_that_are_not_an_object_is_refused() -> None:
    with pytest.raises(ValueError, match="'properties'"):
        clean_schema_for_gemini({"allOf": [{"properties": ["a"]}]})
