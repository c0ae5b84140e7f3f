"""The gateway's configuration: every ``ag_*`` option parsed once into a frozen ``Settings``.

The parse_* helpers are pure and raise ``ValueError`` with a message that quotes the bad value;
``mitm/gateway.py`` turns that into mitmproxy's ``OptionsError`` so mitmdump refuses to start.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import orjson

DEFAULT_CLOUDCODE_URLS = (
    "https://daily-cloudcode-pa.sandbox.googleapis.com/v1internal",
    "https://daily-cloudcode-pa.googleapis.com/v1internal",
    "https://cloudcode-pa.googleapis.com/v1internal",
)
DEFAULT_GEMINI_URL = "https://generativelanguage.googleapis.com"
DEFAULT_OAUTH_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_OAUTH_AUTH_URL = "https://accounts.google.com/o/oauth2/v2/auth"
DEFAULT_OAUTH_USERINFO_URL = "https://www.googleapis.com/oauth2/v2/userinfo"
DEFAULT_ACCOUNTS_DIR = "~/.antigravity_tools/accounts"
USER_AGENT_TEMPLATE = "Antigravity/{version} (X11; Linux x86_64) Chrome/132.0.6834.160 Electron/39.2.3"
DEFAULT_USER_AGENT = USER_AGENT_TEMPLATE.format(version="4.3.0")
DEFAULT_QUOTA_REFRESH = 300

SCHEDULING_MODES: tuple[str, ...] = ("round_robin", "lru", "sticky")
DEFAULT_SCHEDULING = "sticky"

AuthMode = Literal["off", "strict", "all_except_health", "auto"]
AUTH_MODES: tuple[str, ...] = ("off", "strict", "all_except_health", "auto")
EffectiveAuthMode = Literal["off", "strict", "all_except_health"]

ImageFetchMode = Literal["public", "off", "any"]
# How Gemini 3's thinking depth goes to Cloud Code (R-G1): thinkingLevel (Google's docs, CLIProxyAPI) or
# thinkingBudget (Antigravity Manager saw 400s for thinkingLevel on gemini-3.1-pro-*); never both.
GEMINI3_THINKING_MODES = ("level", "budget")
IMAGE_FETCH_MODES: tuple[str, ...] = ("public", "off", "any")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream time limits in seconds, named after aiohttp's ClientTimeout phases."""

    connect: float = 10.0
    first_byte: float = 120.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    # a factory, so the home directory is the one of the process that builds the settings
    accounts_dir: Path = field(default_factory=lambda: Path(DEFAULT_ACCOUNTS_DIR).expanduser())
    cloudcode_urls: tuple[str, ...] = DEFAULT_CLOUDCODE_URLS
    gemini_url: str = DEFAULT_GEMINI_URL
    oauth_token_url: str = DEFAULT_OAUTH_TOKEN_URL
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    oauth_auth_url: str = DEFAULT_OAUTH_AUTH_URL
    oauth_userinfo_url: str = DEFAULT_OAUTH_USERINFO_URL
    model_map: tuple[tuple[str, str], ...] = ()
    model_map_file: Path | None = None
    user_agent: str = DEFAULT_USER_AGENT
    max_attempts: int = 4
    scheduling: str = DEFAULT_SCHEDULING
    timeouts: Timeouts = field(default_factory=Timeouts)
    body_limit: int = 32 * 1024 * 1024
    image_max_bytes: int = 20 * 1024 * 1024
    image_timeout: float = 15.0
    image_fetch: ImageFetchMode = "public"
    keepalive_interval: float = 15.0
    inline_non_stream: bool = True
    model_fallback: tuple[tuple[str, str], ...] = ()  # ag_model_fallback: FROM pattern -> TO
    quota_refresh: float = DEFAULT_QUOTA_REFRESH  # seconds between quota snapshots; 0 = on demand only
    quota_floor: float = 0.0  # percent of a model's quota kept in reserve
    cloudcode_gemini3_thinking: str = "level"  # ag_cloudcode_gemini3_thinking: GEMINI3_THINKING_MODES
    state_url: str = ""  # ag_state_url: Redis/Valkey shared by several instances; "" = this process's state


def parse_state_url(text: str) -> str:
    """``ag_state_url``: "" (this process's own state), or a redis://, rediss:// or unix:// URL, given as
    such or as an ``env:NAME`` / ``file:PATH`` reference (the URL may hold a password); ``ValueError``
    else, which never quotes the password."""
    value = text.strip()
    url = resolve_secret(value, what="ag_state_url").strip() if is_secret_reference(value) else value
    if not url:
        return ""
    parts = urlsplit(url)
    shown = _without_password(url) if parts.scheme else "the value given"
    if parts.scheme not in ("redis", "rediss", "unix") or not (parts.netloc or parts.path):
        raise ValueError(f"ag_state_url: {shown} is not a redis://, rediss:// or unix:// URL "
                         "(empty: this process's own state)")
    if parts.scheme != "unix" and parts.path.strip("/") and not parts.path.strip("/").isdigit():
        raise ValueError(f"ag_state_url: {shown}: the path must be a database number, e.g. /0")
    return url


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


def parse_base_url(text: str, *, what: str) -> str:
    """An http(s) URL without a trailing slash; anything else is a ValueError naming the option."""
    url = text.strip().rstrip("/")
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"{what}: {text!r} is not an http(s) URL")
    if parts.query or parts.fragment:
        raise ValueError(f"{what}: {text!r} must not carry a query or fragment")
    return url


def parse_cloudcode_urls(values: list[str] | tuple[str, ...]) -> tuple[str, ...]:
    if not values:
        return DEFAULT_CLOUDCODE_URLS
    return tuple(parse_base_url(v, what="ag_cloudcode_urls") for v in values)


def parse_model_map(values: list[str] | tuple[str, ...], *,
                    what: str = "ag_model_map") -> tuple[tuple[str, str], ...]:
    """``FROM=TO`` entries, in the order given; ``*`` in FROM is a wildcard."""
    out: list[tuple[str, str]] = []
    for spec in values:
        src, sep, dst = spec.partition("=")
        src, dst = src.strip(), dst.strip()
        if not (sep and src and dst):
            raise ValueError(f"{what}: {spec!r} is not FROM=TO")
        if "*" in dst:
            raise ValueError(f"{what}: {spec!r}: the target model cannot contain '*'")
        out.append((src, dst))
    return tuple(out)


def parse_model_map_file(data: bytes, *, path: str) -> tuple[tuple[str, str], ...]:
    """A mapping file: one JSON object ``{"FROM": "TO"}``, in file order, with ag_model_map's rules."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as e:
        raise ValueError(f"ag_model_map_file: {path} is not valid JSON ({e})") from None
    if not isinstance(obj, dict):
        raise ValueError(f'ag_model_map_file: {path} must hold a JSON object {{"FROM": "TO", ...}}')
    bad = [k for k, v in obj.items() if not isinstance(v, str)]
    if bad:
        raise ValueError(f"ag_model_map_file: {path}: the target of {bad[0]!r} is not a string")
    try:
        return parse_model_map([f"{k}={v}" for k, v in obj.items()])
    except ValueError as e:
        raise ValueError(f"ag_model_map_file: {path}: {str(e).removeprefix('ag_model_map: ')}") from None


def parse_size(text: str, *, what: str) -> int:
    """Bytes from ``"33554432"``, ``"512k"``, ``"32m"`` or ``"1g"`` (binary multiples, as in mitmproxy)."""
    m = re.fullmatch(r"\s*(\d+)\s*([kmg]?)i?b?\s*", text.lower())
    if not m or int(m[1]) <= 0:
        raise ValueError(f"{what}: {text!r} is not a size like 32m, 512k or 1048576")
    return int(m[1]) * 1024 ** " kmg".index(m[2] or " ")


_BARE_VERSION = re.compile(r"\d+(?:\.\d+){1,3}")


def parse_user_agent(text: str) -> str:
    """``ag_user_agent``: a whole User-Agent, or a version alone (``4.5.0``) that becomes Antigravity's."""
    value = text.strip()
    if not value:
        raise ValueError("ag_user_agent: empty; give a version such as 4.5.0 or a whole User-Agent")
    if _BARE_VERSION.fullmatch(value):
        return USER_AGENT_TEMPLATE.format(version=value)
    if any(ord(c) < 32 or ord(c) == 127 for c in value):
        raise ValueError(f"ag_user_agent: {text!r} has control characters")
    return value


def parse_percent(value: float, *, what: str) -> float:
    if not 0 <= value < 100:
        raise ValueError(f"{what}: {value!r} must be a percentage from 0 up to (not including) 100")
    return float(value)


def parse_non_negative(value: float, *, what: str) -> float:
    if value < 0:
        raise ValueError(f"{what}: {value!r} must be 0 or more")
    return float(value)


SECRET_REFERENCES = ("env:", "file:")


def is_secret_reference(value: str) -> bool:
    return value.startswith(SECRET_REFERENCES)


def resolve_secret(value: str, *, what: str) -> str:
    """A secret option's value: ``env:NAME`` reads an environment variable, ``file:PATH`` a file (its
    surrounding whitespace stripped), anything else is the secret itself. The references keep the secret
    out of the command line (``ps``) and out of mitmproxy's option store (mitmweb's Options page)."""
    kind, _, ref = value.partition(":")
    if kind == "env" and ref:
        secret = os.environ.get(ref, "").strip()
        if not secret:
            raise ValueError(f"{what}: {value!r}: the environment variable {ref} is not set or empty")
        return secret
    if kind == "file" and ref:
        path = Path(ref).expanduser()
        try:
            secret = path.read_text().strip()
        except (OSError, UnicodeDecodeError) as e:
            raise ValueError(f"{what}: {value!r}: cannot read {path} ({e.__class__.__name__})") from None
        if not secret:
            raise ValueError(f"{what}: {value!r}: {path} is empty")
        return secret
    return value


def parse_auth_mode(text: str) -> AuthMode:
    if text not in AUTH_MODES:
        raise ValueError(f"ag_auth_mode: {text!r} is not one of {', '.join(AUTH_MODES)}")
    return text  # type: ignore[return-value]


def parse_image_fetch(text: str) -> ImageFetchMode:
    if text not in IMAGE_FETCH_MODES:
        raise ValueError(f"ag_image_fetch: {text!r} is not one of {', '.join(IMAGE_FETCH_MODES)}")
    return text  # type: ignore[return-value]


def parse_gemini3_thinking(text: str) -> str:
    if text not in GEMINI3_THINKING_MODES:
        raise ValueError(
            f"ag_cloudcode_gemini3_thinking: {text!r} is not one of {', '.join(GEMINI3_THINKING_MODES)}"
        )
    return text


def parse_scheduling(text: str) -> str:
    if text not in SCHEDULING_MODES:
        raise ValueError(f"ag_scheduling: {text!r} is not one of {', '.join(SCHEDULING_MODES)}")
    return text


def parse_positive(value: float, *, what: str) -> float:
    if value <= 0:
        raise ValueError(f"{what}: {value!r} must be greater than 0")
    return value


def is_loopback_host(host: str) -> bool:
    """True for the addresses only this machine can reach ("" means all interfaces: not loopback)."""
    if host in ("localhost",):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@dataclass(frozen=True, slots=True)
class InboundAuth:
    """Who may call the gateway: the effective mode (``auto`` resolved) and the key clients must send."""

    mode: EffectiveAuthMode = "off"
    api_key: str = ""
    exposed_on: tuple[str, ...] = ()  # listen addresses other machines can reach


def resolve_inbound_auth(mode: str, api_key: str, listen_hosts: Sequence[str], *,
                         allow_public: bool, client_keys: bool = False) -> InboundAuth:
    """Resolve ``auto`` against where the gateway listens, and refuse configurations that expose it.

    A gateway reachable from other machines spends the owner's Google accounts for whoever calls
    it, so listening beyond loopback without a key is a ``ValueError`` unless ``allow_public``.
    ``client_keys``: a keys file (``ag_api_keys_file``) names the callers; it counts as a key, and
    ``auto`` then checks keys on loopback too (named keys with limits mean nothing if they are optional).
    """
    requested = parse_auth_mode(mode)
    exposed = tuple(dict.fromkeys(h or "*" for h in listen_hosts if not is_loopback_host(h)))
    auto: EffectiveAuthMode = "all_except_health" if exposed or client_keys else "off"
    effective: EffectiveAuthMode = auto if requested == "auto" else requested
    where = ", ".join(exposed)
    if effective != "off" and not (api_key or client_keys):
        if not exposed:
            raise ValueError(f"ag_auth_mode={mode} requires ag_api_key: set ag_api_key=<secret> (clients "
                             "send it as 'Authorization: Bearer <secret>'), or use ag_auth_mode=off.")
        if not allow_public:
            raise ValueError(
                f"Refusing to listen on {where} (reachable from other machines) without ag_api_key: anyone "
                "who can reach it could spend your Google accounts. Set ag_api_key=<secret>, or listen on "
                "127.0.0.1 (listen_host=127.0.0.1), or set ag_allow_unauthenticated_public=true to run an "
                "open gateway on purpose.")
        effective = "off"  # forced open: without a key nobody could pass
    if exposed and effective == "off" and not allow_public:
        raise ValueError(
            f"Refusing to listen on {where} (reachable from other machines) with inbound auth off "
            f"(ag_auth_mode={mode}): anyone who can reach it could spend your Google accounts. Set "
            "ag_api_key=<secret> with ag_auth_mode=auto, strict or all_except_health, or listen on 127.0.0.1 "
            "(listen_host=127.0.0.1), or set ag_allow_unauthenticated_public=true to run an open gateway on "
            "purpose.")
    return InboundAuth(effective, api_key, exposed)


DEFAULT_DATA_DIR = "~/.antigravity_gw"


@dataclass(frozen=True, slots=True)
class UsageSettings:
    """The usage ledger's options (the Usage addon's, ``mitm/usage.py``)."""

    data_dir: Path = field(default_factory=lambda: Path(DEFAULT_DATA_DIR).expanduser())
    enabled: bool = True
    retention_days: int = 90


def parse_retention_days(value: int) -> int:
    if value < 0:
        raise ValueError(f"ag_usage_retention_days: {value!r} must be 0 (keep everything) or more")
    return value
