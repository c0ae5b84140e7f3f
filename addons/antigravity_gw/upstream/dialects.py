"""The two ways to call Gemini, as one interface: Cloud Code ``v1internal`` and the public Gemini API.

Only this module knows Cloud Code's envelope (``{"project", "model", "request": ...}`` going up,
``{"response": ...}`` coming down). The gateway's flows carry a *canonical* request: the public
API's ``/v1beta/models/{model}:{rpc}`` path with a plain GenerateContentRequest body, which a user
can read and edit in mitmweb; each attempt then builds the real call for its account's dialect.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

import orjson

from .accounts import Account

STREAM_RPC = "streamGenerateContent"
UNARY_RPC = "generateContent"
COUNT_TOKENS_RPC = "countTokens"
EMBED_RPC = "batchEmbedContents"
API_KEY_ONLY_RPCS = frozenset({EMBED_RPC})  # Cloud Code has no embeddings call

_CANONICAL = re.compile(r"^/v1beta/models/(?P<model>[^/:]+):(?P<rpc>[A-Za-z]+)(?:\?.*)?$")


def canonical_path(model: str, stream: bool) -> str:
    rpc = STREAM_RPC if stream else UNARY_RPC
    return f"/v1beta/models/{quote(model, safe='')}:{rpc}" + ("?alt=sse" if stream else "")


def parse_canonical_path(path: str) -> tuple[str, bool]:
    """``(model, stream)`` from a canonical path; ``ValueError`` for anything else."""
    m = _CANONICAL.match(path)
    if not m or m["rpc"] not in (STREAM_RPC, UNARY_RPC):
        raise ValueError(f"not a generateContent path: {path!r}")
    return m["model"], m["rpc"] == STREAM_RPC


@dataclass(frozen=True, slots=True)
class UpstreamCall:
    url: str
    headers: dict[str, str]
    body: bytes


@dataclass(frozen=True, slots=True)
class CallContext:
    """Per-request facts a dialect may put in its envelope."""

    request_id: str
    session_key: str = ""
    rpc: str = ""  # another call than generateContent (countTokens, batchEmbedContents); "" = generate


class Dialect(Protocol):
    name: str
    bases: tuple[str, ...]

    def build(self, base: str, model: str, stream: bool, request: dict[str, Any], account: Account,
              credential: str, ctx: CallContext) -> UpstreamCall: ...


def cloudcode_headers(token: str, user_agent: str, project: str = "") -> dict[str, str]:
    """The headers of every Cloud Code call (generate, loadCodeAssist, fetchAvailableModels): the OAuth
    token, Antigravity's user agent, identity encoding (the bytes are read raw), and the billed project."""
    headers = {
        "authorization": f"Bearer {token}",
        "content-type": "application/json",
        "user-agent": user_agent,
        "accept-encoding": "identity",
    }
    if project:
        headers["x-goog-user-project"] = project
    return headers


def session_id_for(account_id: str) -> str:
    """A stable signed 64-bit decimal per account, like Antigravity's own ``request.sessionId``."""
    h = 0xCBF29CE484222325
    for byte in account_id.encode():
        h = ((h ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return str(h - (1 << 64) if h >= 1 << 63 else h)


class CloudCode:
    name = "cloudcode"

    def __init__(self, bases: tuple[str, ...], user_agent: str, *, gemini3_thinking: str = "level") -> None:
        self.bases = bases
        self.user_agent = user_agent
        self.level_as_budget = gemini3_thinking == "budget"

    def build(self, base: str, model: str, stream: bool, request: dict[str, Any], account: Account,
              credential: str, ctx: CallContext) -> UpstreamCall:
        if ctx.rpc:
            return self._other(base, model, request, account, credential, ctx.rpc)
        rpc = f"{STREAM_RPC}?alt=sse" if stream else UNARY_RPC
        if self.level_as_budget:
            request = level_as_budget(request)
        image = is_image_model(model)
        envelope = {
            "project": account.project_id,
            "model": model,
            # image generation is its own request type, without a session (R-I2)
            "request": request if image else {**request, "sessionId": session_id_for(account.id)},
            "userAgent": "antigravity",
            "requestType": "image_gen" if image else "agent",
            "requestId": f"agent/antigravity/{ctx.request_id}",
        }
        headers = cloudcode_headers(credential, self.user_agent, account.project_id)
        return UpstreamCall(f"{base}:{rpc}", headers, orjson.dumps(envelope))

    def _other(self, base: str, model: str, request: dict[str, Any], account: Account, credential: str,
               rpc: str) -> UpstreamCall:
        """countTokens, as gemini-cli sends it: only ``contents`` (system text counted as a user turn)."""
        system = request.get("systemInstruction")
        contents = [{"role": "user", **system}] if system else []
        contents += request.get("contents", [])
        body = {"request": {"model": f"models/{model}", "contents": contents}}
        headers = cloudcode_headers(credential, self.user_agent, account.project_id)
        return UpstreamCall(f"{base}:{rpc}", headers, orjson.dumps(body))


def is_image_model(model: str) -> bool:
    """Antigravity's image models (``gemini-3.1-flash-image``, ``gemini-3-pro-image``...)."""
    return "-image" in model


# ag_cloudcode_gemini3_thinking=budget: Gemini 3's thinkingLevel as the budget of the same depth (the
# translation's reasoning_effort budgets: low 4096, medium 8192, high 24576; minimal is the least).
LEVEL_BUDGETS = {"minimal": 1024, "low": 4096, "medium": 8192, "high": 24576}


def level_as_budget(request: dict[str, Any]) -> dict[str, Any]:
    """The request with ``thinkingConfig.thinkingLevel`` replaced by ``thinkingBudget`` (never both);
    unchanged (the same object) when it has no level."""
    config = request.get("generationConfig")
    if not isinstance(config, dict):
        return request
    thinking = config.get("thinkingConfig")
    if not isinstance(thinking, dict) or "thinkingLevel" not in thinking:
        return request
    budget = LEVEL_BUDGETS.get(str(thinking["thinkingLevel"]).lower(), LEVEL_BUDGETS["high"])
    new_thinking = {k: v for k, v in thinking.items() if k != "thinkingLevel"} | {"thinkingBudget": budget}
    return {**request, "generationConfig": {**config, "thinkingConfig": new_thinking}}


class PublicGemini:
    name = "gemini"

    def __init__(self, base: str) -> None:
        self.bases: tuple[str, ...] = (base,)  # the protocol's type: one base URL is one case

    def build(self, base: str, model: str, stream: bool, request: dict[str, Any], account: Account,
              credential: str, ctx: CallContext) -> UpstreamCall:
        headers = {"x-goog-api-key": credential, "content-type": "application/json",
                   "accept-encoding": "identity"}
        if ctx.rpc == COUNT_TOKENS_RPC:  # the whole request counts: system instruction and tools too
            body = {"generateContentRequest": {"model": f"models/{model}", **request}}
            return UpstreamCall(f"{base}/v1beta/models/{quote(model, safe='')}:{ctx.rpc}", headers,
                                orjson.dumps(body))
        if ctx.rpc:
            return UpstreamCall(f"{base}/v1beta/models/{quote(model, safe='')}:{ctx.rpc}", headers,
                                orjson.dumps(request))
        url = base + canonical_path(model, stream)
        return UpstreamCall(url, headers, orjson.dumps(request))


def unwrap_any(event: dict[str, Any]) -> dict[str, Any]:
    """Both dialects' events: Cloud Code nests the response, the public API does not (and an error is
    never unwrapped). One function for both, not one per dialect: a stream's frames are translated
    before its winner is known, and an edited or replayed flow may hold either."""
    inner = event.get("response")
    return inner if isinstance(inner, dict) and "error" not in event else event


def new_request_id() -> str:
    return os.urandom(8).hex()
