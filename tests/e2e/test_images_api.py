"""OpenAI's images API end to end: the openai SDK → mitmdump → the emulator's image model, which rejects
what Cloud Code rejects for image models (the wrong request type, tools, bad imageConfig values,
responseModalities beside imageConfig)."""

from __future__ import annotations

import base64

import openai
import pytest

from gemini_emulator import is_gemini3_signature
from support.emulator import Emulator
from support.gateway import Gateway, sent

IMAGE = "gemini-3.1-flash-image"
PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)


@pytest.fixture
def gw(cloudcode_gateway: Gateway, emulator: Emulator) -> Gateway:
    return cloudcode_gateway


@pytest.fixture
def client(gw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


def test_generation_with_size_and_quality(client, gw, emulator):
    result = client.images.generate(model="dall-e-3", prompt="a red square", size="1792x1024", quality="hd")
    [image] = result.data
    assert base64.b64decode(image.b64_json).startswith(b"\x89PNG")
    assert image.revised_prompt == "echo: a red square"
    call = next(r for r in emulator.requests() if r["rpc"] == "generateContent")
    assert (call["model"], call["body"]["requestType"]) == (IMAGE, "image_gen")
    assert "sessionId" not in call["body"]["request"]
    assert sent(emulator, gw)["generationConfig"] == {
        "candidateCount": 1,
        "imageConfig": {"aspectRatio": "16:9", "imageSize": "4K"},
    }


def test_generation_as_data_url_and_n(client, gw, emulator):
    result = client.images.generate(model=IMAGE, prompt="two cats", n=2, response_format="url")
    assert len(result.data) == 2
    assert all(d.url.startswith("data:image/png;base64,") for d in result.data)


def test_edit_uploads_the_reference_images(client, gw, emulator):
    result = client.images.edit(
        model=IMAGE, image=[("a.png", PNG, "image/png"), ("b.png", PNG, "image/png")], prompt="make it blue"
    )
    assert base64.b64decode(result.data[0].b64_json).startswith(b"\x89PNG")
    parts = sent(emulator, gw)["contents"][0]["parts"]
    assert parts[0] == {"text": "make it blue"}
    uploaded = {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}}
    assert parts[1:] == [uploaded, uploaded]


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [({"size": "1000x300"}, "size"), ({"size": "big"}, "size"), ({"quality": "ultra"}, "quality")],
)
def test_bad_sizes_and_qualities_are_400s_before_google(client, gw, emulator, kwargs, param):
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model=IMAGE, prompt="x", **kwargs)
    assert e.value.body["param"] == param
    assert not [r for r in emulator.requests() if r["rpc"] == "generateContent"]


def test_an_answer_without_an_image_is_an_error_not_an_empty_list(client, gw, emulator):
    emulator.add_rule(times=1, reply={"text": "I cannot draw that.", "finish_reason": "IMAGE_SAFETY"})
    with pytest.raises(openai.BadRequestError) as e:
        client.images.generate(model=IMAGE, prompt="x")
    assert e.value.body["code"] == "content_policy_violation"


@pytest.mark.parametrize("stream", [False, True], ids=["non-stream", "stream"])
def test_chat_image_output_as_markdown_and_a_structured_list(client, gw, emulator, stream):
    kwargs = {"model": IMAGE, "messages": [{"role": "user", "content": "draw a dot"}],
              "extra_body": {"modalities": ["image", "text"], "image_config": {"aspect_ratio": "4:3"}}}
    if stream:
        content, images = "", []
        for chunk in client.chat.completions.create(stream=True, **kwargs):
            for choice in chunk.choices:
                content += choice.delta.content or ""
                images += (choice.delta.model_extra or {}).get("images") or []
    else:
        message = client.chat.completions.create(**kwargs).choices[0].message
        content, images = message.content, message.model_extra["images"]
    url = "data:image/png;base64," + base64.b64encode(PNG).decode()
    assert content == f"echo: draw a dot![image]({url})"
    [image] = images
    assert (image["type"], image["image_url"]) == ("image_url", {"url": url})
    assert is_gemini3_signature(image["extra_content"]["google"]["thought_signature"])  # the emulator's own
    request = sent(emulator, gw)
    assert request["generationConfig"] == {"imageConfig": {"aspectRatio": "4:3"}}  # no responseModalities


@pytest.mark.parametrize("echo", ["sdk-message", "stream-assembled", "markdown-only"])
def test_multi_turn_chat_edit_sends_the_image_back_with_its_signature(client, gw, emulator, echo):
    """Turn 2 sends turn 1's answer back; the emulator's image model rejects an earlier image part that lost
    its signature, as Gemini 3 image models lose the edit's context without it."""
    ask = {"role": "user", "content": "draw a dot"}
    extra = {"modalities": ["image", "text"]}
    first_turn = {"model": IMAGE, "messages": [ask], "extra_body": extra}
    if echo == "stream-assembled":
        content, images = "", []
        for chunk in client.chat.completions.create(stream=True, **first_turn):
            for choice in chunk.choices:
                content += choice.delta.content or ""
                images += (choice.delta.model_extra or {}).get("images") or []
        assistant = {"role": "assistant", "content": content, "images": images}
    else:
        assistant = client.chat.completions.create(**first_turn).choices[0].message
        images = assistant.model_extra["images"]
        if echo == "markdown-only":
            assistant = {"role": "assistant", "content": assistant.content}
    edit = [ask, assistant, {"role": "user", "content": "make it blue"}]
    if echo == "markdown-only":  # the signature is gone: sent unsigned (no escape value), Google says no
        with pytest.raises(openai.BadRequestError) as e:
            client.chat.completions.create(model=IMAGE, messages=edit, extra_body=extra)
        assert "missing a thought_signature" in e.value.body["message"]
        return
    result = client.chat.completions.create(model=IMAGE, messages=edit, extra_body=extra)
    assert result.choices[0].message.model_extra["images"]
    signature = images[0]["extra_content"]["google"]["thought_signature"]
    model_turn = sent(emulator, gw)["contents"][1]
    assert model_turn == {"role": "model", "parts": [
        {"text": "echo: draw a dot"},
        {"inlineData": {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()},
         "thoughtSignature": signature},
    ]}
