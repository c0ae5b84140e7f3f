"""Images API bodies: JSON for generations and edits, the SDK's multipart form for edits."""

from __future__ import annotations

import base64

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest
from antigravity_gw.openai_api.images_models import (
    DEFAULT_IMAGE_MODEL,
    multipart_fields,
    parse_image_edit,
    parse_image_generation,
)

PNG = b"\x89PNG\r\n\x1a\nfake"


def form(*parts: tuple[str, bytes, str | None]) -> bytes:
    out = b""
    for name, value, filename in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        out += b"--XyZ\r\nContent-Disposition: " + disposition.encode() + b"\r\n"
        out += b"Content-Type: image/png\r\n" if filename else b""
        out += b"\r\n" + value + b"\r\n"
    return out + b"--XyZ--\r\n"


def test_generation_defaults_to_antigravitys_image_model() -> None:
    req = parse_image_generation(b'{"prompt": "a cat"}')
    assert (req.model, req.n, req.reference_images()) == (DEFAULT_IMAGE_MODEL, None, [])


@pytest.mark.parametrize(("body", "param"), [
    ({"prompt": ""}, "prompt"), ({"prompt": "x", "n": 11}, "n"), ({"prompt": "x", "response_format": "png"},
                                                                     "response_format"),
    ({"prompt": "x", "image": "data:image/png;base64,AAAA"}, "image"),
])
def test_generation_refuses_what_it_cannot_do(body, param) -> None:
    with pytest.raises(InvalidRequest) as e:
        parse_image_generation(orjson.dumps(body))
    assert e.value.param == param


def test_edit_reads_the_sdks_multipart_form() -> None:
    body = form(("prompt", b"make it blue", None), ("n", b"2", None), ("image[]", PNG, "a.png"),
                ("image[]", PNG, "b.png"))
    assert multipart_fields(body)["n"] == 2
    req = parse_image_edit(body)
    assert req.prompt == "make it blue" and req.n == 2
    assert req.reference_images() == [f"data:image/png;base64,{base64.b64encode(PNG).decode()}"] * 2


def test_edit_takes_json_images_and_refuses_masks_and_no_image() -> None:
    req = parse_image_edit(orjson.dumps({"prompt": "x", "images": [{"image_url": "https://e.example/a.png"}]}))
    assert req.reference_images() == ["https://e.example/a.png"]
    with pytest.raises(InvalidRequest, match="masks are not supported"):
        parse_image_edit(form(("prompt", b"x", None), ("image", PNG, "a.png"), ("mask", PNG, "m.png")))
    with pytest.raises(InvalidRequest, match="Missing required parameter: 'image'"):
        parse_image_edit(b'{"prompt": "x"}')
