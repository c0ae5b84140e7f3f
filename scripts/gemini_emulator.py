"""Standalone emulator of Google's side of antigravity-gateway, for tests, demos and benchmarks.

It speaks the wire format of the two upstreams the gateway forwards to, on one loopback port:

* Cloud Code ``v1internal`` (OAuth accounts): ``POST {prefix}/v1internal:{method}``, where the
  prefix (``""``, ``/sandbox``, ``/daily`` or anything) stands for one of the three base URLs and is
  recorded as ``base``. Methods: generateContent, streamGenerateContent (``?alt=sse``),
  loadCodeAssist, onboardUser, fetchAvailableModels (with ``quotaInfo``), retrieveUserQuotaSummary,
  countTokens. Bodies are the envelope
  ``{"project","model","request",...}``; answers are wrapped as ``{"response": ..., "traceId": ...}``.
* The public Gemini API (API keys): ``POST /v1beta/models/{model}:{method}`` with
  ``x-goog-api-key`` (or ``?key=``); plain GenerateContentRequest/Response. ``GET /v1beta/models``.
* Google's OAuth endpoints: ``POST /token`` (form ``grant_type=refresh_token``, or
  ``authorization_code`` with the PKCE ``code_verifier`` checked against the challenge),
  ``GET /o/oauth2/v2/auth`` (redirects to the client's ``redirect_uri`` with ``code`` and ``state``,
  as after the user consented) and ``GET /oauth2/v2/userinfo`` (the signed-in email).

Without scripting, a generate call answers ``"echo: <last user turn's text>"`` in three SSE
frames, each written in two TCP writes so clients meet events split across reads. Tests script
everything else through a JSON control API under ``/_emulator/``:

    GET  /_emulator/health      {"status": "ok"}
    POST /_emulator/reset       rules, recorded requests, OAuth state and config back to defaults
    GET  /_emulator/rules       the rules with their remaining ``times``
    POST /_emulator/rules       {"rules": [...]} appends;  PUT replaces
    GET  /_emulator/requests    recorded calls; filters: ?kind=api|token and ?<field>=<value>
    GET  /_emulator/config      the current config
    POST /_emulator/config      merged into the config (dict values merge one level deep)

A rule is ``{"match": {...}, "times": int|null, "reply": {...}}``; the first matching rule with
``times`` left wins and uses one. ``match`` keys: credential, model, rpc, endpoint, base.
``reply`` keys: text, thoughts, thought_signature, function_calls, finish_reason, usage,
prompt_feedback, candidates, events, delay_ms, chunk_delay_ms, cut_after, split, error,
error_mid_stream, status, body, headers, fault, fault_after, stall_ms, trickle_ms. A reply without
content keys keeps the default echo. ``fault`` makes a faulty 200 (HTML, invalid JSON, an error
object, a cut, an invalid event, an empty body, a stall, a trickle) in either dialect; a recorded call
whose client hung up before the answer was complete gets ``"client_closed": true``.
Built-in checks run before the rules: auth (missing, expired or unknown token or key), the
envelope's required fields, the account's model list, and the model rules of Claude (``claude-*``),
Gemini 3 (``gemini-3.1-*``, config ``strict_models``) and image models: signed thinking, prefill, tool
schemas and names, token limits, call signatures and the escape value, image requests
(``MODEL_RULES_DOC``). ``RULE_DOC`` and ``CONFIG_DOC`` below give the details; ``--help`` prints them.

Only aiohttp and orjson are needed, so the script runs outside the gateway's package.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import copy
import hashlib
import logging
import math
import os
import re
import secrets
import signal
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode

import orjson
from aiohttp import web
from aiohttp.tcp_helpers import tcp_nodelay

log = logging.getLogger("gemini_emulator")

Json = dict[str, Any]

# --------------------------------------------------------------------------------------------
# Schema: what the control API accepts
# --------------------------------------------------------------------------------------------

RULE_DOC: Final = """\
rule:  {"match": {...}, "times": int|null (null = unlimited), "reply": {...}}
match (all optional, all must equal the call's field):
  credential   bearer token, API key, or (OAuth) refresh token
  model        upstream model id
  base         path prefix before /v1internal ("", "/sandbox", "/daily"); "/v1beta" for the Gemini API
  rpc          generateContent | streamGenerateContent | countTokens | loadCodeAssist | onboardUser |
               fetchAvailableModels | retrieveUserQuotaSummary | listModels | embedContent |
               batchEmbedContents (API keys only) | token | authorize | userinfo
  endpoint     cloudcode | gemini | oauth | unknown
reply (combine freely):
  text            str (split into 3 frames) or [str, ...] (one frame each)
  thoughts        [str, ...] thought parts, first, one frame each; thought_signature goes on the last
  function_calls  [{"name", "args", "id"?, "thought_signature"?}], one frame each, after text
  images          [{"mime_type", "data" (base64), "thought_signature"?}] inlineData parts, one frame each,
                  after the function calls (an image model's default answer has one PNG)
  finish_reason   default "STOP"; null sends none.    candidates  int, overrides candidateCount
  usage           usageMetadata dict (null: none)     prompt_feedback  e.g. {"blockReason": "SAFETY"}
  events          raw GenerateContentResponse list, sent verbatim (wrapped for Cloud Code)
  delay_ms        before the headers;  chunk_delay_ms  between frames;  split  false: one write a frame
  cut_after       N: send N frames then drop the connection (non-stream: half the body)
  error           {"kind": K, ...}: Google error body and status. K in quota_exhausted,
                  rate_limited, resource_exhausted, capacity, unavailable, unauthenticated,
                  permission_denied, not_found, internal, bad_request, api_quota (public API's 429).
                  Overrides: message, model, status, retry_delay, quota_reset_delay,
                  quota_reset_timestamp, reason, validation_url, metadata, retry_after_header
  error_mid_stream  {"kind": ...}: send cut_after (default 1) frames, then data: {"error": ...}
  status, body    send exactly this (body: JSON value or text);  headers  extra response headers
  fault           a faulty 200 answer, both dialects, stream and not:
                    html           an HTML error page (text/html)
                    invalid_json   a body that is not JSON (stream: that body with no SSE framing)
                    error_in_200   a google.rpc.Status error object (stream: as an event)
                    cut            half the body / half a frame, then the connection drops
                    invalid_event  stream: an event whose data is not JSON (non-stream: invalid_json)
                    empty          headers, then a clean end with no body at all
                    stall          headers, then silence for stall_ms (default 600000)
                    trickle        the normal answer one byte every trickle_ms (default 100)
  fault_after     stream: send this many normal frames before the fault (default 0)"""

CONFIG_DOC: Final = """\
config (POST /_emulator/config merges; POST /_emulator/reset restores):
  models                [name | {"name", "displayName"?, "maxTokens"?, "remainingFraction"?, ...}]
  models_by_credential  {credential: [models]}: that account's own list; other models get 404
  enforce_models        true: models outside the list get 404 for every credential
  projects              {access token: project | null}; default emu-project-<hash of token>
  paid_tier             null | {"id", "name"} added to loadCodeAssist as paidTier
  onboarding            true: loadCodeAssist names no project until onboardUser was called with that token
  quota_groups          {credential: [{"displayName", "buckets": [{"bucketId", "window",
                        "remainingFraction", "resetTime"}]}]} for retrieveUserQuotaSummary; others get
                        the built-in Gemini and "Claude and GPT" groups (5h and weekly buckets)
  strict_models         [model ids] checked by the Gemini 3 signature rules besides every gemini-3.1-* id
                        (claude-* ids always get the Claude rules); see MODEL_RULES_DOC
  min_client_version    null | "X.Y.Z": Cloud Code calls whose User-Agent names an older Antigravity/
                        version get Google's 400 "This version of Antigravity is no longer supported"
  models entries may carry "remainingFraction" and "resetTime" (quotaInfo; null leaves the field out)
  expired_tokens        [access tokens answered 401 UNAUTHENTICATED]
  valid_access_tokens   null (any) | [tokens]; tokens from /token stay valid until they expire
  valid_api_keys        null (any) | [keys]; others get 400 API_KEY_INVALID
  valid_refresh_tokens  null (any) | [refresh tokens]; rotated ones are added automatically
  oauth  {"rotate": bool, "delay_ms": int, "expires_in": int, "invalid_grant": [refresh tokens],
          "fail_status": int|null, "client_id": str|null, "client_secret": str|null, "id_token": bool,
          "login_email": str (who signs in at /o/oauth2/v2/auth), "login_error": str|null (e.g.
          "access_denied": the redirect carries error= instead of code=)}"""

MODEL_RULES_DOC: Final = """\
model rules (built in, before the scripted rules; both dialects; a 400 INVALID_ARGUMENT like Google's):
  claude-*      Claude behind Cloud Code: the Anthropic error comes JSON-encoded inside Google's message.
                Rejected: a conversation ending with a model turn (prefill); a function declaration
                without parameters, or (mode VALIDATED) without properties; a tool name outside
                [A-Za-z0-9_-]{1,64}; a thought part without thoughtSignature, or whose signature was not
                minted by this emulator for exactly that thought text; the skip sentinels or a Gemini
                signature anywhere; with thinking on, a last model turn of the running tool loop that
                does not start with a signed thought part; thinkingBudget < 1024 or >= maxOutputTokens;
                maxOutputTokens > 64000. Thoughts it answers are signed over their whole text.
  *-image*      image models: Cloud Code's requestType must be image_gen; no tools; imageConfig's
                aspectRatio / imageSize from Google's lists; responseModalities with imageConfig is the 500
                CLIProxyAPI#4751 saw; a model turn's image part (a multi-turn edit) without the signature
                this emulator minted for it, or with a skip sentinel. Its default answer is the echo text
                and one signed PNG (inlineData).
  gemini-3.1-*  and config strict_models: thinkingLevel together with thinkingBudget; in the current
                turn (after the last user text) a model turn whose first functionCall has no
                thoughtSignature; a signature this emulator did not mint for a Gemini 3 model; a skip
                sentinel anywhere but on the first functionCall of a model turn. Its function calls and
                thoughts are signed (the first call of an answer, else the last thought)."""

DEFAULT_MODELS: Final = ("gemini-2.5-flash", "gemini-2.5-pro", "gemini-3-flash", "gemini-3-pro-preview")

DEFAULT_CONFIG: Final[Json] = {
    "models": list(DEFAULT_MODELS),
    "models_by_credential": {},
    "enforce_models": False,
    "projects": {},
    "paid_tier": None,
    "onboarding": False,
    "quota_groups": {},
    "min_client_version": None,
    "strict_models": [],
    "expired_tokens": [],
    "valid_access_tokens": None,
    "valid_api_keys": None,
    "valid_refresh_tokens": None,
    "oauth": {
        "rotate": False,
        "delay_ms": 0,
        "expires_in": 3599,
        "invalid_grant": [],
        "fail_status": None,
        "client_id": None,
        "client_secret": None,
        "id_token": False,
        "login_email": "emu-user@example.com",
        "login_error": None,
    },
}
# Config values that are maps: a patch adds or replaces entries instead of replacing the map.
MERGED_CONFIG_KEYS: Final = frozenset({"models_by_credential", "projects", "oauth", "quota_groups"})

MATCH_KEYS: Final = frozenset({"credential", "model", "rpc", "endpoint", "base"})
REPLY_KEYS: Final = frozenset(
    {"images", "text", "thoughts", "thought_signature", "function_calls", "finish_reason", "usage",
     "prompt_feedback", "candidates", "events", "delay_ms", "chunk_delay_ms", "cut_after", "split",
     "error", "error_mid_stream", "status", "body", "headers", "fault", "fault_after", "stall_ms",
     "trickle_ms"}
)
FAULTS: Final = frozenset({"html", "invalid_json", "error_in_200", "cut", "invalid_event", "empty", "stall",
                           "trickle"})
HTML_PAGE: Final = (b"<!DOCTYPE html>\n<html lang=en><meta charset=utf-8><title>Error 502 (Server Error)!!1"
                    b"</title><p><b>502.</b> <ins>That's an error.</ins><p>The server encountered a "
                    b"temporary error and could not complete your request.<p>Please try again in 30 "
                    b"seconds.</html>\n")
# A reply with none of these keeps the default echo content (so a rule can just add a delay).
CONTENT_KEYS: Final = frozenset({"text", "thoughts", "function_calls", "events", "prompt_feedback",
                                "images"})

GENERATE_RPCS: Final = frozenset({"generateContent", "streamGenerateContent"})
CLOUDCODE_RPCS: Final = GENERATE_RPCS | {"countTokens", "loadCodeAssist", "onboardUser",
                                         "fetchAvailableModels", "retrieveUserQuotaSummary"}
GEMINI_RPCS: Final = GENERATE_RPCS | {"countTokens", "listModels", "embedContent", "batchEmbedContents"}
KNOWN_RPCS: Final = {"cloudcode": CLOUDCODE_RPCS, "gemini": GEMINI_RPCS}

JSON_TYPE: Final = "application/json; charset=UTF-8"
LOOPBACK_REDIRECT: Final = re.compile(r"http://(127\.0\.0\.1|localhost|\[::1\]):\d+(/.*)?")  # RFC 8252
OAUTH_SCOPE: Final = (
    "https://www.googleapis.com/auth/cloud-platform https://www.googleapis.com/auth/userinfo.email "
    "https://www.googleapis.com/auth/userinfo.profile openid https://www.googleapis.com/auth/cclog "
    "https://www.googleapis.com/auth/experimentsandconfigs"
)


def validate_rule(rule: Any) -> Json:
    """Check a rule's shape up front, so a typo in a test fails loudly instead of never matching."""
    if not isinstance(rule, dict) or not set(rule) <= {"match", "times", "reply"}:
        raise ValueError(f"a rule is {{match, times, reply}}, got {rule!r}")
    match, reply, times = rule.get("match") or {}, rule.get("reply") or {}, rule.get("times")
    if not isinstance(match, dict) or not set(match) <= MATCH_KEYS:
        raise ValueError(f"match keys are {sorted(MATCH_KEYS)}, got {match!r}")
    if not isinstance(reply, dict) or not set(reply) <= REPLY_KEYS:
        raise ValueError(f"unknown reply keys {sorted(set(reply) - REPLY_KEYS)}")
    if times is not None and (not isinstance(times, int) or times < 0):
        raise ValueError(f"times must be a non-negative int or null, got {times!r}")
    if "fault" in reply and reply["fault"] not in FAULTS:
        raise ValueError(f"fault must be one of {sorted(FAULTS)}, got {reply['fault']!r}")
    for key in ("error", "error_mid_stream"):
        if key in reply and (reply[key] or {}).get("kind") not in ERROR_KINDS:
            raise ValueError(f"{key}.kind must be one of {sorted(ERROR_KINDS)}, got {reply[key]!r}")
    return {"match": dict(match), "times": times, "reply": dict(reply)}


def merge_config(config: Json, patch: Any) -> None:
    """Merge a control-API patch into ``config``; unknown keys are rejected to catch typos."""
    if not isinstance(patch, dict) or not set(patch) <= set(DEFAULT_CONFIG):
        raise ValueError(f"config keys are {sorted(DEFAULT_CONFIG)}, got {patch!r}")
    oauth_patch = patch.get("oauth") or {}
    if not set(oauth_patch) <= set(DEFAULT_CONFIG["oauth"]):
        raise ValueError(f"oauth keys are {sorted(DEFAULT_CONFIG['oauth'])}, got {oauth_patch!r}")
    for key, value in patch.items():
        if key in MERGED_CONFIG_KEYS and isinstance(value, dict):
            config[key].update(copy.deepcopy(value))
        else:
            config[key] = copy.deepcopy(value)


# --------------------------------------------------------------------------------------------
# Small pure helpers
# --------------------------------------------------------------------------------------------


def short_hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def count_tokens(text: str) -> int:
    """A plausible token count (about 4 characters a token), stable for golden tests."""
    return math.ceil(len(text) / 4)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_duration(text: str) -> float:
    """Seconds in a protobuf/Go duration string: "45.8s", "539ms", "1h2m3.5s"."""
    if match := re.fullmatch(r"([\d.]+)ms", text):
        return float(match[1]) / 1000
    match = re.fullmatch(r"(?:(\d+)h)?(?:(\d+)m)?(?:([\d.]+)s)?", text)
    if not match or not text:
        raise ValueError(f"not a duration: {text!r}")
    hours, minutes, seconds = (float(group or 0) for group in match.groups())
    return hours * 3600 + minutes * 60 + seconds


def human_duration(seconds: float) -> str:
    """Go's Duration style, as in Google's "Your quota will reset after 1h2m3s." messages."""
    whole = int(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes}m{secs}s"
    return f"{minutes}m{secs}s" if minutes else f"{secs}s"


def display_name(model: str) -> str:
    return " ".join(word.capitalize() for word in model.split("-"))


def text_parts(content: Json) -> list[str]:
    parts = content.get("parts") or []
    return [p["text"] for p in parts if isinstance(p.get("text"), str) and not p.get("thought")]


def last_user_text(request: Json) -> str:
    """Text of the last user turn, joined by newlines; "" when that turn has no text parts."""
    for content in reversed(request.get("contents") or []):
        if content.get("role", "user") == "user":
            return "\n".join(text_parts(content))
    return ""


def prompt_tokens(request: Json) -> int:
    contents = [*(request.get("contents") or []), request.get("systemInstruction") or {}]
    size = 0
    for content in contents:
        for part in content.get("parts") or []:
            text = part.get("text")
            size += len(text) if isinstance(text, str) else len(orjson.dumps(part))
    return max(1, math.ceil(size / 4))


def split_text(text: str, pieces: int = 3) -> list[str]:
    """Cut ``text`` into ``pieces`` nearly equal non-empty chunks (fewer when it is shorter)."""
    count = min(pieces, len(text))
    return [text[i * len(text) // count : (i + 1) * len(text) // count] for i in range(count)]


# --------------------------------------------------------------------------------------------
# Google error bodies (pure)
# --------------------------------------------------------------------------------------------

CLOUDCODE_DOMAIN: Final = "cloudcode-pa.googleapis.com"
ERROR_INFO: Final = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO: Final = "type.googleapis.com/google.rpc.RetryInfo"

CAPACITY_MESSAGE: Final = (
    "You have exhausted your capacity on this model. Your quota will reset after {reset}."
)
# kind -> (HTTP status, google.rpc status, default message; {model}, {reset}, {delay} are filled in)
ERROR_KINDS: Final[dict[str, tuple[int, str, str]]] = {
    "quota_exhausted": (429, "RESOURCE_EXHAUSTED", CAPACITY_MESSAGE),
    "rate_limited": (429, "RESOURCE_EXHAUSTED", CAPACITY_MESSAGE),
    "resource_exhausted": (429, "RESOURCE_EXHAUSTED", "Resource has been exhausted (e.g. check quota)."),
    "api_quota": (429, "RESOURCE_EXHAUSTED",
                  "You exceeded your current quota, please check your plan and billing details. For more "
                  "information on this error, head to: https://ai.google.dev/gemini-api/docs/rate-limits.\n"
                  "* Quota exceeded for metric: generativelanguage.googleapis.com/"
                  "generate_content_free_tier_requests, limit: 10, model: {model}\nPlease retry in {delay}."),
    "capacity": (503, "UNAVAILABLE", "No capacity available for model {model} on the server"),
    "unavailable": (503, "UNAVAILABLE", "The service is currently unavailable."),
    "unauthenticated": (401, "UNAUTHENTICATED",
                        "Request had invalid authentication credentials. Expected OAuth 2 access token, "
                        "login cookie or other valid authentication credential. See "
                        "https://developers.google.com/identity/sign-in/web/devconsole-project."),
    "permission_denied": (403, "PERMISSION_DENIED", "The caller does not have permission"),
    "not_found": (404, "NOT_FOUND", "Requested entity was not found."),
    "internal": (500, "INTERNAL", "Internal error encountered."),
    "bad_request": (400, "INVALID_ARGUMENT", "Request contains an invalid argument."),
}
DEFAULT_DELAYS: Final = {"quota_exhausted": "3600s", "rate_limited": "1.5s", "api_quota": "45.837906927s"}
VALIDATION_URL: Final = (
    "https://accounts.google.com/signin/continue?sarp=1&scc=1&continue=https://developers.google.com/"
    "gemini-code-assist/auth/auth_success_gemini&plt=emu&flowName=GlifWebSignIn&authuser"
)


@dataclass(frozen=True)
class ErrorReply:
    status: int
    body: Json
    headers: dict[str, str] = field(default_factory=dict)


def status_body(code: int, status: str, message: str, details: list[Json] | None = None) -> Json:
    error: Json = {"code": code, "message": message, "status": status}
    if details:
        error["details"] = details
    return {"error": error}


def google_error(spec: Json, model: str | None, now: datetime) -> ErrorReply:
    """Build the body Google sends for an error ``kind`` (see RULE_DOC), with the spec's overrides."""
    kind = spec["kind"]
    code, status, template = ERROR_KINDS[kind]
    code = spec.get("status", code)
    model = spec.get("model") or model or "gemini-2.5-flash"
    retry_delay = spec.get("retry_delay") or spec.get("quota_reset_delay") or DEFAULT_DELAYS.get(kind, "1s")
    reset_delay = spec.get("quota_reset_delay") or retry_delay
    fields = {"model": model, "reset": human_duration(parse_duration(reset_delay)), "delay": retry_delay}
    if kind == "permission_denied" and spec.get("reason") == "VALIDATION_REQUIRED":
        template = "Verify your account to continue."
    message = spec.get("message") or template.format(**fields)
    details = ERROR_DETAILS.get(kind, no_details)(spec, model, retry_delay, reset_delay, now)
    return ErrorReply(code, status_body(code, status, message, details), retry_after(spec, retry_delay))


def retry_after(spec: Json, retry_delay: str) -> dict[str, str]:
    value = spec.get("retry_after_header")
    if value is None or value is False:
        return {}
    seconds = math.ceil(parse_duration(retry_delay)) if value is True else value
    return {"Retry-After": str(seconds)}


def no_details(spec: Json, model: str, retry_delay: str, reset_delay: str, now: datetime) -> list[Json]:
    return []


def quota_details(spec: Json, model: str, retry_delay: str, reset_delay: str, now: datetime) -> list[Json]:
    metadata: Json = {"model": model, "quotaResetDelay": reset_delay}
    stamp = spec.get("quota_reset_timestamp")
    if spec["kind"] == "quota_exhausted":
        # A quota lock names its wall-clock end; a short rate limit gives only the delay.
        stamp = stamp or rfc3339(now + timedelta(seconds=parse_duration(reset_delay)))
        metadata = {"uiMessage": "true", **metadata}
    if stamp:
        metadata["quotaResetTimeStamp"] = stamp
    reason = "QUOTA_EXHAUSTED" if spec["kind"] == "quota_exhausted" else "RATE_LIMIT_EXCEEDED"
    info = {"@type": ERROR_INFO, "reason": reason, "domain": CLOUDCODE_DOMAIN,
            "metadata": {**metadata, **spec.get("metadata", {})}}
    return [info, {"@type": RETRY_INFO, "retryDelay": retry_delay}]


def api_quota_details(spec: Json, model: str, retry_delay: str, reset_delay: str,
                      now: datetime) -> list[Json]:
    # The public API puts whole seconds in RetryInfo but the exact delay in the message.
    violation = {"quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
                 "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
                 "quotaDimensions": {"location": "global", "model": model}, "quotaValue": "10"}
    help_link = {"description": "Learn more about Gemini API quotas",
                 "url": "https://ai.google.dev/gemini-api/docs/rate-limits"}
    return [{"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [violation]},
            {"@type": "type.googleapis.com/google.rpc.Help", "links": [help_link]},
            {"@type": RETRY_INFO, "retryDelay": f"{int(parse_duration(retry_delay))}s"}]


def capacity_details(spec: Json, model: str, retry_delay: str, reset_delay: str, now: datetime) -> list[Json]:
    return [{"@type": ERROR_INFO, "reason": "MODEL_CAPACITY_EXHAUSTED", "domain": CLOUDCODE_DOMAIN,
             "metadata": {"model": model, **spec.get("metadata", {})}}]


def permission_details(spec: Json, model: str, retry_delay: str, reset_delay: str,
                       now: datetime) -> list[Json]:
    reason = spec.get("reason")
    if not reason:
        return []
    metadata: Json = dict(spec.get("metadata", {}))
    if reason == "VALIDATION_REQUIRED":
        url = spec.get("validation_url", VALIDATION_URL)
        metadata = {"validation_error_message": "Verify your account to continue.",
                    "validation_url_link_text": "Verify your account", "validation_url": url,
                    "validation_learn_more_link_text": "Learn more",
                    "validation_learn_more_url": "https://support.google.com/accounts?p=al_alert", **metadata}
    return [{"@type": ERROR_INFO, "reason": reason, "domain": CLOUDCODE_DOMAIN, "metadata": metadata}]


ERROR_DETAILS: Final = {
    "quota_exhausted": quota_details,
    "rate_limited": quota_details,
    "api_quota": api_quota_details,
    "capacity": capacity_details,
    "permission_denied": permission_details,
}


def bad_argument(message: str, field_name: str | None = None) -> ErrorReply:
    details = None
    if field_name:
        violation = {"field": field_name, "description": f"Required field {field_name} is missing"}
        details = [{"@type": "type.googleapis.com/google.rpc.BadRequest", "fieldViolations": [violation]}]
    return ErrorReply(400, status_body(400, "INVALID_ARGUMENT", message, details))


MISSING_CREDENTIALS: Final = ErrorReply(401, status_body(
    401, "UNAUTHENTICATED",
    "Request is missing required authentication credential. Expected OAuth 2 access token, login cookie or "
    "other valid authentication credential. See https://developers.google.com/identity/sign-in/web/devconsole-project.",
))
UNREGISTERED_CALLER: Final = ErrorReply(403, status_body(
    403, "PERMISSION_DENIED",
    "Method doesn't allow unregistered callers (callers without established identity). Please use API Key "
    "or other form of API consumer identity to call this API.",
))
INVALID_API_KEY: Final = ErrorReply(400, status_body(
    400, "INVALID_ARGUMENT", "API key not valid. Please pass a valid API key.",
    [{"@type": ERROR_INFO, "reason": "API_KEY_INVALID", "domain": "googleapis.com",
      "metadata": {"service": "generativelanguage.googleapis.com"}}],
))


# --------------------------------------------------------------------------------------------
# Response building (pure): reply spec -> GenerateContentResponse events -> SSE frames
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class GenContext:
    model: str
    candidates: int
    prompt_tokens: int
    response_id: str


def default_reply(request: Json) -> Json:
    """The echo answer; a tiny ``maxOutputTokens`` truncates it the way Google does (MAX_TOKENS)."""
    user_text = last_user_text(request)
    text = f"echo: {user_text}" if user_text else "Hello from the emulator"
    limit = (request.get("generationConfig") or {}).get("maxOutputTokens")
    if isinstance(limit, int) and limit < 5:
        return {"text": text[: 4 * max(limit, 0)], "finish_reason": "MAX_TOKENS"}
    return {"text": text}


def text_chunks(text: str | list[str] | None) -> list[str]:
    if text is None:
        return []
    return list(text) if isinstance(text, list) else split_text(text)


def function_call_part(call: Json) -> Json:
    function_call: Json = {"name": call["name"], "args": call.get("args", {})}
    if "id" in call:
        function_call["id"] = call["id"]
    part: Json = {"functionCall": function_call}
    if call.get("thought_signature"):
        part["thoughtSignature"] = call["thought_signature"]
    return part


def candidate_frames(reply: Json, index: int) -> list[list[Json]]:
    """Parts of candidate ``index``, one list per frame: thoughts, then text, then function calls."""
    thoughts = reply.get("thoughts") or []
    frames: list[list[Json]] = []
    for position, thought in enumerate(thoughts):
        part: Json = {"text": thought, "thought": True}
        if position == len(thoughts) - 1 and reply.get("thought_signature"):
            part["thoughtSignature"] = reply["thought_signature"]
        frames.append([part])
    chunks = text_chunks(reply.get("text"))
    if index and chunks:
        chunks[-1] += f" [{index}]"
    frames += [[{"text": chunk}] for chunk in chunks]
    frames += [[function_call_part(call)] for call in reply.get("function_calls") or []]
    frames += [[image_part(image)] for image in reply.get("images") or []]
    return frames


def image_part(image: Json) -> Json:
    part: Json = {"inlineData": {"mimeType": image.get("mime_type", "image/png"), "data": image["data"]}}
    if image.get("thought_signature"):
        part["thoughtSignature"] = image["thought_signature"]
    return part


def estimate_usage(per_candidate: list[list[list[Json]]], ctx: GenContext) -> Json:
    """Counts over each candidate's whole text (not per chunk), so they do not depend on the split."""
    answer = thoughts = 0
    for frames in per_candidate:
        parts = [part for frame in frames for part in frame]
        thoughts += count_tokens("".join(p["text"] for p in parts if p.get("thought")))
        answer += count_tokens("".join(p.get("text", "") for p in parts if not p.get("thought")))
        calls = [orjson.dumps(p["functionCall"]).decode() for p in parts if "functionCall" in p]
        answer += sum(map(count_tokens, calls))
    usage = {"promptTokenCount": ctx.prompt_tokens, "candidatesTokenCount": answer,
             "totalTokenCount": ctx.prompt_tokens + answer + thoughts}
    if thoughts:
        usage["thoughtsTokenCount"] = thoughts
    return usage


def make_event(parts_by_candidate: Sequence[list[Json]], finish: str | None) -> Json:
    candidates = []
    for index, parts in enumerate(parts_by_candidate):
        candidate: Json = {"content": {"role": "model", "parts": parts}}
        if finish:
            candidate["finishReason"] = finish
        candidate["index"] = index
        candidates.append(candidate)
    return {"candidates": candidates}


def stamp_event(event: Json, ctx: GenContext, usage: Json | None) -> Json:
    if usage is not None:
        event["usageMetadata"] = usage
    event["modelVersion"] = ctx.model
    event["responseId"] = ctx.response_id
    return event


def build_events(reply: Json, ctx: GenContext) -> list[Json]:
    """The stream of GenerateContentResponse events for a reply spec (see RULE_DOC)."""
    if "events" in reply:
        return copy.deepcopy(reply["events"])
    count = reply.get("candidates") or ctx.candidates
    per_candidate = [candidate_frames(reply, index) for index in range(count)]
    usage = reply["usage"] if "usage" in reply else estimate_usage(per_candidate, ctx)
    if not per_candidate[0] and "prompt_feedback" in reply:
        return [stamp_event({"promptFeedback": reply["prompt_feedback"]}, ctx, usage)]
    if not per_candidate[0]:
        per_candidate = [[[{"text": ""}]] for _ in range(count)]
    frames = list(zip(*per_candidate, strict=True))
    finish = reply.get("finish_reason", "STOP")
    events = [make_event(parts, finish if i == len(frames) - 1 else None) for i, parts in enumerate(frames)]
    if "prompt_feedback" in reply:
        events[0]["promptFeedback"] = reply["prompt_feedback"]
    for event in events[:-1]:
        stamp_event(event, ctx, None)
    stamp_event(events[-1], ctx, usage)
    return events


def append_part(parts: list[Json], part: Json) -> None:
    """Non-stream answers carry one text part per run, as Google's do, not one per stream chunk."""
    last = parts[-1] if parts else {}
    mergeable = "text" in last and "text" in part and "thoughtSignature" not in last
    if mergeable and bool(last.get("thought")) == bool(part.get("thought")):
        last["text"] += part["text"]
        if "thoughtSignature" in part:
            last["thoughtSignature"] = part["thoughtSignature"]
    else:
        parts.append(dict(part))


RESPONSE_KEY_ORDER: Final = ("candidates", "promptFeedback", "usageMetadata", "modelVersion", "responseId")


def in_order(mapping: Json, first: Sequence[str], last: Sequence[str] = ()) -> Json:
    keys = [k for k in first if k in mapping]
    keys += [k for k in mapping if k not in first and k not in last] + [k for k in last if k in mapping]
    return {k: mapping[k] for k in keys}


def merge_events(events: list[Json]) -> Json:
    """Fold stream events into the single response ``generateContent`` returns."""
    candidates: dict[int, Json] = {}
    merged: Json = {}
    for event in events:
        for candidate in event.get("candidates") or []:
            index = candidate.get("index", 0)
            into = candidates.setdefault(index, {"content": {"role": "model", "parts": []}})
            for part in (candidate.get("content") or {}).get("parts") or []:
                append_part(into["content"]["parts"], part)
            into.update({k: v for k, v in candidate.items() if k not in ("content", "index")})
        merged.update({k: v for k, v in event.items() if k != "candidates"})
    if candidates:
        ordered = [{**candidates[i], "index": i} for i in sorted(candidates)]
        merged["candidates"] = [in_order(candidate, ["content"], ["index"]) for candidate in ordered]
    return in_order(merged, RESPONSE_KEY_ORDER)


def wrap_event(event: Json, endpoint: str, trace_id: str) -> Json:
    """Cloud Code wraps every response in ``{"response": ..., "traceId": ...}``; the public API does not."""
    return {"response": event, "traceId": trace_id} if endpoint == "cloudcode" else event


def encode_frame(payload: Json) -> bytes:
    return b"data: " + orjson.dumps(payload) + b"\r\n\r\n"


def split_frame(frame: bytes) -> tuple[bytes, bytes]:
    """Cut a ``data: {...}\\r\\n\\r\\n`` frame in the middle of its JSON (bytes, so maybe inside UTF-8)."""
    middle = 6 + (len(frame) - 10) // 2
    return frame[:middle], frame[middle:]


# --------------------------------------------------------------------------------------------
# State
# --------------------------------------------------------------------------------------------


@dataclass
class Call:
    """One request to a non-control endpoint, as recorded and as matched by rules."""

    method: str
    path: str
    base: str
    endpoint: str
    rpc: str | None
    model: str | None
    credential: str | None
    headers: dict[str, str]
    query: dict[str, str]
    body: Any
    seq: int = 0
    time: float = 0.0
    family: str | None = None  # which model rules apply (MODEL_RULES_DOC), set by the checks

    def record(self) -> Json:
        return {"seq": self.seq, "time": self.time, "method": self.method, "path": self.path,
                "base": self.base, "endpoint": self.endpoint, "rpc": self.rpc, "model": self.model,
                "credential": self.credential, "headers": self.headers, "query": self.query,
                "body": self.body}


@dataclass
class OAuthState:
    issued: int = 0
    access_tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry (epoch s)
    revoked: set[str] = field(default_factory=set)  # refresh tokens replaced by rotation
    rotated: set[str] = field(default_factory=set)  # refresh tokens handed out by rotation
    codes: dict[str, Json] = field(default_factory=dict)  # authorization code -> what /token must check
    emails: dict[str, str] = field(default_factory=dict)  # access or refresh token -> signed-in email
    onboarded: dict[str, str] = field(default_factory=dict)  # access token -> project onboardUser made


class EmulatorState:
    """Rules, recorded calls, config and OAuth state; the handlers keep none of their own."""

    def __init__(self, config: Json | None = None) -> None:
        self._initial = copy.deepcopy(DEFAULT_CONFIG)
        merge_config(self._initial, config or {})
        self.reset()

    def reset(self) -> None:
        self.config: Json = copy.deepcopy(self._initial)
        self.rules: list[Json] = []
        self.requests: list[Json] = []
        self.oauth = OAuthState()

    def configure(self, patch: Json) -> None:
        merge_config(self.config, patch)

    def add_rules(self, rules: list[Json]) -> None:
        self.rules += [validate_rule(rule) for rule in rules]

    def set_rules(self, rules: list[Json]) -> None:
        self.rules = [validate_rule(rule) for rule in rules]

    def record(self, call: Call) -> Json:
        call.seq, call.time = len(self.requests) + 1, time.time()
        self.requests.append(call.record())
        return self.requests[-1]

    def find_requests(self, filters: dict[str, str]) -> list[Json]:
        kinds = {"api": {"cloudcode", "gemini"}, "token": {"oauth"}}
        found = self.requests
        if "kind" in filters:
            found = [r for r in found if r["endpoint"] in kinds.get(filters["kind"], set())]
        for key, value in filters.items():
            if key != "kind":
                found = [r for r in found if str(r.get(key) if r.get(key) is not None else "") == value]
        return found

    def take_rule(self, call: Call) -> Json | None:
        """The reply of the first matching rule with uses left, using one of them."""
        for rule in self.rules:
            if rule["times"] == 0 or any(getattr(call, k) != v for k, v in rule["match"].items()):
                continue
            if rule["times"] is not None:
                rule["times"] -= 1
            return rule["reply"]
        return None

    # Credentials and accounts

    def bearer_error(self, token: str | None) -> ErrorReply | None:
        if not token:
            return MISSING_CREDENTIALS
        expiry = self.oauth.access_tokens.get(token)
        allowed = self.config["valid_access_tokens"]
        unknown = allowed is not None and token not in allowed and expiry is None
        if token in self.config["expired_tokens"] or unknown or (expiry is not None and expiry < time.time()):
            return google_error({"kind": "unauthenticated"}, None, datetime.now(UTC))
        return None

    def api_key_error(self, key: str | None) -> ErrorReply | None:
        if not key:
            return UNREGISTERED_CALLER
        allowed = self.config["valid_api_keys"]
        return INVALID_API_KEY if allowed is not None and key not in allowed else None

    def model_entries(self, credential: str | None) -> list[Json]:
        listed = self.config["models_by_credential"].get(credential, self.config["models"])
        return [{"name": m} if isinstance(m, str) else m for m in listed]

    def model_missing(self, credential: str | None, model: str) -> bool:
        own_list = credential in self.config["models_by_credential"]
        if not (own_list or self.config["enforce_models"]):
            return False
        return model not in {entry["name"] for entry in self.model_entries(credential)}

    def project_for(self, token: str) -> str | None:
        return self.config["projects"].get(token, f"emu-project-{short_hash(token)}")

    # OAuth

    def refresh(self, form: dict[str, str]) -> tuple[int, Json]:
        """Google's refresh_token grant: client check, then grant check, then a new access token."""
        if form.get("grant_type") == "authorization_code":
            return self.exchange_code(form)
        if form.get("grant_type") != "refresh_token":
            return 400, {"error": "unsupported_grant_type",
                         "error_description": f"Invalid grant_type: {form.get('grant_type', '')}"}
        if client_error := self.client_error(form):
            return client_error
        refresh_token = form.get("refresh_token")
        if not refresh_token:
            return 400, {"error": "invalid_request",
                         "error_description": "Missing required parameter: refresh_token"}
        if not self.refresh_token_valid(refresh_token):
            return 400, {"error": "invalid_grant", "error_description": "Token has been expired or revoked."}
        return 200, self.issue(refresh_token)

    def authorize(self, query: dict[str, str]) -> tuple[int, Json | str]:
        """The consent screen, already clicked through: (302, redirect URL) or (400, what is wrong)."""
        oauth = self.config["oauth"]
        redirect = query.get("redirect_uri", "")
        problems = [name for name, ok in (
            ("response_type", query.get("response_type") == "code"),
            ("client_id", bool(query.get("client_id")) and (oauth["client_id"] is None
                                                            or query["client_id"] == oauth["client_id"])),
            ("redirect_uri", bool(LOOPBACK_REDIRECT.fullmatch(redirect))),
            ("code_challenge", len(query.get("code_challenge", "")) == 43),
            ("code_challenge_method", query.get("code_challenge_method") == "S256"),
            ("scope", "https://www.googleapis.com/auth/cloud-platform" in query.get("scope", "").split()),
        ) if not ok]
        if problems:
            return 400, {"error": "invalid_request", "error_description": f"Invalid parameter(s): {problems}"}
        params: dict[str, str] = {"state": query.get("state", "")}
        if oauth["login_error"]:
            params["error"] = oauth["login_error"]
        else:
            code = f"4/0emu-{secrets.token_urlsafe(12)}"
            self.oauth.codes[code] = {"challenge": query["code_challenge"], "redirect_uri": redirect,
                                      "client_id": query["client_id"], "email": oauth["login_email"]}
            params |= {"code": code, "scope": query["scope"]}
        return 302, f"{redirect}{'&' if '?' in redirect else '?'}{urlencode(params)}"

    def exchange_code(self, form: dict[str, str]) -> tuple[int, Json]:
        """The authorization_code grant: client, code (once), redirect_uri and PKCE verifier checked."""
        if client_error := self.client_error(form):
            return client_error
        grant = self.oauth.codes.pop(form.get("code", ""), None)
        if grant is None:
            return 400, {"error": "invalid_grant", "error_description": "Malformed auth code."}
        if form.get("redirect_uri") != grant["redirect_uri"] or form.get("client_id") != grant["client_id"]:
            return 400, {"error": "redirect_uri_mismatch", "error_description": "Bad Request"}
        verifier = form.get("code_verifier", "")
        challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
        if not verifier or challenge != grant["challenge"]:
            return 400, {"error": "invalid_grant", "error_description": "Invalid code verifier."}
        refresh_token = f"1//emu-login-{short_hash(grant['email'])}-{secrets.token_hex(4)}"
        self.oauth.rotated.add(refresh_token)  # valid whatever valid_refresh_tokens says
        body = {**self.issue(refresh_token), "refresh_token": refresh_token}
        self.oauth.emails[refresh_token] = self.oauth.emails[body["access_token"]] = grant["email"]
        return 200, body

    def client_error(self, form: dict[str, str]) -> tuple[int, Json] | None:
        oauth = self.config["oauth"]
        if oauth["client_id"] is not None and form.get("client_id") != oauth["client_id"]:
            return 401, {"error": "invalid_client", "error_description": "The OAuth client was not found."}
        if oauth["client_secret"] is not None and form.get("client_secret") != oauth["client_secret"]:
            return 401, {"error": "invalid_client", "error_description": "Unauthorized"}
        return None

    def refresh_token_valid(self, token: str) -> bool:
        if token in self.oauth.revoked or token in self.config["oauth"]["invalid_grant"]:
            return False
        allowed = self.config["valid_refresh_tokens"]
        return allowed is None or token in allowed or token in self.oauth.rotated

    def issue(self, refresh_token: str) -> Json:
        oauth, self.oauth.issued = self.config["oauth"], self.oauth.issued + 1
        number, tag = self.oauth.issued, short_hash(refresh_token)
        access_token = f"ya29.emu-{tag}-{number}"
        self.oauth.access_tokens[access_token] = time.time() + oauth["expires_in"]
        if refresh_token in self.oauth.emails:  # a signed-in account: its new tokens are the same person
            self.oauth.emails[access_token] = self.oauth.emails[refresh_token]
        body: Json = {"access_token": access_token, "expires_in": oauth["expires_in"]}
        if oauth["rotate"]:
            body["refresh_token"] = f"1//emu-{tag}-r{number}"
            self.oauth.revoked.add(refresh_token)
            self.oauth.rotated.add(body["refresh_token"])
        body |= {"scope": OAUTH_SCOPE, "token_type": "Bearer"}
        if oauth["id_token"]:
            body["id_token"] = fake_id_token(refresh_token)
        return body


def fake_id_token(refresh_token: str) -> str:
    """An unsigned JWT-shaped id_token; clients only ever decode its payload."""
    def segment(value: Json) -> str:
        return base64.urlsafe_b64encode(orjson.dumps(value)).rstrip(b"=").decode()

    tag = short_hash(refresh_token)
    claims = {"iss": "https://accounts.google.com", "sub": tag, "email": f"emu-{tag}@example.com"}
    return f"{segment({'alg': 'none', 'typ': 'JWT'})}.{segment(claims)}.c2ln"


# --------------------------------------------------------------------------------------------
# Writers (I/O)
# --------------------------------------------------------------------------------------------

STATE: Final = web.AppKey("state", EmulatorState)


def json_response(status: int, body: Any, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(status=status, body=orjson.dumps(body), content_type="application/json",
                        charset="UTF-8", headers=headers)


def error_response(error: ErrorReply, extra: dict[str, str] | None = None) -> web.Response:
    return json_response(error.status, error.body, {**error.headers, **(extra or {})})


def raw_response(reply: Json) -> web.Response:
    body = reply.get("body", "")
    headers = reply.get("headers") or {}
    if isinstance(body, str):
        return web.Response(status=reply.get("status", 200), text=body, headers=headers)
    return json_response(reply.get("status", 200), body, headers)


async def pause(milliseconds: float | None) -> None:
    if milliseconds:
        await asyncio.sleep(milliseconds / 1000)


def drop_connection(request: web.Request) -> None:
    # Closing the transport without the chunked terminator is what a cut upstream looks like to a
    # client; aiohttp then swallows the ConnectionResetError its own write_eof() meets.
    if request.transport is not None:
        request.transport.close()


async def write_frame(resp: web.StreamResponse, frame: bytes, split: bool) -> None:
    if not split:
        await resp.write(frame)
        return
    head, tail = split_frame(frame)
    await resp.write(head)
    await asyncio.sleep(0)  # let the first half leave as its own TCP segment
    await resp.write(tail)


async def send_stream(request: web.Request, frames: list[bytes], reply: Json,
                      cut: bool) -> web.StreamResponse:
    """Send SSE frames one write pair each; ``cut`` drops the connection instead of ending cleanly."""
    if request.transport is not None:
        # aiohttp already sets TCP_NODELAY on accepted sockets (BaseProtocol.connection_made); say it
        # again here because split frames must not be coalesced by Nagle, or clients never see splits.
        tcp_nodelay(request.transport, True)
    resp = web.StreamResponse(headers={"Content-Type": "text/event-stream", **(reply.get("headers") or {})})
    await resp.prepare(request)
    for index, frame in enumerate(frames):
        if index:
            await pause(reply.get("chunk_delay_ms"))
        await write_frame(resp, frame, reply.get("split", True))
    if cut:
        drop_connection(request)
    else:
        await resp.write_eof()
    return resp


async def send_truncated(request: web.Request, body: bytes, reply: Json) -> web.StreamResponse:
    """A non-stream body that stops half way, with Content-Length promising all of it."""
    resp = web.StreamResponse(headers={"Content-Type": JSON_TYPE, **(reply.get("headers") or {})})
    resp.content_length = len(body)
    await resp.prepare(request)
    await resp.write(body[: len(body) // 2])
    drop_connection(request)
    return resp


# --------------------------------------------------------------------------------------------
# Handlers
# --------------------------------------------------------------------------------------------

CLOUDCODE_PATH: Final = re.compile(r"(?P<base>.*)/v1internal:(?P<rpc>[A-Za-z]+)")
GEMINI_PATH: Final = re.compile(r"(?P<base>/v1(?:beta|alpha)?)/models/(?P<model>[^/:]+):(?P<rpc>[A-Za-z]+)")
GEMINI_LIST_PATH: Final = re.compile(r"(?P<base>/v1(?:beta|alpha)?)/models/?")


def classify(method: str, path: str) -> tuple[str, str, str | None, str | None]:
    """(endpoint, base, rpc, model from the path) for a request path."""
    if method == "POST" and (m := CLOUDCODE_PATH.fullmatch(path)):
        return "cloudcode", m["base"], m["rpc"], None
    if method == "POST" and (m := GEMINI_PATH.fullmatch(path)):
        return "gemini", m["base"], m["rpc"], m["model"]
    if method == "GET" and (m := GEMINI_LIST_PATH.fullmatch(path)):
        return "gemini", m["base"], "listModels", None
    if method == "POST" and path == "/token":
        return "oauth", "", "token", None
    if method == "GET" and path == "/o/oauth2/v2/auth":
        return "oauth", "", "authorize", None
    if method == "GET" and path == "/oauth2/v2/userinfo":
        return "oauth", "", "userinfo", None
    return "unknown", "", None, None


async def read_body(request: web.Request, endpoint: str) -> Any:
    """Form fields for the token endpoint, else JSON whatever the Content-Type says, else text."""
    if endpoint == "oauth" and request.content_type == "application/x-www-form-urlencoded":
        return dict((await request.post()).items())
    raw = await request.read()
    if not raw:
        return None
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return raw.decode(errors="replace")


def credential_of(request: web.Request, endpoint: str, body: Any) -> str | None:
    if endpoint == "cloudcode":
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer":
            return None
        return token.strip() or None
    if endpoint == "gemini":
        return request.headers.get("x-goog-api-key") or request.query.get("key")
    if endpoint == "oauth" and request.path == "/oauth2/v2/userinfo":
        scheme, _, token = request.headers.get("Authorization", "").partition(" ")
        return token.strip() if scheme.lower() == "bearer" else None
    if endpoint == "oauth" and isinstance(body, dict):
        return body.get("refresh_token")
    return None


def model_of(endpoint: str, path_model: str | None, body: Any) -> str | None:
    if endpoint != "cloudcode" or not isinstance(body, dict):
        return path_model
    if isinstance(body.get("model"), str):
        return body["model"]
    inner = body.get("request")
    nested = inner.get("model") if isinstance(inner, dict) else None
    return nested.removeprefix("models/") if isinstance(nested, str) else None


async def describe(request: web.Request) -> Call:
    endpoint, base, rpc, path_model = classify(request.method, request.path)
    body = await read_body(request, endpoint)
    headers = {k.lower(): v for k, v in request.headers.items()}
    return Call(method=request.method, path=request.path, base=base, endpoint=endpoint, rpc=rpc,
                model=model_of(endpoint, path_model, body), credential=credential_of(request, endpoint, body),
                headers=headers, query=dict(request.query), body=body)


async def handle_upstream(request: web.Request) -> web.StreamResponse:
    """Every non-control request: record it, then answer as the matching Google endpoint would."""
    state = request.app[STATE]
    call = await describe(request)
    request[RECORD] = state.record(call)
    try:
        return await answer_upstream(request, state, call)
    except ConnectionError:  # the client hung up mid-answer (aiohttp's reset error is one)
        request[RECORD]["client_closed"] = True
        return web.Response(status=499)


# The recorded call, on the request: faults note there that the client hung up.
RECORD: Final = web.RequestKey("emulator_record", dict)


def client_gone(request: web.Request) -> bool:
    transport = request.transport
    if transport is None or transport.is_closing():
        request[RECORD]["client_closed"] = True
        return True
    return False


async def answer_upstream(request: web.Request, state: EmulatorState, call: Call) -> web.StreamResponse:
    log.debug("#%d %s %s rpc=%s model=%s", call.seq, call.method, call.path, call.rpc, call.model)
    if call.rpc == "authorize":
        return answer_authorize(state, call)
    if call.rpc == "userinfo":
        return answer_userinfo(state, call)
    if call.endpoint == "oauth":
        return await answer_token(request, state, call)
    if call.rpc not in KNOWN_RPCS.get(call.endpoint, ()):
        message = f"The requested URL {call.path} was not found on this server."
        return error_response(ErrorReply(404, status_body(404, "NOT_FOUND", message)))
    if error := precheck(state, call):
        return error_response(error)
    return await answer_api(request, state, call, state.take_rule(call) or {})


def precheck(state: EmulatorState, call: Call) -> ErrorReply | None:
    """Built-in checks that no rule overrides: credentials, the request's shape, the account's models."""
    check_auth = state.bearer_error if call.endpoint == "cloudcode" else state.api_key_error
    if auth_error := check_auth(call.credential):
        return auth_error
    if call.endpoint == "cloudcode" and (gate := version_gate(state, call)):
        return gate
    if call.rpc == "listModels":
        return None
    if not isinstance(call.body, dict):
        return bad_argument("Invalid JSON payload received. Expected an object.")
    if call.rpc in GENERATE_RPCS and (shape_error := generate_shape_error(call)):
        return shape_error
    if call.model and call.rpc in GENERATE_RPCS and state.model_missing(call.credential, call.model):
        return model_not_found(call)
    if call.model and call.rpc in GENERATE_RPCS:
        return model_rules_error(state, call)
    return None



# --------------------------------------------------------------------------------------------
# Model rules (pure): what Claude and Gemini 3 behind Cloud Code reject (MODEL_RULES_DOC)
# --------------------------------------------------------------------------------------------

SKIP_SIGNATURES: Final = frozenset({"skip_thought_signature_validator",
                                   "context_engineering_is_the_way_to_go"})
CLAUDE_MAX_OUTPUT: Final = 64000
CLAUDE_TOOL_NAME: Final = re.compile(r"[A-Za-z0-9_-]{1,64}")
GEMINI3_SIGNATURE_TAG: Final = "emu-gemini-3#"
CLAUDE_SIGNATURE_TAG: Final = "emu-claude#"
MISSING_IMAGE_SIGNATURE: Final = (
    "Image part is missing a thought_signature in content position {content}, part position {part}. Please "
    "refer to https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
MISSING_CALL_SIGNATURE: Final = (
    "Function call is missing a thought_signature in functionCall parts. This is required for tools to work "
    "correctly, and missing thought_signature may lead to degraded model performance. Additional data, "
    "function call `default_api:{name}` , position {position}. Please refer to "
    "https://ai.google.dev/gemini-api/docs/thought-signatures for more details."
)
THINKING_FIRST: Final = (
    "messages.{index}.content.0.type: Expected `thinking` or `redacted_thinking`, but found `{found}`. When "
    "`thinking` is enabled, a final `assistant` message must start with a thinking block (preceeding the "
    "lastmost set of `tool_use` and `tool_result` blocks). We recommend you include thinking blocks from "
    "previous turns. To avoid this requirement, disable `thinking`. Please consult our documentation at "
    "https://docs.claude.com/en/docs/build-with-claude/extended-thinking"
)


def rules_family(model: str, config: Json) -> str | None:
    if model.startswith("claude-"):
        return "claude"
    if "-image" in model:
        return "image"
    if model.startswith("gemini-3.1-") or model in config["strict_models"]:
        return "gemini-3"
    return None


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def claude_signature(thought_text: str) -> str:
    """Two layers of base64 (Antigravity's Claude form), bound to the exact thought text it signs."""
    digest = hashlib.sha256(thought_text.encode()).hexdigest()[:40]
    return _b64(_b64(CLAUDE_SIGNATURE_TAG + digest))


def gemini3_signature() -> str:
    return _b64(GEMINI3_SIGNATURE_TAG + secrets.token_hex(12))


def _unwrap(signature: str, layers: int) -> str:
    try:
        for _ in range(layers):
            signature = base64.b64decode(signature, validate=True).decode()
    except (ValueError, UnicodeDecodeError):
        return ""
    return signature


def is_gemini3_signature(signature: str) -> bool:
    return _unwrap(signature, 1).startswith(GEMINI3_SIGNATURE_TAG)


def is_claude_signature(signature: str) -> bool:
    return _unwrap(signature, 2).startswith(CLAUDE_SIGNATURE_TAG)


def sign_reply(family: str, content: Json, *, scripted: bool = True) -> Json:
    """The model's own answer carries signatures it will accept back (unless the rule set its own); an
    image model's default answer has an image."""
    if family == "image" and not scripted:
        return {**content, "images": [{"mime_type": "image/png", "data": TINY_PNG,
                                       "thought_signature": gemini3_signature()}]}
    thoughts = content.get("thoughts") or []
    if family == "claude" and thoughts and not content.get("thought_signature"):
        return {**content, "thought_signature": claude_signature("".join(thoughts))}
    if family != "gemini-3":
        return content
    calls = content.get("function_calls") or []
    if calls and not any(call.get("thought_signature") for call in calls):
        return {**content, "function_calls": [{**calls[0], "thought_signature": gemini3_signature()},
                                              *calls[1:]]}
    if thoughts and not calls and not content.get("thought_signature"):
        return {**content, "thought_signature": gemini3_signature()}
    return content


def anthropic_error(message: str) -> ErrorReply:
    """Claude's own 400, the way Cloud Code passes it on: JSON text inside Google's message."""
    inner = {"type": "error", "error": {"type": "invalid_request_error", "message": message},
             "request_id": f"req_vrtx_emu{secrets.token_hex(8)}"}
    return ErrorReply(400, status_body(400, "INVALID_ARGUMENT", orjson.dumps(inner).decode()))


def model_rules_error(state: EmulatorState, call: Call) -> ErrorReply | None:
    family = call.family = rules_family(call.model or "", state.config)
    if family is None:
        return None
    request = call.body["request"] if call.endpoint == "cloudcode" else call.body
    contents = [c for c in request.get("contents") or [] if isinstance(c, dict)]
    if family == "claude":
        message = claude_request_error(request, contents, call.model or "")
        return anthropic_error(message) if message else None
    if family == "image":
        return image_request_error(call, request)
    message = gemini3_request_error(request, contents)
    return ErrorReply(400, status_body(400, "INVALID_ARGUMENT", message)) if message else None


def parts_of(turn: Json) -> list[Json]:
    return [p for p in turn.get("parts") or [] if isinstance(p, dict)]


def tool_loop_start(contents: list[Json]) -> int:
    """Index of the first turn after the last user turn that is not only function responses."""
    for index in range(len(contents) - 1, -1, -1):
        turn = contents[index]
        if turn.get("role") != "model" and any("functionResponse" not in p for p in parts_of(turn)):
            return index + 1
    return 0


def thinking_on(config: Json) -> bool:
    thinking = config.get("thinkingConfig")
    if not isinstance(thinking, dict):
        return False
    return any(thinking.get(key) for key in ("includeThoughts", "thinkingBudget", "thinkingLevel"))


def claude_request_error(request: Json, contents: list[Json], model: str) -> str | None:
    if contents and contents[-1].get("role") == "model":
        return ("This model does not support assistant message prefill. The conversation must end with a "
                "user message.")
    calling = (request.get("toolConfig") or {}).get("functionCallingConfig") or {}
    validated = calling.get("mode") == "VALIDATED"
    declarations = [d for tool in request.get("tools") or [] for d in tool.get("functionDeclarations") or []]
    for index, declaration in enumerate(declarations):
        name = str(declaration.get("name", ""))
        if not CLAUDE_TOOL_NAME.fullmatch(name):
            return f"tools.{index}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        schema = declaration.get("parameters") or declaration.get("parametersJsonSchema")
        if not isinstance(schema, dict):
            return f"tools.{index}.custom.input_schema: Field required"
        if validated and not schema.get("properties"):
            return (f"tools.{index}.custom.input_schema: VALIDATED function calling needs at least one "
                    "property in every tool's input schema")
    config = request.get("generationConfig") or {}
    if (error := claude_budget_error(config, model)) is not None:
        return error
    for index, turn in enumerate(contents):
        for position, part in enumerate(parts_of(turn)):
            signature = part.get("thoughtSignature")
            if part.get("thought") is True:
                if not signature:
                    return f"messages.{index}.content.{position}.thinking.signature: Field required"
                if signature != claude_signature(str(part.get("text", ""))):
                    return f"messages.{index}.content.{position}: Invalid `signature` in `thinking` block"
            elif signature and not is_claude_signature(signature):
                return f"messages.{index}.content.{position}: Invalid `signature` in `thinking` block"
    if thinking_on(config):
        loop = tool_loop_start(contents)
        model_turns = [i for i in range(loop, len(contents)) if contents[i].get("role") == "model"]
        if model_turns and any("functionCall" in p for p in parts_of(contents[model_turns[-1]])):
            first = parts_of(contents[model_turns[-1]])[0]
            if first.get("thought") is not True:
                found = "tool_use" if "functionCall" in first else "text"
                return THINKING_FIRST.format(index=model_turns[-1], found=found)
    return None


def claude_budget_error(config: Json, model: str) -> str | None:
    limit = config.get("maxOutputTokens")
    if isinstance(limit, int) and limit > CLAUDE_MAX_OUTPUT:
        return (f"max_tokens: {limit} > {CLAUDE_MAX_OUTPUT}, which is the maximum allowed number of output "
                f"tokens for {model}")
    budget = (config.get("thinkingConfig") or {}).get("thinkingBudget")
    if not isinstance(budget, int) or budget == 0:
        return None
    if budget < 1024:
        return "thinking.enabled.budget_tokens: Input should be greater than or equal to 1024"
    if isinstance(limit, int) and limit <= budget:
        return ("`max_tokens` must be greater than `thinking.budget_tokens`. Please consult our "
                "documentation at https://docs.claude.com/en/docs/build-with-claude/extended-thinking#max-tokens-and-context-"
                "window-size")
    return None


ASPECT_RATIOS: Final = frozenset({"1:1", "2:3", "3:2", "3:4", "4:3", "4:5", "5:4", "9:16", "16:9",
                                 "21:9"})
IMAGE_SIZES: Final = frozenset({"1K", "2K", "4K"})
TINY_PNG: Final = ("iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
                   "rkJggg==")


def image_request_error(call: Call, request: Json) -> ErrorReply | None:
    """An image model: Cloud Code's request type ``image_gen``; a valid ``imageConfig``; no tools; and the
    500 seen for ``responseModalities`` with ``imageConfig`` (CLIProxyAPI#4751)."""
    if call.endpoint == "cloudcode" and call.body.get("requestType") != "image_gen":
        return ErrorReply(400, status_body(400, "INVALID_ARGUMENT", "Request contains an invalid argument."))
    if request.get("tools"):
        return ErrorReply(400, status_body(400, "INVALID_ARGUMENT",
                                           f"Function calling is not enabled for models/{call.model}"))
    config = request.get("generationConfig") or {}
    image = config.get("imageConfig") or {}
    if "aspectRatio" in image and image["aspectRatio"] not in ASPECT_RATIOS:
        return bad_argument(f"Invalid value at 'generation_config.image_config.aspect_ratio' "
                            f"({image['aspectRatio']!r})")
    if "imageSize" in image and image["imageSize"] not in IMAGE_SIZES:
        return bad_argument(f"Invalid value at 'generation_config.image_config.image_size' "
                            f"({image['imageSize']!r})")
    if image and config.get("responseModalities"):
        return ErrorReply(500, status_body(500, "INTERNAL", "Internal error encountered."))
    message = image_signature_error([c for c in request.get("contents") or [] if isinstance(c, dict)])
    return bad_argument(message) if message else None


def image_signature_error(contents: list[Json]) -> str | None:
    """A multi-turn edit: every image part of an earlier model turn must carry the signature this
    emulator minted for it (the skip sentinels are for function calls only)."""
    for index, turn in enumerate(contents):
        if turn.get("role") != "model":
            continue
        for position, part in enumerate(parts_of(turn)):
            if "inlineData" not in part:
                continue
            signature = part.get("thoughtSignature")
            if not signature:
                return MISSING_IMAGE_SIGNATURE.format(content=index + 1, part=position + 1)
            if signature in SKIP_SIGNATURES:
                return "Request contains an invalid argument."
            if not is_gemini3_signature(signature):
                return "Invalid thought signature."
    return None


def gemini3_request_error(request: Json, contents: list[Json]) -> str | None:
    thinking = (request.get("generationConfig") or {}).get("thinkingConfig") or {}
    if "thinkingLevel" in thinking and "thinkingBudget" in thinking:
        return "Unable to submit request because thinking_budget and thinking_level are both set."
    loop = tool_loop_start(contents)
    for index, turn in enumerate(contents):
        if turn.get("role") != "model":
            continue
        calls = [p for p in parts_of(turn) if "functionCall" in p]
        for part in parts_of(turn):
            signature = part.get("thoughtSignature")
            if not signature:
                continue
            if signature in SKIP_SIGNATURES:
                if not calls or part is not calls[0]:
                    return "Request contains an invalid argument."
            elif not is_gemini3_signature(signature):
                return "Invalid thought signature."
        if index >= loop and calls and not calls[0].get("thoughtSignature"):
            name = (calls[0].get("functionCall") or {}).get("name")
            return MISSING_CALL_SIGNATURE.format(name=name, position=parts_of(turn).index(calls[0]) + 1)
    return None

VERSION_GATE_MESSAGE: Final = ("This version of Antigravity is no longer supported. Please update to receive "
                                "the latest features.")


def version_tuple(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def version_gate(state: EmulatorState, call: Call) -> ErrorReply | None:
    """Cloud Code refuses clients whose User-Agent names an Antigravity version below the minimum (R-Q4)."""
    minimum = state.config["min_client_version"]
    if not minimum:
        return None
    sent = re.search(r"Antigravity/(\d+(?:\.\d+)*)", call.headers.get("user-agent", ""))
    if sent and version_tuple(sent[1]) >= version_tuple(minimum):
        return None
    return ErrorReply(400, status_body(400, "INVALID_ARGUMENT", VERSION_GATE_MESSAGE))


def generate_shape_error(call: Call) -> ErrorReply | None:
    if call.endpoint == "cloudcode":
        for name in ("model", "request"):
            if not call.body.get(name):
                return bad_argument("Request contains an invalid argument.", name)
    request = call.body["request"] if call.endpoint == "cloudcode" else call.body
    if not isinstance(request, dict) or not request.get("contents"):
        return bad_argument("* GenerateContentRequest.contents: contents is not specified\n")
    return None


def model_not_found(call: Call) -> ErrorReply:
    if call.endpoint == "cloudcode":
        return google_error({"kind": "not_found"}, call.model, datetime.now(UTC))
    message = (f"models/{call.model} is not found for API version {call.base.strip('/')}, or is not "
               f"supported for {call.rpc}. Call ListModels to see the list of available models and their "
               "supported methods.")
    return ErrorReply(404, status_body(404, "NOT_FOUND", message))


async def answer_api(request: web.Request, state: EmulatorState, call: Call,
                     reply: Json) -> web.StreamResponse:
    await pause(reply.get("delay_ms"))
    if "status" in reply or "body" in reply:
        return raw_response(reply)
    if "error" in reply or ("error_mid_stream" in reply and call.rpc != "streamGenerateContent"):
        spec = reply.get("error") or reply["error_mid_stream"]
        return error_response(google_error(spec, call.model, datetime.now(UTC)), reply.get("headers"))
    if call.rpc in GENERATE_RPCS and "fault" in reply:
        return await answer_fault(request, call, reply)
    if call.rpc in GENERATE_RPCS:
        return await answer_generate(request, call, reply)
    body = ANSWERS[call.rpc or ""](state, call)
    return json_response(200, body, reply.get("headers"))


def generation_context(call: Call, reply: Json) -> tuple[GenContext, Json]:
    gen_request = call.body["request"] if call.endpoint == "cloudcode" else call.body
    config = gen_request.get("generationConfig") or {}
    count = config.get("candidateCount")
    ctx = GenContext(model=call.model or "", candidates=max(1, count) if isinstance(count, int) else 1,
                     prompt_tokens=prompt_tokens(gen_request), response_id=f"emu-{call.seq}")
    scripted = bool(CONTENT_KEYS & set(reply))
    content = reply if scripted else {**default_reply(gen_request), **reply}
    if call.family:
        content = sign_reply(call.family, content, scripted=scripted)
    return ctx, content


async def answer_generate(request: web.Request, call: Call, reply: Json) -> web.StreamResponse:
    ctx, content = generation_context(call, reply)
    trace_id = f"{call.seq:016x}"
    raw_events = build_events(content, ctx)
    if call.rpc == "generateContent":
        merged = wrap_event(merge_events(raw_events), call.endpoint, trace_id)
        if reply.get("cut_after") is not None:
            return await send_truncated(request, orjson.dumps(merged), reply)
        return json_response(200, merged, reply.get("headers"))
    events = [wrap_event(event, call.endpoint, trace_id) for event in raw_events]
    if request.query.get("alt") != "sse":
        # Without alt=sse Google streams one JSON array; the gateway never asks for it.
        return json_response(200, events, reply.get("headers"))
    frames = [encode_frame(event) for event in events]
    cut_after = reply.get("cut_after")
    if "error_mid_stream" in reply:
        error = google_error(reply["error_mid_stream"], call.model, datetime.now(UTC))
        frames = [*frames[: 1 if cut_after is None else cut_after], encode_frame(error.body)]
        return await send_stream(request, frames, reply, cut=False)
    if cut_after is not None:
        return await send_stream(request, frames[:cut_after], reply, cut=True)
    return await send_stream(request, frames, reply, cut=False)


async def answer_fault(request: web.Request, call: Call, reply: Json) -> web.StreamResponse:
    """A faulty 200 (see RULE_DOC ``fault``): what a broken front end or a sick backend sends."""
    fault, stream = reply["fault"], call.rpc == "streamGenerateContent"
    ctx, content = generation_context(call, reply)
    trace_id = f"{call.seq:016x}"
    events = [wrap_event(event, call.endpoint, trace_id) for event in build_events(content, ctx)]
    if stream:
        normal = [encode_frame(event) for event in events]
        before = normal[: reply.get("fault_after", 0)]
    else:
        normal, before = [orjson.dumps(wrap_event(merge_events(build_events(content, ctx)), call.endpoint,
                                                  trace_id))], []
    error_body = status_body(500, "INTERNAL", "Internal error encountered.")
    bad: bytes = {
        "html": HTML_PAGE,
        "invalid_json": b'{"candidates": [{"content": {"parts": [{"text": "half',
        "error_in_200": encode_frame(error_body) if stream else orjson.dumps(error_body),
        "invalid_event": b"data: {not json at all\r\n\r\n" if stream else b"{not json at all",
    }.get(fault, b"")
    content_type = "text/html; charset=UTF-8" if fault == "html" else (
        "text/event-stream" if stream else JSON_TYPE)
    resp = web.StreamResponse(headers={"Content-Type": content_type, **(reply.get("headers") or {})})
    if request.transport is not None:
        tcp_nodelay(request.transport, True)
    await resp.prepare(request)
    for frame in before:
        await resp.write(frame)
    if fault == "cut":
        rest = normal[len(before)] if len(before) < len(normal) else b""
        await resp.write(rest[: len(rest) // 2])
        await asyncio.sleep(0.01)
        drop_connection(request)
        return resp
    if fault == "stall":
        await stall(request, reply.get("stall_ms", 600_000))
    elif fault == "trickle":
        for byte in b"".join(normal[len(before):]):
            if client_gone(request):
                break
            await resp.write(bytes((byte,)))
            await pause(reply.get("trickle_ms", 100))
    elif bad:
        await resp.write(bad)
    if not client_gone(request):
        await resp.write_eof()
    return resp


async def stall(request: web.Request, milliseconds: float) -> None:
    """Silence after the headers, watching for the client to hang up (a silent wait would not see it)."""
    deadline = time.monotonic() + milliseconds / 1000
    while time.monotonic() < deadline and not client_gone(request):
        await asyncio.sleep(0.02)


def answer_load_code_assist(state: EmulatorState, call: Call) -> Json:
    tier = {"id": "standard-tier", "name": "Gemini Code Assist",
            "description": "Unlimited coding assistant with the most powerful Gemini models",
            "userDefinedCloudaicompanionProject": True}
    body: Json = {"currentTier": tier, "allowedTiers": [{**tier, "isDefault": True}]}
    credential = call.credential or ""
    if state.config["onboarding"]:
        project = state.oauth.onboarded.get(credential)
        if project is None:
            del body["currentTier"]  # not set up yet: only the tiers it may choose
    else:
        project = state.project_for(credential)
    if project is not None:
        body["cloudaicompanionProject"] = project
    body["gcpManaged"] = False
    if state.config["paid_tier"]:
        body["paidTier"] = state.config["paid_tier"]
    return body


def model_info(entry: Json, reset_time: str) -> Json:
    known = {"name", "remainingFraction", "resetTime"}
    info: Json = {"displayName": display_name(entry["name"]), "maxTokens": 1048576, "maxOutputTokens": 65536,
                  "supportsThinking": True}
    info.update({k: v for k, v in entry.items() if k not in known})
    quota = {"remainingFraction": entry.get("remainingFraction", 0.8),
             "resetTime": entry.get("resetTime", reset_time)}
    info["quotaInfo"] = {k: v for k, v in quota.items() if v is not None}  # null: Google leaves it out
    return info


ONBOARD_RESPONSE_TYPE: Final = "type.googleapis.com/google.internal.cloud.code.v1internal.OnboardUserResponse"


def answer_onboard(state: EmulatorState, call: Call) -> Json:
    """onboardUser: a long-running operation, already done, that made the account a project."""
    credential = call.credential or ""
    project = state.oauth.onboarded.setdefault(credential, f"emu-onboarded-{short_hash(credential)}")
    return {"name": f"operations/onboard-{short_hash(credential)}", "done": True,
            "response": {"@type": ONBOARD_RESPONSE_TYPE,
                         "cloudaicompanionProject": {"id": project, "name": project}}}


def answer_quota_summary(state: EmulatorState, call: Call) -> Json:
    """retrieveUserQuotaSummary: the 5-hour and weekly buckets per model group."""
    groups = state.config["quota_groups"].get(call.credential)
    if groups is None:
        now = datetime.now(UTC).replace(microsecond=0)
        five, week = rfc3339(now + timedelta(hours=5)), rfc3339(now + timedelta(days=7))
        groups = [{"displayName": "Gemini Models", "buckets": [
                      {"bucketId": "gemini-5h", "window": "5h", "remainingFraction": 0.9, "resetTime": five},
                      {"bucketId": "gemini-weekly", "window": "weekly", "remainingFraction": 0.95,
                       "resetTime": week}]},
                  {"displayName": "Claude and GPT models", "buckets": [
                      {"bucketId": "3p-5h", "window": "5h", "remainingFraction": 1.0, "resetTime": five},
                      {"bucketId": "3p-weekly", "window": "weekly", "remainingFraction": 1.0,
                       "resetTime": week}]}]
    return {"groups": groups}


def answer_fetch_models(state: EmulatorState, call: Call) -> Json:
    reset_time = rfc3339(datetime.now(UTC).replace(microsecond=0) + timedelta(hours=5))
    return {"models": {e["name"]: model_info(e, reset_time) for e in state.model_entries(call.credential)}}


def answer_list_models(state: EmulatorState, call: Call) -> Json:
    methods = ["generateContent", "countTokens", "streamGenerateContent"]
    return {"models": [{"name": f"models/{e['name']}", "displayName": display_name(e["name"]),
                        "inputTokenLimit": 1048576, "outputTokenLimit": 65536,
                        "supportedGenerationMethods": methods} for e in state.model_entries(call.credential)]}


def answer_count_tokens(state: EmulatorState, call: Call) -> Json:
    inner = call.body.get("request") if call.endpoint == "cloudcode" else call.body
    inner = inner.get("generateContentRequest", inner) if isinstance(inner, dict) else {}
    return {"totalTokens": prompt_tokens(inner)}


EMBEDDING_SIZE: Final = 768  # text-embedding-004's default output dimensionality


def embedding_of(request: Json) -> Json:
    """A deterministic unit-length vector for the request's text (the same text, the same vector), cut to
    ``outputDimensionality`` like Gemini's Matryoshka embeddings."""
    parts = (request.get("content") or {}).get("parts") or []
    text = "".join(p.get("text", "") for p in parts if isinstance(p, dict))
    size = request.get("outputDimensionality") or EMBEDDING_SIZE
    seed = hashlib.sha256(text.encode()).digest()
    raw = [((seed[i % 32] + i * 7) % 251) / 125.0 - 1.0 for i in range(size)]
    norm = math.sqrt(sum(v * v for v in raw)) or 1.0
    return {"values": [round(v / norm, 6) for v in raw]}


def answer_embed(state: EmulatorState, call: Call) -> Json:
    return {"embedding": embedding_of(call.body if isinstance(call.body, dict) else {})}


def answer_batch_embed(state: EmulatorState, call: Call) -> Json:
    requests = call.body.get("requests") if isinstance(call.body, dict) else None
    return {"embeddings": [embedding_of(r) for r in requests or [] if isinstance(r, dict)]}


ANSWERS: Final = {
    "embedContent": answer_embed,
    "batchEmbedContents": answer_batch_embed,
    "loadCodeAssist": answer_load_code_assist,
    "onboardUser": answer_onboard,
    "retrieveUserQuotaSummary": answer_quota_summary,
    "fetchAvailableModels": answer_fetch_models,
    "listModels": answer_list_models,
    "countTokens": answer_count_tokens,
}


async def answer_token(request: web.Request, state: EmulatorState, call: Call) -> web.StreamResponse:
    reply = state.take_rule(call) or {}
    oauth = state.config["oauth"]
    await pause(oauth["delay_ms"])
    await pause(reply.get("delay_ms"))
    if "status" in reply or "body" in reply:
        return raw_response(reply)
    if "error" in reply:
        return error_response(google_error(reply["error"], None, datetime.now(UTC)))
    if oauth["fail_status"]:
        failure = {"error": "internal_failure", "error_description": "Backend Error"}
        return json_response(oauth["fail_status"], failure)
    status, body = state.refresh(call.body if isinstance(call.body, dict) else {})
    return json_response(status, body, {"Cache-Control": "no-cache, no-store, max-age=0, must-revalidate"})


def answer_authorize(state: EmulatorState, call: Call) -> web.Response:
    status, answer = state.authorize(call.query)
    if status == 302:
        return web.Response(status=302, headers={"Location": str(answer)})
    return json_response(status, answer)


def answer_userinfo(state: EmulatorState, call: Call) -> web.Response:
    email = state.oauth.emails.get(call.credential or "")
    if email is None or state.bearer_error(call.credential) is not None:
        return error_response(google_error({"kind": "unauthenticated"}, None, datetime.now(UTC)))
    name = email.split("@")[0]
    return json_response(200, {"id": str(int(short_hash(email), 16)), "email": email, "verified_email": True,
                               "name": name, "given_name": name,
                               "picture": "https://lh3.googleusercontent.com/a/emu"})


# Control API


async def control_body(request: web.Request) -> Any:
    raw = await request.read()
    try:
        return orjson.loads(raw) if raw else {}
    except orjson.JSONDecodeError as exc:
        raise web.HTTPBadRequest(text=f"invalid JSON: {exc}") from exc


def control_error(exc: ValueError) -> web.Response:
    return json_response(400, {"error": str(exc)})


async def health(request: web.Request) -> web.Response:
    return json_response(200, {"status": "ok"})


async def reset(request: web.Request) -> web.Response:
    request.app[STATE].reset()
    return json_response(200, {"status": "ok"})


async def get_rules(request: web.Request) -> web.Response:
    return json_response(200, {"rules": request.app[STATE].rules})


async def change_rules(request: web.Request) -> web.Response:
    payload = await control_body(request)
    rules = payload.get("rules") if isinstance(payload, dict) else None
    state = request.app[STATE]
    try:
        if not isinstance(rules, list):
            raise ValueError('the body is {"rules": [...]}')
        (state.set_rules if request.method == "PUT" else state.add_rules)(rules)
    except ValueError as exc:
        return control_error(exc)
    return json_response(200, {"rules": state.rules})


async def get_requests(request: web.Request) -> web.Response:
    return json_response(200, request.app[STATE].find_requests(dict(request.query)))


async def get_config(request: web.Request) -> web.Response:
    return json_response(200, request.app[STATE].config)


async def post_config(request: web.Request) -> web.Response:
    state = request.app[STATE]
    try:
        state.configure(await control_body(request))
    except ValueError as exc:
        return control_error(exc)
    return json_response(200, state.config)


def make_app(state: EmulatorState | None = None) -> web.Application:
    app = web.Application(client_max_size=64 * 1024 * 1024)
    app[STATE] = state or EmulatorState()
    app.router.add_get("/_emulator/health", health)
    app.router.add_post("/_emulator/reset", reset)
    app.router.add_get("/_emulator/rules", get_rules)
    app.router.add_post("/_emulator/rules", change_rules)
    app.router.add_put("/_emulator/rules", change_rules)
    app.router.add_get("/_emulator/requests", get_requests)
    app.router.add_get("/_emulator/config", get_config)
    app.router.add_post("/_emulator/config", post_config)
    app.router.add_route("*", "/{tail:.*}", handle_upstream)
    return app


# --------------------------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------------------------

EPILOG: Final = f"""\
run standalone:
  python scripts/gemini_emulator.py --port 8900 --verbose
  then point the gateway at it: Cloud Code bases http://127.0.0.1:8900/sandbox/v1internal,
  .../daily/v1internal, .../v1internal; Gemini API http://127.0.0.1:8900; OAuth .../token

script it (JSON control API under /_emulator/):
  GET  health | POST reset | GET/POST/PUT rules | GET requests[?kind=api|token&rpc=..] |
  GET/POST config

  curl -s -X POST localhost:8900/_emulator/rules -d '{{"rules": [{{"match": {{"base": "/sandbox"}},
       "times": 1, "reply": {{"error": {{"kind": "capacity"}}}}}}]}}'
  curl -s -X POST localhost:8900/_emulator/config -d '{{"expired_tokens": ["ya29.old"]}}'
  curl -s 'localhost:8900/_emulator/requests?kind=api'

{RULE_DOC}

{CONFIG_DOC}

{MODEL_RULES_DOC}
"""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="gemini_emulator.py", description="Emulator of Google's Cloud Code v1internal, Gemini API and "
        "OAuth token endpoints, scriptable over HTTP.", epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port to bind; 0 picks a free one (default)")
    parser.add_argument("--ready-file", help="write the bound port here (atomically) once listening")
    parser.add_argument("--client-id", help="if set, /token requires this client_id")
    parser.add_argument("--client-secret", help="if set, /token requires this client_secret")
    parser.add_argument("--verbose", action="store_true", help="log every request and the access log")
    return parser.parse_args(argv)


def write_ready_file(path: str, port: int) -> None:
    # Write then rename, so a watcher never reads a half-written port.
    temporary = f"{path}.tmp{os.getpid()}"
    with open(temporary, "w") as handle:
        handle.write(f"{port}\n")
    os.replace(temporary, path)


async def serve(args: argparse.Namespace) -> None:
    state = EmulatorState({"oauth": {"client_id": args.client_id, "client_secret": args.client_secret}})
    runner = web.AppRunner(make_app(state), access_log=log if args.verbose else None)
    await runner.setup()
    site = web.TCPSite(runner, args.host, args.port)
    await site.start()
    port = runner.addresses[0][1]
    log.info("gemini emulator listening on http://%s:%d", args.host, port)
    if args.ready_file:
        write_ready_file(args.ready_file, port)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    # Our own logger always says where it listens; --verbose adds a line per request and the access log.
    log.setLevel(logging.DEBUG if args.verbose else logging.INFO)
    asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
