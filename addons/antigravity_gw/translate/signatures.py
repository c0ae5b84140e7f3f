"""Carry Gemini's ``thoughtSignature`` (and its own ``functionCall.id``) inside OpenAI tool call ids.

Gemini 3 rejects a multi-turn tool conversation whose ``functionCall`` parts lost their
``thoughtSignature``. OpenAI clients echo a tool call's ``id`` back verbatim on the next turn (in the
assistant message's ``tool_calls`` and in the ``tool`` message), so the id is where the signature
travels: no server-side cache, nothing to expire, and a replayed history always carries the right one.

Id grammar (every character is in ``[A-Za-z0-9_-]``, so it also survives clients that re-validate ids
as Anthropic ``tool_use`` ids)::

    call_<token> [ "_id" <hex of Gemini's functionCall.id> ] [ "_f" <family> ]
                 [ "_sig" ("b"|"u"|"z") <signature payload> ]

``<family>`` names the model family that minted the signature (``c`` Claude, ``g3`` Gemini 3, ``g2``
other Gemini; absent in ids made before families were recorded): a signature is only ever replayed to
its own family (``model_rules.py``). Claude needs its thinking block back, text and signature together,
so a Claude signature whose thought text fits travels as flavour ``z``: the base64url of the zlib of
``{"s": signature, "t": thought text}``.

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
import zlib
from dataclasses import dataclass

import orjson

_STD_B64 = re.compile(r"(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?")
_ID = re.compile(
    r"call_[A-Za-z0-9]+(?:_id(?P<gid>(?:[0-9a-f]{2})+))?(?:_f(?P<family>[a-z0-9]+))?"
    r"(?:_sig(?P<flavour>[buz])(?P<sig>[A-Za-z0-9_-]+))?"
)
FAMILIES = frozenset({"c", "g3", "g2"})
# A Claude thought travels in the id up to this many characters of payload; a longer one is left out
# (its signature alone is useless to Claude, so the turn is replayed without thinking).
THOUGHT_IN_ID_MAX = 12288
_INFLATE_MAX = 1 << 20  # a thought never inflates past this: a client's zip bomb is just a foreign id
_TO_URL = str.maketrans("+/", "-_")
REASONING_PREFIX = "gemini-thought-signature:"
_FROM_URL = str.maketrans("-_", "+/")


@dataclass(frozen=True, slots=True)
class ToolCallRef:
    """What a tool call id carried back from the client: Gemini's own call id and the thought signature."""

    gemini_id: str | None = None
    signature: str | None = None
    family: str | None = None  # who minted the signature (``FAMILIES``); None: not recorded
    thought: str | None = None  # Claude's thought text that the signature signs


def encode_tool_call_id(
    token: str,
    *,
    gemini_id: str | None = None,
    signature: str | None = None,
    family: str | None = None,
    thought: str | None = None,
) -> str:
    if not token or not token.isascii() or not token.isalnum():
        raise ValueError(f"a tool call id token must be ASCII letters and digits, got {token!r}")
    out = f"call_{token}"
    if gemini_id:
        out += "_id" + gemini_id.encode().hex()
    if signature:
        if family:
            out += "_f" + family
        packed = pack_thinking(signature, thought) if family == "c" and thought else None
        if packed is not None and len(packed) <= THOUGHT_IN_ID_MAX:
            out += "_sigz" + packed
        else:
            out += "_sig" + _encode_signature(signature)
    return out


def decode_tool_call_id(call_id: str) -> ToolCallRef:
    """Never raises: an id that is not ours (or was mangled) simply carries nothing."""
    m = _ID.fullmatch(call_id)
    if m is None:
        return ToolCallRef()
    family = m["family"] if m["family"] in FAMILIES else None
    thought: str | None = None
    signature: str | None = None
    try:
        gemini_id = bytes.fromhex(m["gid"]).decode() if m["gid"] else None
        if m["flavour"] == "z":
            signature, thought = unpack_thinking(m["sig"])
        elif m["sig"]:
            signature = _decode_signature(m["flavour"], m["sig"])
    except (ValueError, binascii.Error, zlib.error):
        return ToolCallRef()
    return ToolCallRef(gemini_id=gemini_id, signature=signature, family=family, thought=thought)


def pack_thinking(signature: str, thought: str) -> str:
    """A Claude thinking block (signature and text) as base64url of its compressed JSON, no padding."""
    raw = zlib.compress(orjson.dumps({"s": signature, "t": thought}), 6)
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def unpack_thinking(payload: str) -> tuple[str, str]:
    """``pack_thinking``'s inverse; ``ValueError`` (or ``zlib.error``) for anything it did not make."""
    if len(payload) % 4 == 1:
        raise ValueError("truncated thinking block")
    inflater = zlib.decompressobj()
    raw = inflater.decompress(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)), _INFLATE_MAX)
    if inflater.unconsumed_tail or not inflater.eof:
        raise ValueError("not a whole thinking block")
    value = orjson.loads(raw)
    if not isinstance(value, dict):
        raise ValueError("not a thinking block")
    signature, thought = value.get("s"), value.get("t")
    if not isinstance(signature, str) or not isinstance(thought, str):
        raise ValueError("not a thinking block")
    return signature, thought


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


# encrypted_content prefixes of the signature families (``REASONING_PREFIX`` alone: family not recorded).
_FAMILY_PREFIXES = {"g3": "gemini-3-thought-signature:", "g2": "gemini-2-thought-signature:"}
CLAUDE_THINKING_PREFIX = "claude-thinking:"


def encode_reasoning_signature(signature: str, *, family: str | None = None, thought: str = "") -> str:
    """A thought signature as a Responses ``reasoning.encrypted_content`` value; Claude's carries its
    thought text too (Claude wants the whole thinking block back)."""
    if family == "c":
        return CLAUDE_THINKING_PREFIX + pack_thinking(signature, thought)
    return _FAMILY_PREFIXES.get(family or "", REASONING_PREFIX) + signature


def decode_reasoning(encrypted_content: str | None) -> ToolCallRef:
    """What an ``encrypted_content`` this gateway made carries (nothing for anything else)."""
    if not encrypted_content:
        return ToolCallRef()
    if encrypted_content.startswith(CLAUDE_THINKING_PREFIX):
        try:
            signature, thought = unpack_thinking(encrypted_content[len(CLAUDE_THINKING_PREFIX):])
        except (ValueError, binascii.Error, zlib.error):
            return ToolCallRef()
        return ToolCallRef(signature=signature, family="c", thought=thought)
    for family, prefix in _FAMILY_PREFIXES.items():
        if encrypted_content.startswith(prefix):
            return ToolCallRef(signature=encrypted_content[len(prefix):] or None, family=family)
    return ToolCallRef(signature=decode_reasoning_signature(encrypted_content))


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


# Anthropic's thinking blocks carry their ``signature`` beside their text, so only the family travels with it.
CLAUDE_SIGNATURE_PREFIX = "claude-signature:"


def encode_thinking_signature(signature: str, *, family: str | None) -> str:
    """A thought signature as a Messages API ``thinking`` block's ``signature``, marked with its family."""
    if family == "c":
        return CLAUDE_SIGNATURE_PREFIX + signature
    return encode_reasoning_signature(signature, family=family)


def decode_thinking_signature(value: str) -> ToolCallRef:
    """What a ``thinking`` block's ``signature`` made here carries (nothing for another provider's)."""
    if value.startswith(CLAUDE_SIGNATURE_PREFIX):
        signature = value[len(CLAUDE_SIGNATURE_PREFIX):]
        return ToolCallRef(signature=signature or None, family="c")
    if value.startswith(CLAUDE_THINKING_PREFIX):
        return ToolCallRef()  # a Responses encrypted_content has no business in a thinking block
    return decode_reasoning(value)
