"""Inbound ``/v1/images/generations`` and ``/v1/images/edits`` bodies, validated once at the door.

Generations take OpenAI's JSON body. Edits take it too (``images: [{"image_url": ...}]`` or ``image`` as a
URL or a list of URLs, as OpenAI's JSON form does) and the multipart form the openai SDK sends
(``image`` / ``image[]`` files, the other fields as text parts). The multipart boundary is read from the
body's first line, so parsing needs no header; files become base64 data URLs.

What Gemini's image model cannot do is refused with a 400 naming the field, not silently dropped:
``mask`` (Gemini edits from the prompt alone).
"""

from __future__ import annotations

import base64
from email.message import Message
from email.parser import BytesParser
from email.policy import HTTP
from typing import Any, Literal

import orjson
from pydantic import Field, ValidationError

from ..errors import InvalidRequest
from .models import ModelName, _Model, validation_error_to_invalid_request

DEFAULT_IMAGE_MODEL = "gemini-3.1-flash-image"  # what Antigravity serves (R-I1)
_MAX_IMAGES = 16


class ImageRef(_Model):
    image_url: str = Field(min_length=1)


class ImageGenerationRequest(_Model):
    prompt: str = Field(min_length=1, max_length=32000)
    model: ModelName = DEFAULT_IMAGE_MODEL
    n: int | None = Field(default=None, ge=1, le=10)
    size: str | None = None  # "WxH" or "auto"
    quality: str | None = None  # auto, low, medium, high, standard, hd
    response_format: Literal["b64_json", "url"] | None = None
    user: str | None = None
    style: str | None = None  # dall-e-3's; nothing in Gemini matches, accepted and ignored
    # edits only (a generation request with them is refused by ``parse_image_generation``):
    image: str | list[str] | None = None
    images: list[ImageRef] | None = Field(default=None, max_length=_MAX_IMAGES)
    mask: Any = None

    def reference_images(self) -> list[str]:
        """The edit's input images as URLs (data URLs for uploaded files), in order."""
        found = [ref.image_url for ref in self.images or ()]
        if isinstance(self.image, str):
            found.append(self.image)
        elif self.image:
            found += self.image
        return found


def parse_image_generation(body: bytes) -> ImageGenerationRequest:
    req = _validate(body)
    if req.image is not None or req.images is not None:
        raise InvalidRequest(
            "Invalid 'image': images/generations makes images from the prompt alone; send input images to "
            "/v1/images/edits.",
            param="image",
        )
    return req


def parse_image_edit(body: bytes) -> ImageGenerationRequest:
    fields = multipart_fields(body) if body.startswith(b"--") else None
    req = _validate(orjson.dumps(fields) if fields is not None else body)
    if req.mask is not None:
        raise InvalidRequest(
            "Invalid 'mask': Gemini's image model edits from the prompt and the images alone; masks are not "
            "supported by this gateway.",
            param="mask",
        )
    refs = req.reference_images()
    if not refs:
        raise InvalidRequest("Missing required parameter: 'image'.", param="image")
    if len(refs) > _MAX_IMAGES:
        raise InvalidRequest(f"Invalid 'image': at most {_MAX_IMAGES} images.", param="image")
    return req


def _validate(body: bytes) -> ImageGenerationRequest:
    try:
        return ImageGenerationRequest.model_validate_json(body)
    except ValidationError as exc:
        raise validation_error_to_invalid_request(exc, api="images") from None


def multipart_fields(body: bytes) -> dict[str, Any]:
    """A ``multipart/form-data`` body as JSON-like fields: text parts as strings (``n`` as a number),
    file parts under ``image`` / ``image[]`` as a list of data URLs, ``mask`` kept to be refused."""
    boundary = body.split(b"\r\n", 1)[0][2:].strip()
    if not boundary or len(boundary) > 200:
        raise InvalidRequest("The multipart body has no boundary line.")
    head = b"Content-Type: multipart/form-data; boundary=\"" + boundary + b"\"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise InvalidRequest("The multipart body could not be read.")
    fields: dict[str, Any] = {}
    images: list[str] = []
    for part in message.iter_parts():
        name = _field_name(part)
        payload = part.get_payload(decode=True)
        if not name or not isinstance(payload, bytes):
            continue
        if name in ("image", "image[]"):
            mime = part.get_content_type()
            mime = mime if mime.startswith("image/") else "image/png"
            images.append(f"data:{mime};base64,{base64.b64encode(payload).decode()}")
        elif name == "mask":
            fields["mask"] = True
        else:
            text = payload.decode("utf-8", "replace")
            fields[name] = int(text) if name == "n" and text.strip().isdigit() else text
    if images:
        fields["image"] = images
    return fields


def _field_name(part: Message) -> str | None:
    disposition = part.get("content-disposition")
    if disposition is None:
        return None
    name = part.get_param("name", header="content-disposition")
    return name if isinstance(name, str) else None
