"""JSON Schema (as OpenAI clients write it) → the OpenAPI-subset ``Schema`` Gemini accepts.

Gemini's ``Schema`` (function ``parameters`` and ``responseSchema``) is a select subset of OpenAPI 3.0,
and what Cloud Code forwards unchanged is not documented, so the output keeps a conservative list:
``type`` (upper case), ``format`` (STRING: enum/date-time; INTEGER: int32/int64; NUMBER: float/double),
``description``, ``nullable``, ``enum`` (strings), ``properties``, ``required``, ``items``,
``minItems``/``maxItems`` and ``minimum``/``maximum``. Everything else is removed, and
what the model should still know (a ``pattern``, a ``default``, the alternatives of a union, a cut
recursion) is written into ``description`` instead of being lost.

Rules, in the order they apply to each node:
1. ``$ref`` is inlined (JSON pointers into the document: ``#/$defs/X``, ``#/definitions/X``, ``#``).
   A reference already open ``MAX_REF_REPEATS`` times on the current path is a cycle: it is cut into an
   object without properties whose description says so. An unresolvable ``$ref`` is a ``ValueError``.
2. ``allOf`` branches are merged (properties and ``required`` united; the node's own keys win).
3. ``anyOf``/``oneOf``: null branches set ``nullable``; one remaining branch is merged in; branches that
   are all constants become one ``enum``; otherwise the richest branch wins (object > array > string >
   number > integer > boolean) and the others are named in the description.
4. ``type: [X, "null"]`` → X + nullable; several non-null types → the richest, the rest noted.
5. A missing type is inferred (properties → OBJECT, items → ARRAY, else STRING: Gemini has no "any").
Bad input (a non-object schema, an unknown type, nesting deeper than ``MAX_DEPTH``) is a ``ValueError``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

MAX_DEPTH = 64
MAX_REF_REPEATS = 2

_TYPES = {
    "object": "OBJECT",
    "array": "ARRAY",
    "string": "STRING",
    "number": "NUMBER",
    "integer": "INTEGER",
    "boolean": "BOOLEAN",
}
_RANK = {"OBJECT": 6, "ARRAY": 5, "STRING": 4, "NUMBER": 3, "INTEGER": 2, "BOOLEAN": 1}
_FORMATS = {"STRING": {"enum", "date-time"}, "INTEGER": {"int32", "int64"}, "NUMBER": {"float", "double"}}
_ANNOTATIONS = ("description", "title", "default", "examples")  # the node's own win over a merged branch
_NOTED = (
    "pattern",
    "minLength",
    "maxLength",
    "exclusiveMinimum",
    "exclusiveMaximum",
    "multipleOf",
    "minProperties",
    "maxProperties",
)

Schema = dict[str, Any]


def clean_schema_for_gemini(schema: Schema) -> Schema:
    if not isinstance(schema, dict):
        raise ValueError("a schema must be a JSON object")
    return _Cleaner(schema).clean(schema, depth=0, refs=())


@dataclass(slots=True)
class _Flat:
    """A node with its combinators resolved: one type, plus what the resolution learned."""

    node: Schema
    refs: tuple[str, ...]
    nullable: bool = False
    notes: list[str] = field(default_factory=list)


class _Cleaner:
    def __init__(self, root: Schema) -> None:
        self.root = root

    def clean(self, node: Any, *, depth: int, refs: tuple[str, ...]) -> Schema:
        if depth > MAX_DEPTH:
            raise ValueError(f"the schema nests deeper than {MAX_DEPTH} levels")
        flat = self._flatten(_as_schema(node), refs, depth)
        node, notes = flat.node, flat.notes
        gtype = _gemini_type(node)
        enum, nullable = _enum(node, gtype, notes)
        gtype = "STRING" if enum else gtype
        out: Schema = {"type": gtype}
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS.get(gtype, ()):
            out["format"] = fmt
        elif fmt is not None:
            notes.append(f"format: {fmt}")
        description = _describe(node, notes + _constraint_notes(node))
        if description:
            out["description"] = description
        if flat.nullable or nullable:
            out["nullable"] = True
        if enum:
            out["enum"] = enum
        out.update(self._children(node, gtype, depth, flat.refs))
        out.update(_bounds(node, gtype))
        return out

    def _children(self, node: Schema, gtype: str, depth: int, refs: tuple[str, ...]) -> Schema:
        out: Schema = {}
        if gtype == "OBJECT":
            props = node.get("properties") or {}
            if not isinstance(props, dict):
                raise ValueError("'properties' must be an object")
            cleaned = {
                k: self.clean(v, depth=depth + 1, refs=refs) for k, v in props.items() if v is not False
            }
            if cleaned:
                out["properties"] = cleaned
            required = [r for r in dict.fromkeys(_required(node)) if r in cleaned]
            if required:
                out["required"] = required
        elif gtype == "ARRAY":
            items = node.get("items", node.get("prefixItems"))
            if isinstance(items, list):  # tuple validation: Gemini has one item schema per array
                items = items[0] if items else {}
            out["items"] = self.clean({} if items is None else items, depth=depth + 1, refs=refs)
        return out

    # --- combinators ---------------------------------------------------------------------------------

    def _flatten(self, node: Schema, refs: tuple[str, ...], depth: int) -> _Flat:
        if depth > MAX_DEPTH:
            raise ValueError(f"the schema nests deeper than {MAX_DEPTH} levels")
        node, refs = self._resolve(node, refs)
        flat = _Flat(node, refs)
        if "allOf" in node:
            self._merge_all_of(flat, depth)
        for key in ("anyOf", "oneOf"):
            if key in flat.node:
                self._collapse_union(flat, key, depth)
        _collapse_type_list(flat)
        return flat

    def _merge_all_of(self, flat: _Flat, depth: int) -> None:
        own = {k: v for k, v in flat.node.items() if k != "allOf"}
        branches = [
            self._flatten(_as_schema(b), flat.refs, depth + 1) for b in _as_list(flat.node["allOf"], "allOf")
        ]
        merged: Schema = {}
        props: Schema = {}
        required: list[str] = []
        for source in [*(b.node for b in branches), own]:
            props.update(_properties(source))
            required.extend(_required(source))
            merged.update({k: v for k, v in source.items() if k not in ("properties", "required")})
        if props:
            merged["properties"] = props
        if required:
            merged["required"] = required
        flat.node = merged
        # Keep the path's open references, plus whatever each branch opened (counts matter for cycles).
        flat.refs = flat.refs + tuple(r for b in branches for r in b.refs[len(flat.refs) :])
        flat.nullable = flat.nullable or (bool(branches) and all(b.nullable for b in branches))
        flat.notes.extend(n for b in branches for n in b.notes)

    def _collapse_union(self, flat: _Flat, key: str, depth: int) -> None:
        own = {k: v for k, v in flat.node.items() if k != key}
        raw = [_as_schema(b) for b in _as_list(flat.node[key], key)]
        real = [self._flatten(b, flat.refs, depth + 1) for b in raw if not _is_null(b)]
        flat.nullable = flat.nullable or len(real) < len(raw) or any(b.nullable for b in real)
        if real and all(_constants(b.node) is not None for b in real):
            values = [v for b in real for v in _constants(b.node) or ()]
            types = {_gemini_type(b.node) for b in real}
            own.update(enum=values, type=types.pop().lower() if len(types) == 1 else "string")
            flat.node = own
            return
        if not real:  # only null: a value that is always null, which Gemini can only say as nullable
            flat.node = own
            return
        best = max(real, key=_richness)
        others = [_branch_name(b.node) for b in real if b is not best]
        if others:
            flat.notes.append("also accepts: " + ", ".join(dict.fromkeys(others)))
        flat.notes.extend(best.notes)
        merged = {**best.node, **{k: v for k, v in own.items() if k in _ANNOTATIONS or k not in best.node}}
        flat.node = merged
        flat.refs = best.refs

    # --- references ----------------------------------------------------------------------------------

    def _resolve(self, node: Schema, refs: tuple[str, ...]) -> tuple[Schema, tuple[str, ...]]:
        while "$ref" in node:
            ref = node["$ref"]
            if not isinstance(ref, str):
                raise ValueError("'$ref' must be a string")
            target = _as_schema(self._lookup(ref))
            siblings = {k: v for k, v in node.items() if k != "$ref"}
            if refs.count(ref) >= MAX_REF_REPEATS:
                return _cut(ref, target, siblings), refs
            node, refs = {**target, **siblings}, (*refs, ref)
        return node, refs

    def _lookup(self, ref: str) -> Any:
        if not ref.startswith("#"):
            raise ValueError(
                f"cannot resolve '$ref': {ref!r} (only references inside the schema are supported)"
            )
        node: Any = self.root
        for token in filter(None, ref[1:].split("/")):
            key = token.replace("~1", "/").replace("~0", "~")
            if isinstance(node, dict) and key in node:
                node = node[key]
            elif isinstance(node, list) and key.isdigit() and int(key) < len(node):
                node = node[int(key)]
            else:
                raise ValueError(f"cannot resolve '$ref': {ref!r}")
        return node


# --- small pure helpers ------------------------------------------------------------------------------


def _as_schema(node: Any) -> Schema:
    if node is True:
        return {}  # JSON Schema's "anything"
    if not isinstance(node, dict):
        raise ValueError(f"expected a schema object, got {orjson.dumps(node).decode()[:40]}")
    return node


def _properties(node: Schema) -> Schema:
    props = node.get("properties") or {}
    if not isinstance(props, dict):
        raise ValueError("'properties' must be an object")
    return props


def _required(node: Schema) -> list[str]:
    """The names ``required`` lists. Anything else says nothing Gemini could use and is skipped, like the
    ``required: true`` of draft-3 schemas that older tools still write on a property."""
    required = node.get("required")
    return [r for r in required if isinstance(r, str)] if isinstance(required, list) else []


def _as_list(value: Any, key: str) -> list[Any]:
    if not isinstance(value, list):
        raise ValueError(f"'{key}' must be an array of schemas")
    return value


def _cut(ref: str, target: Schema, siblings: Schema) -> Schema:
    name = "the root schema" if ref == "#" else ref.rsplit("/", 1)[-1]
    note = f"(recursive reference to {name}; deeper levels omitted)"
    description = siblings.get("description") or target.get("description")
    target_type = target.get("type")
    cut_type = target_type if isinstance(target_type, str) and target_type in _TYPES else "object"
    return {"type": cut_type, "description": f"{description} {note}" if description else note}


def _collapse_type_list(flat: _Flat) -> None:
    declared = flat.node.get("type")
    if declared == "null":
        flat.nullable = True
        flat.node = {k: v for k, v in flat.node.items() if k != "type"}
    if not isinstance(declared, list):
        return
    if not all(isinstance(t, str) for t in declared):
        raise ValueError("'type' must be a string or an array of strings")
    real = [t for t in declared if t != "null"]
    flat.nullable = flat.nullable or len(real) < len(declared)
    real.sort(key=lambda t: _RANK.get(_TYPES.get(t, ""), 0), reverse=True)
    if len(real) > 1:
        flat.notes.append("also accepts: " + ", ".join(map(str, real[1:])))
    flat.node = (
        {**flat.node, "type": real[0]} if real else {k: v for k, v in flat.node.items() if k != "type"}
    )


def _gemini_type(node: Schema) -> str:
    declared = node.get("type")
    if declared is None:
        if "properties" in node:
            return "OBJECT"
        if "items" in node or "prefixItems" in node:
            return "ARRAY"
        return _constants_type(node)
    if not isinstance(declared, str) or declared not in _TYPES:
        raise ValueError(f"unsupported schema type {declared!r}")
    return _TYPES[declared]


def _constants_type(node: Schema) -> str:
    """The type an untyped node implies: its constants' common type, else STRING (Gemini has no "any")."""
    values = [v for v in _constants(node) or () if v is not None]
    kinds = {bool if isinstance(v, bool) else int if isinstance(v, int) else type(v) for v in values}
    if len(kinds) == 1:
        return {bool: "BOOLEAN", int: "INTEGER", float: "NUMBER"}.get(kinds.pop(), "STRING")
    if isinstance(node.get("minimum", node.get("maximum")), int | float):
        return "NUMBER"
    return "STRING"


def _is_null(node: Schema) -> bool:
    return (
        node.get("type") == "null"
        or node.get("enum") == [None]
        or ("const" in node and node["const"] is None)
    )


def _constants(node: Schema) -> list[Any] | None:
    if "const" in node:
        return [node["const"]]
    enum = node.get("enum")
    return enum if isinstance(enum, list) else None


def _richness(flat: _Flat) -> tuple[int, int]:
    node = flat.node
    size = len(node.get("properties") or ()) if isinstance(node.get("properties"), dict) else 0
    return _RANK[_gemini_type(node)], size


def _branch_name(node: Schema) -> str:
    title = node.get("title")
    return title if isinstance(title, str) else _gemini_type(node).lower()


def _enum(node: Schema, gtype: str, notes: list[str]) -> tuple[list[str] | None, bool]:
    """Gemini enums are strings. ``(enum, nullable)``; other constant lists become a note."""
    values = _constants(node)
    if values is None:
        return None, False
    nullable = None in values
    values = [v for v in values if v is not None]
    if values and all(isinstance(v, str) for v in values):
        return list(dict.fromkeys(values)), nullable
    if values:
        notes.append("allowed values: " + ", ".join(orjson.dumps(v).decode() for v in values))
    return None, nullable


def _constraint_notes(node: Schema) -> list[str]:
    notes = [f"{key}: {_show(node[key])}" for key in _NOTED if key in node]
    if node.get("uniqueItems") is True:
        notes.append("items must be unique")
    if node.get("default") is not None:
        notes.append(f"default: {_show(node['default'])}")
    if not node.get("properties") and node.get("additionalProperties") not in (None, False):
        notes.append("an object with arbitrary keys")
    return notes


def _show(value: Any) -> str:
    return value if isinstance(value, str) else orjson.dumps(value).decode()


def _describe(node: Schema, notes: list[str]) -> str:
    description = node.get("description")
    text = description.strip() if isinstance(description, str) else ""
    if notes:
        extra = "(" + "; ".join(dict.fromkeys(notes)) + ")"
        text = f"{text} {extra}" if text else extra
    return text


def _bounds(node: Schema, gtype: str) -> Schema:
    keys = {
        "ARRAY": ("minItems", "maxItems"),
        "NUMBER": ("minimum", "maximum"),
        "INTEGER": ("minimum", "maximum"),
    }.get(gtype, ())
    return {
        k: node[k] for k in keys if isinstance(node.get(k), int | float) and not isinstance(node[k], bool)
    }
