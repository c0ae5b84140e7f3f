"""No key reaches a log line, mitmproxy's own included.

mitmproxy logs some client bytes verbatim: a request cut off mid-headers is logged as
``Client closed connection before completing request headers: b'POST ... Authorization: Bearer sk-...'``,
and protocol errors quote what they could not parse. The gateway cannot stop those lines from being
written, so it rewrites every log record as it is made: a log record factory (``logging``'s one hook
that sees every record of every logger before any handler, whatever the order handlers were installed
in) formats the message once, redacts it, and stores the result as the record's message. Handlers then
format nothing again, so the cost is a regex pass over lines that are written anyway.

Redacted: the values of credential headers (``Authorization``, ``Proxy-Authorization``, ``x-api-key``,
``x-goog-api-key``, ``api-key``, ``Cookie``), ``key=`` / ``*_token=`` query parameters, Google's access
tokens (``ya29.``), refresh tokens (``1//``) and API keys (``AIza``), JSON token fields, and any
configured secret literally (``ag_api_key``, the OAuth client secret).
"""

from __future__ import annotations

import logging
import re
import weakref
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "[redacted]"
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|x-goog-api-key|api-key|cookie)"  # the name
    r"([\"']?\s*[:=]\s*[\"']?)"  # ": ", "': '" (a repr'd dict) or "="
    r"((?:bearer|basic|digest)\s+)?"  # the scheme stays: it tells which kind of credential it was
    r"[^\s\"'\\,;]+")
_QUERY = re.compile(
    r"(?i)([?&](?:key|api_key|apikey|access_token|refresh_token|id_token|token)=)[^&\s\"'\\#]+")
_JSON_FIELD = re.compile(
    r"(?i)([\"'](?:access_token|refresh_token|id_token|api_key|client_secret)[\"']\s*:\s*[\"'])[^\"']+")
_GOOGLE = re.compile(r"\bya29\.[\w.-]+|(?<![\w/])1//[\w-]{10,}|\bAIza[\w-]{20,}")


# Every pattern below needs one of these: most lines have none, and a few substring tests are all they
# cost (measured: ~2 µs a line, where the four regex passes take ~30 µs). Each is as narrow as its
# patterns allow: a bare "token" would match every access line's "tokens=12/34", and a bare "key=" its
# "key=team-a" (a client key's name), and run all four on every request.
_TRIGGERS = ("authorization", "api-key", "api_key", "apikey=", "?key=", "&key=", "cookie", "token=", "_token",
             "client_secret", "ya29.", "1//", "aiza")


# A configured secret shorter than this is not searched for literally: replacing every "s" or "key" would
# wreck the log and tell an attacker the secret anyway. (Credential headers are still redacted by pattern.)
MIN_LITERAL = 6


def redact_secrets(text: str, literals: Iterable[str] = ()) -> str:
    """``text`` with every credential it carries replaced by ``[redacted]``."""
    for literal in literals:
        if len(literal) >= MIN_LITERAL and literal in text:
            text = text.replace(literal, REDACTED)
    lowered = text.lower()
    if not any(trigger in lowered for trigger in _TRIGGERS):
        return text
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{REDACTED}", text)
    text = _QUERY.sub(lambda m: f"{m[1]}{REDACTED}", text)
    text = _JSON_FIELD.sub(lambda m: f"{m[1]}{REDACTED}", text)
    return _GOOGLE.sub(REDACTED, text)


class LogRedactor:
    """One user of the process-wide record factory, with its own secrets to redact.

    The factory is installed once per process, however many redactors exist (a test run makes many
    addons), and removed when the last one is uninstalled; it redacts the literals of every live one.
    """

    def __init__(self) -> None:
        self._literals: tuple[str, ...] = ()

    @property
    def literals(self) -> tuple[str, ...]:
        return self._literals

    @literals.setter
    def literals(self, value: tuple[str, ...]) -> None:
        self._literals = value
        _gather_literals()

    def install(self) -> None:
        global _previous_factory
        _active.add(self)
        _gather_literals()
        current = logging.getLogRecordFactory()
        if current is not _make_record:
            _previous_factory = current
            logging.setLogRecordFactory(_make_record)

    def uninstall(self) -> None:
        _active.discard(self)
        _gather_literals()
        if not _active and logging.getLogRecordFactory() is _make_record:
            logging.setLogRecordFactory(_previous_factory)


_active: weakref.WeakSet[LogRedactor] = weakref.WeakSet()
_previous_factory: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()
# The literals of every live redactor, gathered when one changes rather than on every record. A redactor
# collected without uninstall() leaves its literals here until the next change: redacting too much, never
# too little.
_literals: tuple[str, ...] = ()


def _gather_literals() -> None:
    global _literals
    _literals = tuple({literal for redactor in list(_active) for literal in redactor.literals})


# mitmweb's start-up line exists to hand its operator the login URL (``?token=``): README tells users to
# open it from there, so it is the one line left whole.
_WEB_URL_LOGGER, _WEB_URL_LINE = "mitmproxy.tools.web.master", "Web server listening at "


def _make_record(*args: Any, **kwargs: Any) -> logging.LogRecord:
    record = _previous_factory(*args, **kwargs)
    if record.name == _WEB_URL_LOGGER and str(record.msg).startswith(_WEB_URL_LINE):
        return record
    literals = _literals
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: logging reports it in the handler
        return record
    record.msg, record.args = redact_secrets(message, literals), None
    if record.exc_info or record.exc_text:
        trace = record.exc_text or logging.Formatter().formatException(record.exc_info)  # type: ignore[arg-type]
        record.exc_text = redact_secrets(trace, literals)
    return record
