"""An Anthropic ``MessagesRequest`` → a Gemini ``GenerateContentRequest`` dict (no envelope).

Same key order and the same "only what the client set" rule as the chat translation (``chat_request.py``),
whose helpers it shares, and the same model rules afterwards (``model_rules.py``):

* ``system`` (a string or text blocks) → ``systemInstruction.parts``.
* ``user`` → ``user``, ``assistant`` → ``model``; consecutive turns of one role are merged. A ``system``
  message mid-conversation (text only) → ``user`` text in its place: Gemini has no system turn, and
  moving it into ``systemInstruction`` would change the prompt's prefix, which Gemini's cache keys on.
* ``text`` → text parts (empty ones dropped), ``image`` / ``document`` (base64 or URL; a text document
  as text) → ``inlineData`` parts; http(s) URLs are fetched by the I/O layer first (``image_url_params``).
* ``tool_use`` → ``functionCall``; its id may carry Gemini's call id and a Gemini signature
  (``signatures.py``: the ids this gateway hands out). ``tool_result`` → ``functionResponse`` named after
  the ``tool_use`` it answers, ``{"output": …}`` or, with ``is_error``, ``{"error": …}``; its images follow.
* ``thinking`` blocks go back to Claude whole (text and signature, when the signature is one this gateway
  handed out for Claude: ``model_rules`` leads the turn with it); Gemini takes thoughts only as
  signatures, so other targets get no thinking parts. ``redacted_thinking`` has no Gemini form: dropped.
* ``thinking`` ``enabled`` (with its budget) / ``adaptive`` (the model's own budget) / ``disabled`` →
  ``thinkingConfig``; without it, only the ``*-thinking`` Claude models think (as in chat).
* ``stop_sequences``, ``max_tokens``, ``temperature``, ``top_p``, ``top_k`` → ``generationConfig``;
  ``tools`` / ``tool_choice`` → ``functionDeclarations`` / ``functionCallingConfig``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from ..openai_api.messages_models import (
    Base64Source,
    DocumentBlock,
    ImageBlock,
    MessageParam,
    MessagesRequest,
    RedactedThinkingBlock,
    TextBlock,
    TextSource,
    ThinkingBlock,
    ToolResultBlock,
    ToolUseBlock,
    UrlSource,
)
from ..openai_api.models import FunctionDefinition, ThinkingOptions
from .chat_request import merge_turns, thinking_config
from .model_rules import SignedPart, family_of, fit_claude, fit_history
from .parts import (
    InlineImage,
    Part,
    can_send,
    check_fetchable_url,
    function_call_part,
    function_response_payload,
    image_from_url,
    inline_part,
    is_http_url,
    text_part,
)
from .signatures import decode_thinking_signature, decode_tool_call_id
from .tools import function_declaration

Images = Mapping[str, InlineImage] | None
_CHOICE_MODES = {"auto": "AUTO", "any": "ANY", "tool": "ANY", "none": "NONE"}


def messages_request_to_gemini(req: MessagesRequest, *, model: str, images: Images = None) -> dict[str, Any]:
    """``model`` is the upstream model id (after mapping): it decides thinking and the history's shape."""
    target = family_of(model)
    signed: list[SignedPart] = []
    contents = messages_to_contents(req.messages, images=images, signed=signed, keep_thinking=target == "c")
    if signed or target == "g3":
        fit_history(contents, signed, target=target)
    out: dict[str, Any] = {}
    if (system := system_instruction(req.system)) is not None:
        out["systemInstruction"] = system
    if req.tools:
        out["tools"] = [
            {
                "functionDeclarations": [
                    function_declaration(
                        FunctionDefinition.model_construct(
                            name=tool.name, description=tool.description, parameters=tool.input_schema
                        ),
                        param=f"tools[{i}]",
                    )
                    for i, tool in enumerate(req.tools)
                ]
            }
        ]
        if req.tool_choice is not None:
            out["toolConfig"] = _tool_config(req)
    if config := generation_config(req, model=model):
        out["generationConfig"] = config
    out["contents"] = contents
    if target == "c":
        fit_claude(out)
    return out


def system_instruction(system: str | Sequence[TextBlock] | None) -> dict[str, Any] | None:
    if system is None:
        return None
    texts = [system] if isinstance(system, str) else [block.text for block in system]
    parts = [text_part(text) for text in texts if text]
    return {"parts": parts} if parts else None


def image_url_params(req: MessagesRequest) -> dict[str, str]:
    """The http(s) URLs of image blocks (in messages and tool results) → the param naming each."""
    found: dict[str, str] = {}
    for i, msg in enumerate(req.messages):
        if isinstance(msg.content, str):
            continue
        for j, block in enumerate(msg.content):
            inner = block.content if isinstance(block, ToolResultBlock) else [block]
            for k, item in enumerate(inner if not isinstance(inner, str) else ()):
                if isinstance(item, ImageBlock) and isinstance(item.source, UrlSource):
                    param = f"messages[{i}].content[{j}]" + (f".content[{k}]" if item is not block else "")
                    param += ".source.url"
                    if is_http_url(item.source.url):
                        check_fetchable_url(item.source.url, param=param)
                        found.setdefault(item.source.url, param)
    return found


# --- messages ------------------------------------------------------------------------------------------


def messages_to_contents(
    messages: Sequence[MessageParam], *, images: Images, signed: list[SignedPart], keep_thinking: bool
) -> list[dict[str, Any]]:
    turns: list[tuple[str, list[Part]]] = []
    calls: dict[str, tuple[str, str | None]] = {}  # tool_use id → (tool name, Gemini's call id)
    for i, msg in enumerate(messages):
        param = f"messages[{i}].content"
        role = "model" if msg.role == "assistant" else "user"
        if isinstance(msg.content, str):
            turns.append((role, [text_part(msg.content)] if msg.content else []))
            continue
        parts: list[Part] = []
        for j, block in enumerate(msg.content):
            parts.extend(
                _block_parts(
                    block,
                    msg.role,
                    param=f"{param}[{j}]",
                    images=images,
                    calls=calls,
                    signed=signed,
                    keep_thinking=keep_thinking,
                )
            )
        turns.append((role, parts))
    contents = merge_turns(turns)
    if not contents:
        raise InvalidRequest("messages: at least one message with content is required", param="messages")
    return contents


def _block_parts(
    block: Any,
    role: str,
    *,
    param: str,
    images: Images,
    calls: dict[str, tuple[str, str | None]],
    signed: list[SignedPart],
    keep_thinking: bool,
) -> list[Part]:
    if isinstance(block, TextBlock):
        return [text_part(block.text)] if block.text else []
    if role == "system":
        message = f"{param}: system messages take 'text' blocks only, got '{block.type}'"
        raise InvalidRequest(message, param=param)
    if isinstance(block, ImageBlock | DocumentBlock):
        return [_media_part(block, param=param, images=images)]
    if isinstance(block, RedactedThinkingBlock):
        return []
    if role == "user" and isinstance(block, ThinkingBlock | ToolUseBlock):
        raise InvalidRequest(f"{param}: '{block.type}' blocks belong to assistant messages", param=param)
    if role == "assistant" and isinstance(block, ToolResultBlock):
        raise InvalidRequest(f"{param}: 'tool_result' blocks belong to user messages", param=param)
    if isinstance(block, ThinkingBlock):
        return _thinking_parts(block, signed=signed, keep=keep_thinking)
    if isinstance(block, ToolUseBlock):
        return [_tool_use_part(block, param=param, calls=calls, signed=signed)]
    return _tool_result_parts(block, param=param, images=images, calls=calls)


def _media_part(block: ImageBlock | DocumentBlock, *, param: str, images: Images) -> Part:
    source = block.source
    if isinstance(source, TextSource):
        return text_part(source.data)
    if isinstance(source, Base64Source):
        if isinstance(block, ImageBlock) and not source.media_type.startswith("image/"):
            raise InvalidRequest(
                f"{param}.source.media_type: {source.media_type!r} is not an image type",
                param=f"{param}.source.media_type",
            )
        if not source.data:
            raise InvalidRequest(f"{param}.source.data: empty", param=f"{param}.source.data")
        return inline_part(source.media_type, source.data)
    if isinstance(block, DocumentBlock):
        raise InvalidRequest(
            f"{param}.source: URL documents are not supported; send the document as base64",
            param=f"{param}.source",
        )
    image = image_from_url(source.url, images=images, param=f"{param}.source.url")
    return inline_part(image.mime_type, image.data_b64)


def _thinking_parts(block: ThinkingBlock, *, signed: list[SignedPart], keep: bool) -> list[Part]:
    """A thinking block, for Claude only: its thought part with the signature this gateway handed out."""
    if not keep or not block.thinking:
        return []
    ref = decode_thinking_signature(block.signature)
    if not ref.signature:
        return []  # unsigned, or another provider's signature: Claude would reject it
    part: Part = {"thought": True, "text": block.thinking}
    signed.append(SignedPart(part, ref.signature, ref.family, block.thinking))
    return [part]


def _tool_use_part(
    block: ToolUseBlock, *, param: str, calls: dict[str, tuple[str, str | None]], signed: list[SignedPart]
) -> Part:
    if not can_send(block.input):
        raise InvalidRequest(f"{param}.input: the JSON nests too deeply", param=f"{param}.input")
    ref = decode_tool_call_id(block.id)
    part = function_call_part(block.name, block.input, gemini_id=ref.gemini_id, signature=ref.signature)
    if ref.signature:
        signed.append(SignedPart(part, ref.signature, ref.family, ref.thought))
    calls[block.id] = (block.name, ref.gemini_id)
    return part


def _tool_result_parts(
    block: ToolResultBlock, *, param: str, images: Images, calls: Mapping[str, tuple[str, str | None]]
) -> list[Part]:
    call = calls.get(block.tool_use_id)
    if call is None:
        raise InvalidRequest(
            f"{param}.tool_use_id: unexpected `tool_use_id` found in `tool_result` blocks: "
            f"{block.tool_use_id}. "
            "Each `tool_result` block must have a corresponding `tool_use` block in a previous message.",
            param=f"{param}.tool_use_id",
        )
    name, gemini_id = call
    media: list[Part] = []
    if isinstance(block.content, str):
        text = block.content
    else:
        text = "\n".join(item.text for item in block.content if isinstance(item, TextBlock))
        media = [
            _media_part(item, param=f"{param}.content[{k}]", images=images)
            for k, item in enumerate(block.content)
            if not isinstance(item, TextBlock)
        ]
    payload = {"error": text} if block.is_error else function_response_payload(text)
    response: dict[str, Any] = {"name": name, "response": payload}
    if gemini_id:
        response["id"] = gemini_id
    return [{"functionResponse": response}, *media]


# --- configuration -------------------------------------------------------------------------------------


def _tool_config(req: MessagesRequest) -> dict[str, Any]:
    choice = req.tool_choice
    assert choice is not None
    calling: dict[str, Any] = {"mode": _CHOICE_MODES[choice.type]}
    if choice.type == "tool":
        names = {tool.name for tool in req.tools or ()}
        if choice.name not in names:
            raise InvalidRequest(
                f"tool_choice.name: no tool named {choice.name!r} in 'tools'", param="tool_choice.name"
            )
        calling["allowedFunctionNames"] = [choice.name]
    return {"functionCallingConfig": calling}


def generation_config(req: MessagesRequest, *, model: str) -> dict[str, Any]:
    fields = (
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("topK", req.top_k),
        ("maxOutputTokens", req.max_tokens),
        ("stopSequences", req.stop_sequences or None),
    )
    config: dict[str, Any] = {key: value for key, value in fields if value is not None}
    if (thinking := _thinking(req, model)) is not None:
        config["thinkingConfig"] = thinking
    return config


def _thinking(req: MessagesRequest, model: str) -> dict[str, Any] | None:
    """Anthropic's thinking switch; absent, only the ``*-thinking`` Claude models think (as in chat)."""
    thinking = req.thinking
    if thinking is None:
        return thinking_config(model, effort=None, thinking=None) if family_of(model) == "c" else None
    kind = "disabled" if thinking.type == "disabled" else "enabled"
    budget = thinking.budget_tokens if thinking.type == "enabled" else None
    return thinking_config(
        model, effort=None, thinking=ThinkingOptions.model_construct(type=kind, budget_tokens=budget)
    )
