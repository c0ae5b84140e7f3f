"""OpenAI message content → Gemini ``Part`` dicts: text, inline images, audio and files, and the
``functionCall`` / ``functionResponse`` parts that replay tool calls and their results.

http(s) image URLs are not fetched here (translation is pure): the I/O layer calls
``image_url_params`` first, fetches each URL into an ``InlineImage`` (``upstream/media.py``) and passes
the results in as ``images``. Every failure is an ``InvalidRequest`` whose ``param`` points at the part.
"""

from __future__ import annotations

import binascii
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import orjson
import yarl

from ..errors import InvalidRequest
from ..openai_api.models import (
    ChatCompletionRequest,
    ContentPart,
    DeveloperMessage,
    FilePart,
    ImageUrlPart,
    InputAudioPart,
    RefusalPart,
    SystemMessage,
    TextPart,
)

Part = dict[str, Any]

# Gemini's audio MIME types for OpenAI's ``input_audio.format`` values.
_AUDIO_MIME = {
    "wav": "audio/wav",
    "mp3": "audio/mp3",
    "aiff": "audio/aiff",
    "aac": "audio/aac",
    "ogg": "audio/ogg",
    "flac": "audio/flac",
}


@dataclass(frozen=True, slots=True)
class InlineImage:
    mime_type: str
    data_b64: str


def is_http_url(url: str) -> bool:
    return url[:8].lower().startswith(("http://", "https://"))


def parse_data_url(url: str) -> InlineImage:
    """``data:<mime>;base64,<data>`` → ``InlineImage``; ``ValueError`` says what is wrong."""
    head, sep, data = url.partition(",")
    if not head[:5].lower() == "data:" or not sep:
        raise ValueError("expected a data URL of the form data:<mime type>;base64,<data>")
    meta = head[5:].split(";")
    if "base64" not in (m.strip().lower() for m in meta[1:]):
        raise ValueError("only base64-encoded data URLs are supported")
    if not data:
        raise ValueError("the data URL carries no data")
    try:  # Google would reject it as an INVALID_ARGUMENT: say so here, naming the field
        binascii.a2b_base64(data, strict_mode=True)
    except binascii.Error:
        raise ValueError("the data URL's data is not valid base64") from None
    return InlineImage(meta[0].strip().lower() or "application/octet-stream", data)


def check_fetchable_url(url: str, *, param: str) -> None:
    """An http(s) URL the fetcher can parse, or a 400 naming the field: checked here, before any I/O,
    with both parsers that will read it (aiohttp's yarl and the fetcher's ``urlsplit``)."""
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises for a port that is not a number or out of range
        parsed = yarl.URL(url)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid image URL in '{param}': {exc}.", param=param) from None
    if not parsed.host:
        raise InvalidRequest(f"Invalid image URL in '{param}': it names no host.", param=param)


def image_url_params(req: ChatCompletionRequest) -> dict[str, str]:
    """The http(s) image URLs to fetch before ``chat_request_to_gemini``, in order and each once, with the
    ``param`` of its first use for the fetcher's error messages."""
    found: dict[str, str] = {}
    for i, msg in enumerate(req.messages):
        if isinstance(msg, SystemMessage | DeveloperMessage) or not isinstance(msg.content, list):
            continue
        for j, part in enumerate(msg.content):
            if isinstance(part, ImageUrlPart) and is_http_url(part.image_url.url):
                param = f"messages[{i}].content[{j}].image_url"
                check_fetchable_url(part.image_url.url, param=param)
                found.setdefault(part.image_url.url, param)
    return found


def text_part(text: str) -> Part:
    return {"text": text}


def inline_part(mime_type: str, data_b64: str) -> Part:
    return {"inlineData": {"mimeType": mime_type, "data": data_b64}}


def content_to_parts(
    content: str | Sequence[ContentPart] | None,
    *,
    param: str,
    images: Mapping[str, InlineImage] | None,
    details: set[str] | None = None,
) -> list[Part]:
    """User/assistant/tool content → Gemini parts. Empty text is dropped: Gemini rejects empty text parts.
    ``details`` collects the ``image_url.detail`` values other than ``auto`` (see ``media_resolution``)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [text_part(content)] if content else []
    parts: list[Part] = []
    for j, part in enumerate(content):
        if details is not None and isinstance(part, ImageUrlPart) and part.image_url.detail in _RESOLUTIONS:
            details.add(part.image_url.detail)
        converted = _part(part, param=f"{param}[{j}]", images=images)
        if converted is not None:
            parts.append(converted)
    return parts


# OpenAI's image detail → Gemini's request-wide ``generationConfig.mediaResolution`` (R-G4; the per-part
# field is Gemini 3 on v1alpha only, and Cloud Code's support for either is undocumented).
_RESOLUTIONS = {"low": "MEDIA_RESOLUTION_LOW", "high": "MEDIA_RESOLUTION_HIGH"}


def media_resolution(details: set[str]) -> str | None:
    """One resolution for the request: ``high`` if any image asked for it (detail is never thrown away),
    else ``low``; None when every image left it to the model."""
    if "high" in details:
        return _RESOLUTIONS["high"]
    return _RESOLUTIONS["low"] if "low" in details else None


def content_to_text(content: str | list[ContentPart] | None, *, param: str) -> str:
    """Content that must be text only (system and developer messages): text parts joined by newlines."""
    if content is None or isinstance(content, str):
        return content or ""
    return join_text_parts(content, param=param, allowed_where="here")


def join_text_parts(parts: Sequence[Any], *, param: str, allowed_where: str) -> str:
    """Parts that must all be text (chat's or the Responses API's), their text joined by newlines; any
    other part is a 400 saying that only text parts are allowed ``allowed_where``."""
    texts: list[str] = []
    for j, part in enumerate(parts):
        text = getattr(part, "text", None)  # only the text part types have a ``text`` field
        if not isinstance(text, str):
            raise InvalidRequest(
                f"Invalid content part type '{part.type}' in '{param}[{j}]': "
                f"only text parts are allowed {allowed_where}.",
                param=f"{param}[{j}].type",
            )
        texts.append(text)
    return "\n".join(texts)


def _part(part: ContentPart, *, param: str, images: Mapping[str, InlineImage] | None) -> Part | None:
    if isinstance(part, TextPart):
        return text_part(part.text) if part.text else None
    if isinstance(part, RefusalPart):
        return text_part(part.refusal) if part.refusal else None
    if isinstance(part, ImageUrlPart):
        image = image_from_url(part.image_url.url, images=images, param=f"{param}.image_url")
        return inline_part(image.mime_type, image.data_b64)
    if isinstance(part, InputAudioPart):
        return _audio_part(part, param=f"{param}.input_audio")
    return _file_part(part, param=f"{param}.file")


def image_from_url(url: str, *, images: Mapping[str, InlineImage] | None, param: str) -> InlineImage:
    """A data URL is decoded here; an http(s) URL must have been fetched beforehand into ``images``."""
    if is_http_url(url):
        image = (images or {}).get(url)
        if image is None:
            raise InvalidRequest(f"The image at '{param}' could not be fetched.", param=param)
        return image
    if url[:5].lower() != "data:":
        raise InvalidRequest(
            f"Invalid image URL in '{param}': expected an http(s) URL or a base64 data URL.", param=param
        )
    try:
        image = parse_data_url(url)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid image data URL in '{param}': {exc}.", param=param) from None
    if not image.mime_type.startswith("image/"):
        raise InvalidRequest(
            f"Invalid image data URL in '{param}': '{image.mime_type}' is not an image type.", param=param
        )
    return image


def _audio_part(part: InputAudioPart, *, param: str) -> Part:
    mime = _AUDIO_MIME.get(part.input_audio.format.lower())
    if mime is None:
        supported = ", ".join(f"'{f}'" for f in _AUDIO_MIME)
        raise InvalidRequest(
            f"Invalid value: '{part.input_audio.format}'. Supported values are: {supported}.",
            param=f"{param}.format",
        )
    if not part.input_audio.data:
        raise InvalidRequest(f"Invalid '{param}.data': empty audio data.", param=f"{param}.data")
    return inline_part(mime, part.input_audio.data)


def _file_part(part: FilePart, *, param: str) -> Part:
    if part.file.file_data is None:
        raise InvalidRequest(
            f"'{param}' must carry file_data (a base64 data URL); uploaded file ids are not supported.",
            param=param,
        )
    try:
        data = parse_data_url(part.file.file_data)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid '{param}.file_data': {exc}.", param=f"{param}.file_data") from None
    return inline_part(data.mime_type, data.data_b64)


# --- tool calls and their results --------------------------------------------------------------------


def call_arguments(text: str, *, param: str) -> dict[str, Any]:
    """A tool call's ``arguments`` (a JSON object as text) → Gemini's ``args``; blank means no arguments."""
    if not text.strip():
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        raise InvalidRequest(f"Invalid '{param}': not valid JSON.", param=param) from None
    if not isinstance(value, dict):
        raise InvalidRequest(f"Invalid '{param}': expected a JSON object.", param=param)
    if not can_send(value):
        raise InvalidRequest(f"Invalid '{param}': the JSON nests too deeply.", param=param)
    return value


# orjson parses 1024 levels deep but writes only 255: JSON taken from a client's text must leave room for
# the levels of the upstream request around it (envelope, contents, parts, functionCall...).
_ENVELOPE_DEPTH = 16


def can_send(value: Any) -> bool:
    """Can ``value``, parsed from a client's JSON text, be written back inside an upstream request?"""
    wrapped = value
    for _ in range(_ENVELOPE_DEPTH):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError:
        return False
    return True


def function_call_part(
    name: str, args: dict[str, Any], *, gemini_id: str | None = None, signature: str | None = None
) -> Part:
    """A ``functionCall`` part as Gemini sent it: with its own call id and its ``thoughtSignature``."""
    call: dict[str, Any] = {"name": name, "args": args}
    if gemini_id:
        call["id"] = gemini_id
    part: Part = {"functionCall": call}
    if signature:
        part["thoughtSignature"] = signature  # a sibling of functionCall, as Gemini sent it
    return part


def function_response_part(name: str, text: str, *, gemini_id: str | None = None) -> Part:
    """A tool's result → a ``functionResponse`` part; ``gemini_id`` is the id of the call it answers."""
    response: dict[str, Any] = {"name": name, "response": function_response_payload(text)}
    if gemini_id:
        response["id"] = gemini_id
    return {"functionResponse": response}


def function_response_payload(text: str) -> dict[str, Any]:
    """``{"output": …}``: a JSON object stays structured; anything else is passed as text."""
    if text.lstrip().startswith("{"):
        try:
            value = orjson.loads(text)
        except orjson.JSONDecodeError:
            value = None
        if isinstance(value, dict) and can_send(value):
            return {"output": value}
    return {"output": text}
