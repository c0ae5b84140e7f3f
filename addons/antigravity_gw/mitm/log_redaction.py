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
from collections.abc import Callable, Iterable
from typing import Any

REDACTED = "[redacted]"
_HEADER = re.compile(
    r"(?i)\b((?:proxy-)?authorization|x-api-key|x-goog-api-key|api-key|cookie)"  # the name
    r"([\"']?\s*[:=]\s*[\"']?)"  # ": ", "': '" (a repr'd dict) or "="
    r"((?:bearer|basic|digest)\s+)?"  # the scheme stays: it tells which kind of credential it was
    r"[^\s\"'\\,;]+")
_QUERY = re.compile(r"(?i)([?&](?:key|api_key|apikey|access_token|refresh_token|id_token|token)=)[^&\s\"'\\#]+")
_JSON_FIELD = re.compile(
    r"(?i)([\"'](?:access_token|refresh_token|id_token|api_key|client_secret)[\"']\s*:\s*[\"'])[^\"']+")
_GOOGLE = re.compile(r"\bya29\.[\w.-]+|(?<![\w/])1//[\w-]{10,}|\bAIza[\w-]{20,}")


def redact_secrets(text: str, literals: Iterable[str] = ()) -> str:
    """``text`` with every credential it carries replaced by ``[redacted]``."""
    for literal in literals:
        if literal and literal in text:
            text = text.replace(literal, REDACTED)
    text = _HEADER.sub(lambda m: f"{m[1]}{m[2]}{m[3] or ''}{REDACTED}", text)
    text = _QUERY.sub(lambda m: f"{m[1]}{REDACTED}", text)
    text = _JSON_FIELD.sub(lambda m: f"{m[1]}{REDACTED}", text)
    return _GOOGLE.sub(REDACTED, text)


class LogRedactor:
    """Installs itself as the process's log record factory (chaining to the one it replaced)."""

    def __init__(self) -> None:
        self.literals: tuple[str, ...] = ()
        self._previous: Callable[..., logging.LogRecord] | None = None

    def install(self) -> None:
        if self._previous is not None:
            return
        self._previous = logging.getLogRecordFactory()
        logging.setLogRecordFactory(self._make_record)

    def uninstall(self) -> None:
        if self._previous is None:
            return
        if logging.getLogRecordFactory() == self._make_record:
            logging.setLogRecordFactory(self._previous)
        self._previous = None

    def _make_record(self, *args: Any, **kwargs: Any) -> logging.LogRecord:
        # Another factory may have chained to this one and outlived our uninstall: keep working then.
        record = (self._previous or logging.LogRecord)(*args, **kwargs)
        try:
            message = record.getMessage()
        except Exception:  # noqa: BLE001 - a broken format string: logging reports it in the handler
            return record
        record.msg, record.args = redact_secrets(message, self.literals), None
        if record.exc_info and not record.exc_text:
            record.exc_text = redact_secrets(logging.Formatter().formatException(record.exc_info), self.literals)
        return record
