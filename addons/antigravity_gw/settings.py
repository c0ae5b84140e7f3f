"""The gateway's configuration: every ``ag_*`` option parsed once into a frozen ``Settings``.

The parse_* helpers are pure and raise ``ValueError`` with a message that quotes the bad value;
``mitm/gateway.py`` turns that into mitmproxy's ``OptionsError`` so mitmdump refuses to start.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

DEFAULT_CLOUDCODE_URLS = (
    "https://daily-cloudcode-pa.sandbox.googleapis.com/v1internal",
    "https://daily-cloudcode-pa.googleapis.com/v1internal",
    "https://cloudcode-pa.googleapis.com/v1internal",
)
DEFAULT_GEMINI_URL = "https://generativelanguage.googleapis.com"
DEFAULT_OAUTH_TOKEN_URL = "https://oauth2.googleapis.com/token"
DEFAULT_ACCOUNTS_DIR = "~/.antigravity_tools/accounts"
DEFAULT_USER_AGENT = "Antigravity/4.3.0 (X11; Linux x86_64) Chrome/132.0.6834.160 Electron/39.2.3"

AuthMode = Literal["off", "strict", "all_except_health", "auto"]
AUTH_MODES: tuple[str, ...] = ("off", "strict", "all_except_health", "auto")


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Upstream time limits in seconds, named after aiohttp's ClientTimeout phases."""

    connect: float = 10.0
    first_byte: float = 120.0
    total: float = 600.0


@dataclass(frozen=True, slots=True)
class Settings:
    accounts_dir: Path = Path(DEFAULT_ACCOUNTS_DIR).expanduser()
    cloudcode_urls: tuple[str, ...] = DEFAULT_CLOUDCODE_URLS
    gemini_url: str = DEFAULT_GEMINI_URL
    oauth_token_url: str = DEFAULT_OAUTH_TOKEN_URL
    oauth_client_id: str = ""
    oauth_client_secret: str = ""
    api_key: str = ""
    auth_mode: AuthMode = "auto"
    model_map: tuple[tuple[str, str], ...] = ()
    user_agent: str = DEFAULT_USER_AGENT
    max_attempts: int = 4
    timeouts: Timeouts = field(default_factory=Timeouts)
    body_limit: int = 32 * 1024 * 1024
    image_max_bytes: int = 20 * 1024 * 1024
    image_timeout: float = 15.0
    keepalive_interval: float = 15.0


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


def parse_model_map(values: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """``FROM=TO`` entries, in the order given; ``*`` in FROM is a wildcard."""
    out: list[tuple[str, str]] = []
    for spec in values:
        src, sep, dst = spec.partition("=")
        src, dst = src.strip(), dst.strip()
        if not (sep and src and dst):
            raise ValueError(f"ag_model_map: {spec!r} is not FROM=TO")
        if "*" in dst:
            raise ValueError(f"ag_model_map: {spec!r}: the target model cannot contain '*'")
        out.append((src, dst))
    return tuple(out)


def parse_auth_mode(text: str) -> AuthMode:
    if text not in AUTH_MODES:
        raise ValueError(f"ag_auth_mode: {text!r} is not one of {', '.join(AUTH_MODES)}")
    return text  # type: ignore[return-value]


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
