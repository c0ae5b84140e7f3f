"""The images API ↔ one Gemini image-model call (R-I2, R-I3)."""

from __future__ import annotations

import orjson
import pytest

from antigravity_gw.errors import InvalidRequest, UpstreamError
from antigravity_gw.openai_api.images_models import parse_image_edit, parse_image_generation
from antigravity_gw.translate.images import aspect_ratio, gemini_to_images, images_request_to_gemini


@pytest.mark.parametrize(("size", "ratio"), [
    ("1024x1024", "1:1"), ("1536x1024", "3:2"), ("1024x1536", "2:3"), ("1792x1024", "16:9"),
    ("1024x1792", "9:16"), ("2520x1080", "21:9"), ("1280x1024", "5:4"),
])
def test_size_becomes_the_nearest_aspect_ratio(size, ratio) -> None:
    assert aspect_ratio(size) == ratio


def test_request_has_the_prompt_the_images_and_the_image_config_only() -> None:
    body = {"prompt": "blue", "image": "data:image/png;base64,iVBORw0KGgo=", "size": "1024x1024",
            "quality": "medium", "n": 2}
    out = images_request_to_gemini(parse_image_edit(orjson.dumps(body)))
    assert out == {
        "generationConfig": {"candidateCount": 2, "imageConfig": {"aspectRatio": "1:1", "imageSize": "2K"}},
        "contents": [{"role": "user", "parts": [
            {"text": "blue"}, {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}]}],
    }


def test_auto_leaves_the_choice_to_the_model() -> None:
    req = parse_image_generation(b'{"prompt": "x", "size": "auto", "quality": "auto"}')
    assert images_request_to_gemini(req)["generationConfig"] == {"candidateCount": 1}
    with pytest.raises(InvalidRequest, match="matches none of Gemini's aspect ratios"):
        aspect_ratio("1000x300")


def answer(*parts, finish="STOP"):
    return {"candidates": [{"content": {"role": "model", "parts": list(parts)}, "finishReason": finish}],
            "usageMetadata": {"promptTokenCount": 5, "candidatesTokenCount": 1290, "totalTokenCount": 1295}}


def test_each_image_part_is_one_entry_with_the_text_before_it_as_revised_prompt() -> None:
    image = {"inlineData": {"mimeType": "image/png", "data": "QUJD"}, "thoughtSignature": "s"}
    out = gemini_to_images(answer({"text": "thinking", "thought": True}, {"text": "Here:"}, image, image),
                           created=7, response_format=None)
    assert out["data"] == [{"b64_json": "QUJD", "revised_prompt": "Here:"},
                           {"b64_json": "QUJD", "revised_prompt": "Here:"}]
    assert out["usage"]["output_tokens"] == 1290 and out["created"] == 7
    url = gemini_to_images(answer(image), created=7, response_format="url")["data"]
    assert url == [{"url": "data:image/png;base64,QUJD"}]


def test_no_image_is_a_refusal_or_an_upstream_error() -> None:
    with pytest.raises(InvalidRequest) as e:
        gemini_to_images(answer({"text": "no"}, finish="IMAGE_SAFETY"), created=1, response_format=None)
    assert e.value.code == "content_policy_violation"
    with pytest.raises(UpstreamError, match="answered without an image: only words"):
        gemini_to_images(answer({"text": "only words"}), created=1, response_format=None)
