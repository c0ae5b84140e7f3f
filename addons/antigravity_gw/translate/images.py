"""OpenAI's images API (generations and edits) ↔ one Gemini image-model call (R-I1 to R-I3).

Request: ``contents`` = one user turn (the prompt, then the edit's input images as ``inlineData``);
``generationConfig`` = ``candidateCount`` (``n``) and ``imageConfig``: ``size`` WxH → the nearest
``aspectRatio`` Gemini knows (within 5 %, else a 400 listing them; ``auto`` or absent: the model picks),
``quality`` → ``imageSize`` (low / standard / auto: 1K, medium: 2K, high / hd: 4K; absent: the model's
default). No tools, system instruction or ``responseModalities`` (an image model answers images; the
last, combined with ``imageConfig``, made Cloud Code answer 500: CLIProxyAPI#4751). The upstream layer
sends it as Cloud Code's ``image_gen`` request type.

Answer: ``{"created", "data": [{"b64_json"} | {"url": "data:..."}], "usage"}``, one entry per image part
of every candidate, in order; a text part beside an image becomes its ``revised_prompt``. An answer
without any image is Google's refusal or failure: a 400 ``content_policy_violation`` when a safety finish
reason says so, else a 502 quoting what came instead.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import InvalidRequest, UpstreamError
from ..openai_api.images_models import ImageGenerationRequest
from .gemini_events import as_list, as_object, candidate_parts
from .parts import InlineImage, check_fetchable_url, image_from_url, inline_part, is_http_url, text_part
from .usage import gemini_usage_counts

ASPECT_RATIOS = {
    "1:1": 1.0, "2:3": 2 / 3, "3:2": 1.5, "3:4": 0.75, "4:3": 4 / 3,
    "4:5": 0.8, "5:4": 1.25, "9:16": 9 / 16, "16:9": 16 / 9, "21:9": 21 / 9,
}
IMAGE_SIZES = {"low": "1K", "standard": "1K", "medium": "2K", "high": "4K", "hd": "4K"}
_BLOCKED = frozenset({"SAFETY", "IMAGE_SAFETY", "PROHIBITED_CONTENT", "BLOCKLIST", "SPII", "RECITATION",
                      "IMAGE_PROHIBITED_CONTENT", "IMAGE_RECITATION"})


def image_config(req: ImageGenerationRequest) -> dict[str, Any]:
    config: dict[str, Any] = {}
    if req.size and req.size != "auto":
        config["aspectRatio"] = aspect_ratio(req.size)
    if req.quality and req.quality != "auto":
        if req.quality not in IMAGE_SIZES:
            allowed = ", ".join(f"'{q}'" for q in ("auto", *IMAGE_SIZES))
            raise InvalidRequest(f"Invalid value: '{req.quality}'. Supported values are: {allowed}.",
                                 param="quality")
        config["imageSize"] = IMAGE_SIZES[req.quality]
    return config


def aspect_ratio(size: str) -> str:
    """``"1536x1024"`` → ``"3:2"``: the ratio Gemini knows that is nearest, within 5 %."""
    width, sep, height = size.lower().partition("x")
    if not sep or not width.isdigit() or not height.isdigit() or not int(width) or not int(height):
        raise InvalidRequest(f"Invalid 'size': {size!r} is not of the form WIDTHxHEIGHT (or 'auto').",
                             param="size")
    wanted = int(width) / int(height)
    name, ratio = min(ASPECT_RATIOS.items(), key=lambda item: abs(item[1] - wanted))
    if abs(ratio - wanted) / ratio > 0.05:
        known = ", ".join(ASPECT_RATIOS)
        raise InvalidRequest(f"Invalid 'size': {size} matches none of Gemini's aspect ratios ({known}).",
                             param="size")
    return name


def image_url_params(req: ImageGenerationRequest) -> dict[str, str]:
    """The edit's http(s) input images, to fetch before ``images_request_to_gemini``."""
    found: dict[str, str] = {}
    for url in req.reference_images():
        if is_http_url(url):
            check_fetchable_url(url, param="image")
            found.setdefault(url, "image")
    return found


def images_request_to_gemini(req: ImageGenerationRequest, *,
                             images: Mapping[str, InlineImage] | None = None) -> dict[str, Any]:
    parts = [text_part(req.prompt)]
    for url in req.reference_images():
        image = image_from_url(url, images=images, param="image")
        parts.append(inline_part(image.mime_type, image.data_b64))
    config: dict[str, Any] = {"candidateCount": req.n or 1}
    if imaging := image_config(req):
        config["imageConfig"] = imaging
    return {"generationConfig": config, "contents": [{"role": "user", "parts": parts}]}


def gemini_to_images(response: Mapping[str, Any], *, created: int, response_format: str | None
                     ) -> dict[str, Any]:
    """One ``GenerateContentResponse`` → OpenAI's images answer (see the module docstring)."""
    try:
        data, texts, reasons = _images(response)
        usage = gemini_usage_counts(as_object(response.get("usageMetadata"), "usageMetadata"))
    except ValueError as exc:
        raise UpstreamError(f"Gemini sent a malformed image answer: {exc}.") from None
    if not data:
        if _BLOCKED & reasons:
            raise InvalidRequest(
                f"Google's image model refused the prompt (finishReason {', '.join(sorted(reasons))}).",
                code="content_policy_violation")
        said = " ".join(texts)[:300] or f"finishReason {', '.join(sorted(reasons)) or 'none'}"
        raise UpstreamError(f"Google's image model answered without an image: {said}")
    entries = []
    for mime, b64, revised in data:
        entry: dict[str, Any] = ({"url": f"data:{mime};base64,{b64}"} if response_format == "url"
                                 else {"b64_json": b64})
        if revised:
            entry["revised_prompt"] = revised
        entries.append(entry)
    prompt, output = usage.prompt, usage.completion
    return {"created": created, "data": entries, "usage": {
        "input_tokens": prompt, "output_tokens": output, "total_tokens": prompt + output,
        "input_tokens_details": {"text_tokens": prompt, "image_tokens": 0}}}


def _images(response: Mapping[str, Any]) -> tuple[list[tuple[str, str, str | None]], list[str], set[str]]:
    data: list[tuple[str, str, str | None]] = []
    texts: list[str] = []
    reasons: set[str] = set()
    for candidate in as_list(response.get("candidates"), "candidates"):
        candidate = as_object(candidate, "candidate")
        if reason := candidate.get("finishReason"):
            reasons.add(str(reason))
        said: list[str] = []
        for part in candidate_parts(candidate):
            if "inlineData" in part:
                blob = as_object(part["inlineData"], "inlineData")
                mime, b64 = blob.get("mimeType"), blob.get("data")
                if not isinstance(mime, str) or not isinstance(b64, str):
                    raise ValueError("inlineData lacks mimeType or data")
                data.append((mime, b64, " ".join(said) or None))
            elif isinstance(part.get("text"), str) and part.get("thought") is not True:
                said.append(part["text"])
        texts += said
    if (feedback := as_object(response.get("promptFeedback"), "promptFeedback").get("blockReason")):
        reasons.add(str(feedback) if str(feedback) in _BLOCKED else "SAFETY")
    return data, texts, reasons
