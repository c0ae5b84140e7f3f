"""A validated Responses request (``ResponsesCall``) → a Gemini ``GenerateContentRequest`` dict.

Keys come out in the chat translator's order (``systemInstruction, tools, toolConfig, generationConfig,
contents``) and only what the client set is sent.

Items, in order (the history of ``previous_response_id`` first, then ``input``):
* ``instructions``, then ``system`` / ``developer`` messages → ``systemInstruction`` text parts, verbatim.
* ``user`` messages → ``user`` turns; ``assistant`` messages (``output_text``, ``refusal``) → ``model``.
* ``function_call`` → a ``functionCall`` part in a ``model`` turn (namespaced names qualified as in
  ``responses_tools``), with Gemini's call id and ``thoughtSignature`` read back from ``call_id``
  (``signatures.py``). ``custom_tool_call`` → the same with ``args: {"input": <input>}``.
* ``function_call_output`` / ``custom_tool_call_output`` → a ``functionResponse`` in a ``user`` turn, its
  name found through ``call_id`` (an unknown ``call_id`` is a 400); images in the output follow it.
* ``reasoning`` → nothing of its own (Gemini takes thoughts only as signatures). A signature in its
  ``encrypted_content`` goes onto the next model part (text or call) that has none of its own, which is
  where Gemini sent it; a user turn in between drops it. Claude's ``encrypted_content`` carries its
  thought text too and becomes the thinking block leading that model turn; each signature reaches only
  the model family that minted it (``model_rules.py``).
* ``web_search_call`` → nothing. ``item_reference`` items are resolved from the store before translation
  (``endpoints.py``); one that reaches this module is a 400.
* A ``call_id`` of this gateway's that carries no signature (Responses ``call_id``s stay within 64
  characters) finds its Gemini id, signature and the signature's family in ``ResponsesCall.call_refs``
  (the store's fallback).
* Only instructions and system/developer messages: they become the user turn, as OpenAI answers them.
* ``compaction`` (this gateway's) → a user turn with the summary it holds (another provider's is
  dropped: it cannot be read); ``compaction_trigger`` (last only) → a user turn asking for the summary,
  with function calling off (``ResponsesCall.compacts``; the answer is one ``compaction`` item).
Consecutive turns of one role are merged and empty turns dropped (``chat_request.merge_turns``).

Generation config: ``temperature``, ``top_p``, ``max_output_tokens``, ``text.format`` (JSON schema or
JSON object) and ``reasoning.effort`` (the chat translator's thinking table). Thoughts are included
only when ``reasoning.summary`` asks for a summary, as OpenAI returns summaries only then; for Claude
always, since its thinking block has to come back whole on the next turn.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from ..errors import InvalidRequest
from ..openai_api.models import JsonObjectFormat
from ..openai_api.responses_models import (
    CompactionItem,
    CompactionTrigger,
    ContentPart,
    CustomToolCallItem,
    CustomToolCallOutputItem,
    FunctionCallItem,
    FunctionCallOutputItem,
    InputFile,
    InputImage,
    InputItem,
    ItemReference,
    JsonSchemaTextFormat,
    MessageItem,
    ReasoningItem,
    Refusal,
    ResponsesRequest,
)
from .chat_request import merge_turns, thinking_config
from .model_rules import SignedPart, family_of, fit_claude, fit_history
from .parts import (
    InlineImage,
    Part,
    call_arguments,
    check_fetchable_url,
    function_call_part,
    function_response_part,
    image_from_url,
    inline_part,
    is_http_url,
    join_text_parts,
    media_resolution,
    parse_data_url,
    text_part,
)
from .responses_tools import ToolNames, gemini_name, responses_tools_to_gemini
from .schema import clean_schema_for_gemini
from .signatures import ToolCallRef, decode_compaction, decode_reasoning, decode_tool_call_id

Images = Mapping[str, InlineImage] | None
SUMMARY_MODES = frozenset({"auto", "concise", "detailed"})


@dataclass(frozen=True, slots=True)
class ResponsesCall:
    """A validated request with its resolved conversation: ``items`` = stored history + ``input``."""

    request: ResponsesRequest
    model: str
    items: tuple[InputItem, ...]
    history: int = 0  # how many of ``items`` came from ``previous_response_id``
    call_refs: Mapping[str, ToolCallRef] = field(default_factory=dict)  # call_id -> what the store knows

    @property
    def stores(self) -> bool:
        return self.request.store is not False

    @property
    def compacts(self) -> bool:
        """The input ends with a ``compaction_trigger``: the answer is the conversation's summary."""
        return bool(self.items) and isinstance(self.items[-1], CompactionTrigger)


COMPACTION_PROMPT = (
    "Compact the conversation above for your own later use: write a complete, self-contained summary of "
    "everything needed to continue it — the user's goals and requests, decisions made, facts and results "
    "learnt (tool calls and their outcomes, file names, commands, errors), and what remains to be done. "
    "Write only the summary.")
SUMMARY_HEADING = "Summary of the conversation before this point (compacted):\n\n"


def input_items(req: ResponsesRequest) -> tuple[InputItem, ...]:
    """``input`` as items: a string is one user message."""
    if req.input is None:
        return ()
    if isinstance(req.input, str):
        return (MessageItem(role="user", content=req.input),)
    return tuple(req.input)


def responses_request_to_gemini(call: ResponsesCall, *, model: str, images: Images = None) -> dict[str, Any]:
    """``model`` is the upstream model id (after mapping): it decides the thinking parameters."""
    req = call.request
    plan = responses_tools_to_gemini(req.tools, req.tool_choice)
    signed: list[SignedPart] = []
    details: set[str] = set()
    system, contents = items_to_gemini(
        req.instructions, call, names=plan.names, images=images, signed=signed, details=details
    )
    target = family_of(model)
    if signed or target == "g3":
        fit_history(contents, signed, target=target)
    out: dict[str, Any] = {}
    if system is not None:
        out["systemInstruction"] = system
    if plan.tools is not None:
        out["tools"] = plan.tools
    if call.compacts and plan.tools is not None:
        out["toolConfig"] = {"functionCallingConfig": {"mode": "NONE"}}  # the answer is text: the summary
    elif plan.tool_config is not None:
        out["toolConfig"] = plan.tool_config
    config = generation_config(req, model=model)
    if details and target != "c" and (resolution := media_resolution(details)):
        config["mediaResolution"] = resolution
    if config:
        out["generationConfig"] = config
    out["contents"] = contents
    if target == "c":
        fit_claude(out)
    return out


def tool_names(call: ResponsesCall) -> ToolNames:
    return responses_tools_to_gemini(call.request.tools, call.request.tool_choice).names


# --- items -------------------------------------------------------------------------------------------


def items_to_gemini(
    instructions: str | None,
    call: ResponsesCall,
    *,
    names: ToolNames,
    images: Images = None,
    signed: list[SignedPart] | None = None,
    details: set[str] | None = None,
) -> tuple[dict[str, Any] | None, list[dict[str, Any]]]:
    conversation = _Conversation(images, call_refs=call.call_refs, signed=[] if signed is None else signed,
                                 details=details)
    if instructions:
        conversation.system.append(text_part(instructions))
    for i, item in enumerate(call.items):
        param = f"input[{i - call.history}]" if i >= call.history else "previous_response_id"
        conversation.add(item, param=param, last=i == len(call.items) - 1)
    contents = merge_turns(conversation.turns)
    if not contents and conversation.system:
        return None, [{"role": "user", "parts": conversation.system}]  # OpenAI answers a system prompt alone
    if not contents:
        raise InvalidRequest(
            "Invalid 'input': Gemini needs at least one user or assistant message with content; this "
            "request has only instructions, system messages or empty content.",
            param="input",
        )
    system = conversation.system
    return ({"parts": system} if system else None), contents


@dataclass(slots=True)
class _Conversation:
    images: Images
    call_refs: Mapping[str, ToolCallRef] = field(default_factory=dict)
    system: list[Part] = field(default_factory=list)
    turns: list[tuple[str, list[Part]]] = field(default_factory=list)
    calls: dict[str, tuple[str, str | None]] = field(default_factory=dict)  # call_id → (name, Gemini id)
    reasoning: ToolCallRef | None = None  # from a reasoning item, for the next model part
    signed: list[SignedPart] = field(default_factory=list)  # replayed signatures, for model_rules
    details: set[str] | None = None  # image detail values asked for (``parts.media_resolution``)

    def add(self, item: InputItem, *, param: str, last: bool = False) -> None:
        if isinstance(item, MessageItem):
            self._message(item, param)
        elif isinstance(item, FunctionCallItem | CustomToolCallItem):
            self._call(item, param)
        elif isinstance(item, FunctionCallOutputItem | CustomToolCallOutputItem):
            self._output(item, param)
        elif isinstance(item, ReasoningItem):
            ref = decode_reasoning(item.encrypted_content)
            self.reasoning = ref if ref.signature else None
        elif isinstance(item, CompactionItem):
            if (summary := decode_compaction(item.encrypted_content)) is not None:
                self.reasoning = None
                self.turns.append(("user", [text_part(SUMMARY_HEADING + summary)]))
        elif isinstance(item, CompactionTrigger):
            if not last:
                raise InvalidRequest(f"Invalid '{param}': a compaction_trigger must be the last input item.",
                                     param=f"{param}.type")
            self.reasoning = None
            self.turns.append(("user", [text_part(COMPACTION_PROMPT)]))
        elif isinstance(item, ItemReference):
            raise InvalidRequest(
                f"Invalid '{param}': item references are not supported by this gateway; send the item "
                "itself, or chain the request with 'previous_response_id'.",
                param=f"{param}.type",
            )
        # web_search_call: Gemini has nothing to replay

    def _message(self, item: MessageItem, param: str) -> None:
        if item.role in ("system", "developer"):
            if text := _text_only(item.content, param=f"{param}.content"):
                self.system.append(text_part(text))
            return
        parts = content_to_parts(
            item.content, param=f"{param}.content", images=self.images, details=self.details
        )
        if item.role == "user":
            self.reasoning = None
            self.turns.append(("user", parts))
            return
        if parts and self.reasoning is not None:
            parts[0] = {**parts[0], "thoughtSignature": self.reasoning.signature}
            self._sign(parts[0], self.reasoning)
            self.reasoning = None
        self.turns.append(("model", parts))

    def _sign(self, part: Part, ref: ToolCallRef) -> None:
        if ref.signature:
            self.signed.append(SignedPart(part, ref.signature, ref.family, ref.thought))

    def _call(self, item: FunctionCallItem | CustomToolCallItem, param: str) -> None:
        ref = decode_tool_call_id(item.call_id)
        if (known := self.call_refs.get(item.call_id)) is not None:
            signer = ref if ref.signature else known  # a signature keeps its family and thought
            gemini_id = ref.gemini_id or known.gemini_id
            ref = ToolCallRef(gemini_id, signer.signature, signer.family, signer.thought)
        name = gemini_name(item.name, item.namespace)
        if isinstance(item, CustomToolCallItem):
            args: dict[str, Any] = {"input": item.input}
        else:
            args = call_arguments(item.arguments, param=f"{param}.arguments")
        signing, reasoning = ref, self.reasoning
        if reasoning is not None and (reasoning.thought or not ref.signature):
            signing = reasoning  # Claude's whole thinking block, or the signature the call itself lacks
        part = function_call_part(name, args, gemini_id=ref.gemini_id, signature=signing.signature)
        self._sign(part, signing)
        self.reasoning = None
        self.calls[item.call_id] = (name, ref.gemini_id)
        self.turns.append(("model", [part]))

    def _output(self, item: FunctionCallOutputItem | CustomToolCallOutputItem, param: str) -> None:
        call = self.calls.get(item.call_id)
        if call is None:
            raise InvalidRequest(
                f"Invalid '{param}.call_id': no function_call or custom_tool_call item before it has the "
                f"call_id {item.call_id!r}. Send the call together with its output (or chain with "
                "'previous_response_id').",
                param=f"{param}.call_id",
            )
        self.reasoning = None
        name, gemini_id = call
        if isinstance(item.output, str):
            text, media = item.output, []
        else:
            text = "\n".join(p.text for p in item.output if hasattr(p, "text"))
            others = [p for p in item.output if not hasattr(p, "text")]
            media = content_to_parts(others, param=f"{param}.output", images=self.images)
        self.turns.append(("user", [function_response_part(name, text, gemini_id=gemini_id), *media]))


# --- content -----------------------------------------------------------------------------------------


def content_to_parts(
    content: str | Sequence[ContentPart], *, param: str, images: Images, details: set[str] | None = None
) -> list[Part]:
    """Message or tool-output content → Gemini parts; empty text is dropped (Gemini rejects it)."""
    if isinstance(content, str):
        return [text_part(content)] if content else []
    parts: list[Part] = []
    for j, part in enumerate(content):
        if details is not None and isinstance(part, InputImage) and part.detail in ("low", "high"):
            details.add(part.detail)
        if (converted := _part(part, param=f"{param}[{j}]", images=images)) is not None:
            parts.append(converted)
    return parts


def _part(part: ContentPart, *, param: str, images: Images) -> Part | None:
    if isinstance(part, Refusal):
        return text_part(part.refusal) if part.refusal else None
    if isinstance(part, InputImage):
        if part.image_url is None:
            raise InvalidRequest(
                f"'{param}' must carry image_url (an http(s) or base64 data URL); uploaded file ids are "
                "not supported by this gateway.",
                param=f"{param}.image_url",
            )
        image = image_from_url(part.image_url, images=images, param=f"{param}.image_url")
        return inline_part(image.mime_type, image.data_b64)
    if isinstance(part, InputFile):
        return _file_part(part, param=param)
    return text_part(part.text) if part.text else None


def _file_part(part: InputFile, *, param: str) -> Part:
    if part.file_data is None:
        raise InvalidRequest(
            f"'{param}' must carry file_data (a base64 data URL); file ids and file URLs are not supported "
            "by this gateway.",
            param=f"{param}.file_data",
        )
    try:
        data = parse_data_url(part.file_data)
    except ValueError as exc:
        raise InvalidRequest(f"Invalid '{param}.file_data': {exc}.", param=f"{param}.file_data") from None
    return inline_part(data.mime_type, data.data_b64)


def _text_only(content: str | Sequence[ContentPart], *, param: str) -> str:
    if isinstance(content, str):
        return content
    return join_text_parts(content, param=param, allowed_where="in system and developer messages")


def responses_image_url_params(call: ResponsesCall) -> dict[str, str]:
    """The http(s) image URLs to fetch before translation, in order, each with the ``param`` of its first
    use (for the fetcher's error messages)."""
    found: dict[str, str] = {}
    for i, item in enumerate(call.items):
        where = f"input[{i - call.history}]" if i >= call.history else "previous_response_id"
        field_name = "output" if hasattr(item, "output") else "content"
        content = getattr(item, field_name, None)
        if not isinstance(content, list):
            continue
        for j, part in enumerate(content):
            if isinstance(part, InputImage) and part.image_url and is_http_url(part.image_url):
                param = f"{where}.{field_name}[{j}].image_url"
                check_fetchable_url(part.image_url, param=param)
                found.setdefault(part.image_url, param)
    return found


# --- generation config -------------------------------------------------------------------------------


def generation_config(req: ResponsesRequest, *, model: str) -> dict[str, Any]:
    config: dict[str, Any] = {}
    for key, value in (
        ("temperature", req.temperature),
        ("topP", req.top_p),
        ("maxOutputTokens", req.max_output_tokens),
    ):
        if value is not None:
            config[key] = value
    config.update(_text_format(req))
    if (thinking := _thinking(req, model=model)) is not None:
        config["thinkingConfig"] = thinking
    return config


def _text_format(req: ResponsesRequest) -> dict[str, Any]:
    fmt = req.text.format if req.text else None
    if isinstance(fmt, JsonSchemaTextFormat) and fmt.schema_ is not None:
        try:
            schema = clean_schema_for_gemini(fmt.schema_)
        except ValueError as exc:
            raise InvalidRequest(
                f"Invalid schema in 'text.format.schema': {exc}.", param="text.format.schema"
            ) from None
        return {"responseMimeType": "application/json", "responseSchema": schema}
    if isinstance(fmt, JsonObjectFormat | JsonSchemaTextFormat):
        return {"responseMimeType": "application/json"}
    return {}


def _thinking(req: ResponsesRequest, *, model: str) -> dict[str, Any] | None:
    effort = req.reasoning.effort if req.reasoning else None
    config = thinking_config(model, effort=effort, thinking=None)
    if config is None or req.summary_mode in SUMMARY_MODES or family_of(model) == "c":
        return config
    config.pop("includeThoughts", None)
    return config or None
