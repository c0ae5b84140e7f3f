"""Carry Gemini's ``thoughtSignature`` (and its own ``functionCall.id``) inside OpenAI tool call ids.

Gemini 3 rejects a multi-turn tool conversation whose ``functionCall`` parts lost their
``thoughtSignature``. OpenAI clients echo a tool call's ``id`` back verbatim on the next turn (in the
assistant message's ``tool_calls`` and in the ``tool`` message), so the id is where the signature
travels: no server-side cache, nothing to expire, and a replayed history always carries the right one.

Id grammar (every character is in ``[A-Za-z0-9_-]``, so it also survives clients that re-validate ids
as Anthropic ``tool_use`` ids)::

    call_<token> [ "_id" <hex of Gemini's functionCall.id> ] [ "_sig" ("b"|"u") <signature payload> ]

``<token>`` is ASCII letters and digits, from an injected factory (tests pass a deterministic one).
A signature that is canonical standard base64 (what Google sends) is stored as base64url without
padding (flavour ``b``: same length, exact round trip); anything else is stored as the base64url of
its UTF-8 bytes (flavour ``u``). Ids that do not match the grammar are foreign (another provider, a
hand-written history): they carry nothing, and no id is sent to Gemini for them.

The Responses API has a proper place for the same data: a ``reasoning`` item's ``encrypted_content``,
which clients (Codex) send back verbatim. ``encode_reasoning_signature`` marks the signature so that
``decode_reasoning_signature`` can tell it from an OpenAI-encrypted blob of another provider, which
must never reach Gemini.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

_STD_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_ID = re.compile(
    r"call_[A-Za-z0-9]+(?:_id(?P<gid>(?:[0-9a-f]{2})+))?(?:_sig(?P<flavour>[bu])(?P<sig>[A-Za-z0-9_-]+))?"
)
_TO_URL = str.maketrans("+/", "-_")
REASONING_PREFIX = "gemini-thought-signature:"
_FROM_URL = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class ToolCallRef:
    """What a tool call id carried back from the client: Gemini's own call id and the thought signature."""

    gemini_id: str | None = None
    signature: str | None = None


def encode_tool_call_id(token: str, *, gemini_id: str | None = None, signature: str | None = None) -> str:
    if not token or not token.isascii() or not token.isalnum():
        raise ValueError(f"a tool call id token must be ASCII letters and digits, got {token!r}")
    out = f"call_{token}"
    if gemini_id:
        out += "_id" + gemini_id.encode().hex()
    if signature:
        out += "_sig" + _encode_signature(signature)
    return out


def decode_tool_call_id(call_id: str) -> ToolCallRef:
    """Never raises: an id that is not ours (or was mangled) simply carries nothing."""
    m = _ID.fullmatch(call_id)
    if m is None:
        return ToolCallRef()
    try:
        gemini_id = bytes.fromhex(m["gid"]).decode() if m["gid"] else None
        signature = _decode_signature(m["flavour"], m["sig"]) if m["sig"] else None
    except (ValueError, binascii.Error):
        return ToolCallRef()
    return ToolCallRef(gemini_id=gemini_id, signature=signature)


def _encode_signature(signature: str) -> str:
    if _STD_B64.fullmatch(signature):
        return "b" + signature.rstrip("=").translate(_TO_URL)
    return "u" + base64.urlsafe_b64encode(signature.encode()).decode().rstrip("=")


def _decode_signature(flavour: str, payload: str) -> str:
    if len(payload) % 4 == 1:  # no base64 text has this length: the id was cut or edited
        raise ValueError("truncated signature")
    padded = payload + "=" * (-len(payload) % 4)
    if flavour == "b":
        return padded.translate(_FROM_URL)
    return base64.urlsafe_b64decode(padded).decode()


def encode_reasoning_signature(signature: str) -> str:
    """A thought signature as a Responses ``reasoning.encrypted_content`` value."""
    return REASONING_PREFIX + signature


def decode_reasoning_signature(encrypted_content: str | None) -> str | None:
    """The signature in an ``encrypted_content`` this gateway made; None for anything else."""
    if not encrypted_content or not encrypted_content.startswith(REASONING_PREFIX):
        return None
    return encrypted_content[len(REASONING_PREFIX):] or None


OPENAI_CALL_ID_MAX = 64  # OpenAI's limit on a Responses call_id; clients that validate reject longer ones


def short_tool_call_id(token: str, *, gemini_id: str | None = None) -> str:
    """A Responses ``call_id`` within OpenAI's 64 characters: Gemini's call id only when it fits, and never
    the signature (those travel in a reasoning item's ``encrypted_content``, and in the store)."""
    plain = encode_tool_call_id(token)
    if gemini_id:
        with_id = encode_tool_call_id(token, gemini_id=gemini_id)
        if len(with_id) <= OPENAI_CALL_ID_MAX:
            return with_id
    return plain


def lacks_signature(call_id: str) -> bool:
    """A call id of this gateway's grammar without a signature: the store may know the call's data."""
    m = _ID.fullmatch(call_id)
    return m is not None and not m["sig"]


COMPACTION_PREFIX = "gemini-compaction:"


def encode_compaction(summary: str) -> str:
    """A compaction summary as a ``compaction`` item's ``encrypted_content`` (opaque to clients, as at
    OpenAI, but only encoded: the gateway keeps no key)."""
    return COMPACTION_PREFIX + base64.urlsafe_b64encode(summary.encode()).decode()


def decode_compaction(encrypted_content: str) -> str | None:
    """The summary in a ``compaction`` item this gateway made; None for anything else (another
    provider's encrypted compaction cannot be read)."""
    if not encrypted_content.startswith(COMPACTION_PREFIX):
        return None
    try:
        return base64.urlsafe_b64decode(encrypted_content[len(COMPACTION_PREFIX):]).decode()
    except (ValueError, binascii.Error):
        return None
