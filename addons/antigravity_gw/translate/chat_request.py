"""A validated ``ChatCompletionRequest`` → a Gemini ``GenerateContentRequest`` dict (no envelope).

The upstream layer wraps the result for its dialect (Cloud Code ``{"request": …}`` or the public API).
Keys come out in a fixed order for prefix-cache stability: ``systemInstruction, tools, toolConfig,
generationConfig, contents``. Only what the client set is sent: no default temperature, topK or token
limit is injected, and no ``safetySettings`` (Google's defaults apply; a deployment that wants them off
adds them in the upstream layer, not in translation).

Messages:
* ``system`` / ``developer`` → ``systemInstruction.parts``, one text part per message, in order, verbatim.
* ``user`` → ``user``; ``assistant`` → ``model``; ``tool`` / ``function`` → ``functionResponse`` parts in a
  ``user`` turn. Consecutive turns of one role are merged; turns left without parts are dropped.
* A tool result's ``name`` comes from the assistant tool call with the same id. Its ``response`` is
  ``{"output": <value>}`` (the key Gemini documents for function output), where the value is the parsed
  JSON object when the content is a JSON object, else the text. ``id`` is sent only when the tool call id
  carried Gemini's own ``functionCall.id`` (see ``signatures.py``).
* An assistant tool call gets back its ``thoughtSignature`` from its id (Gemini 3 requires it), but only
  for the model family that minted it; Claude gets its thinking block (text and signature, from the id,
  or ``reasoning_content`` beside a Claude signature) leading the turn instead (``model_rules.py``).
  Otherwise ``reasoning_content`` is not sent: Gemini only accepts thoughts as signatures, and the
  gateway does not invent any.
* An assistant message's images (an image model's earlier answer: markdown data-URL images in its content
  and / or the echoed ``images`` list) go back as ``inlineData`` parts carrying the signature of their
  ``images`` entry (``extra_content.google.thought_signature``), so multi-turn image editing keeps its
  context (``_returned_images``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from ..errors import InvalidRequest
from ..openai_api.completions_models import CompletionRequest
from ..openai_api.models import (
    AssistantImage,
    AssistantMessage,
    ChatCompletionRequest,
    DeveloperMessage,
    FunctionMessage,
    JsonObjectFormat,
    JsonSchemaResponseFormat,
    Message,
    ReasoningEffort,
    SystemMessage,
    TextPart,
    ThinkingOptions,
    ToolMessage,
    UserMessage,
)
from .model_rules import SignedPart, family_of, fit_claude, fit_history
from .parts import (
    InlineImage,
    Part,
    call_arguments,
    content_to_parts,
    content_to_text,
    function_call_part,
    function_response_part,
    image_from_url,
    inline_part,
    media_resolution,
    text_part,
)
from .schema import clean_schema_for_gemini
from .signatures import ToolCallRef, decode_tool_call_id
from .tools import tool_choice_to_gemini, tools_to_gemini

Images = Mapping[str, InlineImage] | None

# Claude's budget when the client asks for thinking without saying how much (a *-thinking model, or
# thinking without budget_tokens): what Antigravity's own client sends for Opus (AM, R-C4).
CLAUDE_DEFAULT_BUDGET = 24576
# reasoning_effort → thinkingBudget for models that take a token budget (Gemini 2.5, Claude via Cloud Code).
THINKING_BUDGETS: dict[str, int] = {
    "minimal": 1024,
    "low": 4096,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
}
# The largest budget each family accepts; a larger effort is capped rather than rejected.
_BUDGET_CAPS = {"gemini-2.5-flash": 24576, "gemini-2.5-pro": 32768}
# reasoning_effort → thinkingLevel for Gemini 3 (Flash knows four levels, Pro two).
_LEVELS = {
    "gemini-3-flash": {
        "none": "minimal",
        "minimal": "minimal",
        "low": "low",
        "medium": "medium",
        "high": "high",
        "xhigh": "high",
    },
    "gemini-3": {
        "none": "low",
        "minimal": "low",
        "low": "low",
        "medium": "high",
        "high": "high",
        "xhigh": "high",
    },
}
# Thinking switched off ("none" / thinking.type "disabled"), per family; absent = leave the model alone.
_DISABLED: dict[str, dict[str, Any]] = {
    "gemini-2.5-flash": {"thinkingBudget": 0},
    "gemini-2.5-pro": {"thinkingBudget": 128},  # 2.5 Pro cannot stop thinking; 128 is its minimum
    "gemini-3-flash": {"thinkingLevel": "minimal"},
    "gemini-3": {"thinkingLevel": "low"},
}


def chat_request_to_gemini(
    req: ChatCompletionRequest, *, model: str, images: Images = None
) -> dict[str, Any]:
    """``model`` is the upstream model id (after mapping): it decides the thinking parameters and what the
    history must look like for its family (``model_rules.py``)."""
    signed: list[SignedPart] = []
    details: set[str] = set()
    system, contents = messages_to_gemini(req.messages, images=images, signed=signed, details=details)
    target = family_of(model)
    if signed or target == "g3":
        fit_history(contents, signed, target=target)
    out: dict[str, Any] = {}
    if system is not None:
        out["systemInstruction"] = system
    if (tools := tools_to_gemini(req)) is not None:
        out["tools"] = tools
    if (tool_config := tool_choice_to_gemini(req)) is not None:
        out["toolConfig"] = tool_config
    config = generation_config(req, model=model)
    if details and target != "c" and (resolution := media_resolution(details)):
        config["mediaResolution"] = resolution
    if config:
        out["generationConfig"] = config
    out["contents"] = contents
    if target == "c":
        fit_claude(out)
    return out


# --- messages ------------------------------------------------------------------------------------------


def messages_to_gemini(
    messages: Sequence[Message],
    *,
    images: Images = None,
    signed: list[SignedPart] | None = None,
    details: set[str] | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    """``(systemInstruction or None, contents)``; replayed signatures are listed in ``signed``."""
    system: list[Part] = []
    turns: list[tuple[str, list[Part]]] = []
    calls: dict[str, tuple[str, str | None]] = {}  # tool call id → (function name, Gemini's call id)
    for i, msg in enumerate(messages):
        param = f"messages[{i}]"
        if isinstance(msg, SystemMessage | DeveloperMessage):
            if text := content_to_text(msg.content, param=f"{param}.content"):
                system.append(text_part(text))
        elif isinstance(msg, UserMessage):
            parts = content_to_parts(msg.content, param=f"{param}.content", images=images, details=details)
            turns.append(("user", parts))
        elif isinstance(msg, AssistantMessage):
            parts = _assistant_parts(msg, param=param, images=images, calls=calls, signed=signed)
            turns.append(("model", parts))
        elif isinstance(msg, ToolMessage):
            turns.append(("user", _tool_result_parts(msg, param=param, images=images, calls=calls)))
        else:
            turns.append(("user", _function_result_parts(msg)))
    contents = merge_turns(turns)
    if not contents and system:
        return None, [{"role": "user", "parts": system}]  # OpenAI answers a system prompt alone
    if not contents:
        raise InvalidRequest(
            "Invalid 'messages': Gemini needs at least one user or assistant message with content; "
            "this conversation has only system messages or empty content.",
            param="messages",
        )
    return ({"parts": system} if system else None), contents


def merge_turns(turns: Sequence[tuple[str, list[Part]]]) -> list[dict[str, Any]]:
    """Consecutive turns of one role become one turn; empty turns disappear (Gemini rejects them)."""
    contents: list[dict[str, Any]] = []
    for role, parts in turns:
        if not parts:
            continue
        if contents and contents[-1]["role"] == role:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": role, "parts": list(parts)})
    return contents


def _assistant_parts(
    msg: AssistantMessage,
    *,
    param: str,
    images: Images,
    calls: dict[str, tuple[str, str | None]],
    signed: list[SignedPart] | None,
) -> list[Part]:
    parts = content_to_parts(msg.content, param=f"{param}.content", images=images)
    if msg.images or any("](data:" in p.get("text", "") for p in parts):
        parts = _returned_images(parts, msg.images or (), param=param, signed=signed)
    if not parts and msg.refusal:
        parts.append(text_part(msg.refusal))
    for j, call in enumerate(msg.tool_calls or ()):
        ref = decode_tool_call_id(call.id)
        if ref.signature is None and call.extra_content:
            ref = ToolCallRef(ref.gemini_id, _google_signature(call.extra_content))
        args = call_arguments(call.function.arguments, param=f"{param}.tool_calls[{j}].function.arguments")
        name = call.function.name
        part = function_call_part(name, args, gemini_id=ref.gemini_id, signature=ref.signature)
        parts.append(part)
        if ref.signature and signed is not None:
            thought = ref.thought or (msg.reasoning_content if ref.family == "c" else None)
            signed.append(SignedPart(part, ref.signature, ref.family, thought))
        calls[call.id] = (name, ref.gemini_id)
    if msg.function_call is not None:
        args = call_arguments(msg.function_call.arguments, param=f"{param}.function_call.arguments")
        parts.append(function_call_part(msg.function_call.name, args))
    return parts


# The markdown this gateway writes for an image it answered (``chat_stream.py``): ``![image](data:...)``.
_MARKDOWN_IMAGE = re.compile(r"!\[[^\]]*\]\((data:image/[^)\s]+)\)")


def _returned_images(
    parts: list[Part], images: Sequence[AssistantImage], *, param: str, signed: list[SignedPart] | None
) -> list[Part]:
    """An earlier answer's images go back to Gemini as ``inlineData`` parts with their thought signatures
    (a multi-turn image edit needs them): each markdown data-URL image in the text becomes an image part
    where it stood, signed with the signature of the ``images`` entry of the same URL; an entry the text
    does not show is added after it. An image without a signature goes unsigned: the escape value is for
    function calls only (R-G3). ``images`` entries with http(s) URLs are not this gateway's and are left
    out; markdown that is not a valid data URL stays text."""
    signatures = {image.image_url.url: _google_signature(image.extra_content or {}) for image in images}
    shown: set[str] = set()
    out: list[Part] = []
    for part in parts:
        text = part.get("text")
        if not isinstance(text, str) or part.get("thought") is True or "](data:" not in text:
            out.append(part)
            continue
        start = 0
        for match in _MARKDOWN_IMAGE.finditer(text):
            try:
                image = image_from_url(match[1], images=None, param=f"{param}.content")
            except InvalidRequest:
                continue
            if match.start() > start:
                out.append(text_part(text[start:match.start()]))
            out.append(_signed_image(image, signatures.get(match[1]), signed))
            shown.add(match[1])
            start = match.end()
        if start < len(text):
            out.append(text_part(text[start:]))
    for j, entry in enumerate(images):
        url = entry.image_url.url
        if url in shown or url[:5].lower() != "data:":
            continue
        image = image_from_url(url, images=None, param=f"{param}.images[{j}].image_url")
        out.append(_signed_image(image, signatures[url], signed))
        shown.add(url)
    return out


def _signed_image(image: InlineImage, signature: str | None, signed: list[SignedPart] | None) -> Part:
    part = inline_part(image.mime_type, image.data_b64)
    if signature:
        part["thoughtSignature"] = signature
        if signed is not None:
            signed.append(SignedPart(part, signature, None))  # the family is not recorded: Gemini's
    return part


def _google_signature(extra: Mapping[str, Any]) -> str | None:
    """``extra_content.google.thought_signature``, when it is a non-empty string."""
    google = extra.get("google")
    signature = google.get("thought_signature") if isinstance(google, Mapping) else None
    return signature if isinstance(signature, str) and signature else None


def _tool_result_parts(
    msg: ToolMessage, *, param: str, images: Images, calls: Mapping[str, tuple[str, str | None]]
) -> list[Part]:
    call = calls.get(msg.tool_call_id)
    if call is None:
        raise InvalidRequest(
            f"Invalid '{param}.tool_call_id': messages with role 'tool' must answer a tool call of an "
            f"earlier assistant message, and no tool call has the id {msg.tool_call_id!r}.",
            param=f"{param}.tool_call_id",
        )
    name, gemini_id = call
    if isinstance(msg.content, str):
        text, media = msg.content, []
    else:
        text = "\n".join(p.text for p in msg.content if isinstance(p, TextPart))
        others = [p for p in msg.content if not isinstance(p, TextPart)]
        media = content_to_parts(others, param=f"{param}.content", images=images) if others else []
    return [function_response_part(name, text, gemini_id=gemini_id), *media]


def _function_result_parts(msg: FunctionMessage) -> list[Part]:
    return [function_response_part(msg.name, msg.content or "")]


# --- generation config ---------------------------------------------------------------------------------


def generation_config(req: ChatCompletionRequest, *, model: str) -> dict[str, Any]:
    max_tokens = req.max_completion_tokens if req.max_completion_tokens is not None else req.max_tokens
    config = sampling_config(req, max_output_tokens=max_tokens)
    config.update(_response_format(req))
    if (image := req.image_config) is not None:
        fields = (("aspectRatio", image.aspect_ratio), ("imageSize", image.image_size))
        if imaging := {key: value for key, value in fields if value is not None}:
            config["imageConfig"] = imaging
    if (thinking := thinking_config(model, effort=req.reasoning_effort, thinking=req.thinking)) is not None:
        config["thinkingConfig"] = thinking
    return config


def sampling_config(
    req: ChatCompletionRequest | CompletionRequest, *, max_output_tokens: int | None
) -> dict[str, Any]:
    """The sampling fields chat and legacy completions share, under Gemini's names; only those set."""
    fields = (
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("maxOutputTokens", max_output_tokens),
        ("stopSequences", [req.stop] if isinstance(req.stop, str) else req.stop or None),
        ("candidateCount", req.n),
        ("seed", req.seed),
        ("presencePenalty", req.presence_penalty),
        ("frequencyPenalty", req.frequency_penalty),
    )
    return {key: value for key, value in fields if value is not None}


def _response_format(req: ChatCompletionRequest) -> dict[str, Any]:
    fmt = req.response_format
    if isinstance(fmt, JsonSchemaResponseFormat) and fmt.json_schema.schema_ is not None:
        try:
            schema = clean_schema_for_gemini(fmt.json_schema.schema_)
        except ValueError as exc:
            param = "response_format.json_schema.schema"
            raise InvalidRequest(f"Invalid schema in '{param}': {exc}.", param=param) from None
        return {"responseMimeType": "application/json", "responseSchema": schema}
    if isinstance(fmt, JsonObjectFormat | JsonSchemaResponseFormat):
        return {"responseMimeType": "application/json"}
    return {}


def thinking_family(model: str) -> str | None:
    """Which thinking table applies to an upstream model id; None = not a model known to think."""
    name = model.lower()
    if "-image" in name:
        return None  # image models: thinking support differs per model, so nothing is implied
    if "claude" in name:
        return "claude"
    if "gemini-3" in name:
        return "gemini-3-flash" if "flash" in name else "gemini-3"
    if "gemini-2.5" in name:
        return "gemini-2.5-pro" if "-pro" in name else "gemini-2.5-flash"
    return "thinking" if "-thinking" in name else None


def thinking_config(
    model: str, *, effort: ReasoningEffort | None, thinking: ThinkingOptions | None
) -> dict[str, Any] | None:
    """``thinkingConfig`` for a request, or None to leave the model's default alone.

    ``thinking`` (explicit budget) wins over ``reasoning_effort``. Thoughts are included whenever the
    model thinks, so ``reasoning_content`` can be returned; they are not when the client turned thinking off.
    """
    family = thinking_family(model)
    if thinking is not None and thinking.type == "disabled":
        effort = "none"
    elif thinking is not None:
        config: dict[str, Any] = {"includeThoughts": True}
        if thinking.budget_tokens is not None:
            config["thinkingBudget"] = thinking.budget_tokens
        elif family == "claude":
            config["thinkingBudget"] = CLAUDE_DEFAULT_BUDGET  # Claude thinks only with a budget
        return config
    if effort is None and family == "claude":
        # Claude thinks only when asked, with a budget (includeThoughts alone gives <thinking> tags in text)
        thinks = "-thinking" in model.lower()
        return {"includeThoughts": True, "thinkingBudget": CLAUDE_DEFAULT_BUDGET} if thinks else None
    if effort is None:
        return {"includeThoughts": True} if family is not None else None
    if effort == "none":
        return dict(_DISABLED[family]) if family in _DISABLED else None
    if family in _LEVELS:
        return {"includeThoughts": True, "thinkingLevel": _LEVELS[family][effort]}
    budget = min(THINKING_BUDGETS[effort], _BUDGET_CAPS.get(family or "", THINKING_BUDGETS["xhigh"]))
    return {"includeThoughts": True, "thinkingBudget": budget}
