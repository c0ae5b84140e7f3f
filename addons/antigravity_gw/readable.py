"""What a person reads about a request in mitmweb's flow list: one short, front-loaded comment per flow.

    gpt-4o → gemini-2.5-flash · a@example.com · 2 attempts · 7+5 tok · 45 ms
    ⚠ attempt 1/2: 429 QUOTA_EXHAUSTED · a@example.com · cooling 3 s
    ⚠ stream ended with an error: The upstream stream broke off (ClientPayloadError). · gpt-4o → …

Pure string work, done once when a flow ends (never per chunk). Comments are shortened at a word
boundary, never in the middle of a word.
"""

from __future__ import annotations

from collections.abc import Sequence

SEP = " · "
WARN = "⚠ "
COMMENT_LIMIT = 240  # characters: mitmweb's comment column is one line


def shorten(text: str, limit: int = COMMENT_LIMIT) -> str:
    """``text`` cut to at most ``limit`` characters at a word boundary, with "…" when anything was cut."""
    if len(text) <= limit and "\n" not in text and "\t" not in text:
        return text  # the usual comment: nothing to do
    text = " ".join(text.split())  # one line: newlines in an upstream message would break the column
    if len(text) <= limit:
        return text
    cut = text[: limit - 1]
    space = cut.rfind(" ")
    if space > 0:
        cut = cut[:space]
    return cut.rstrip(" ·:,;") + "…"


def duration(ms: float | None) -> str:
    if ms is None:
        return ""
    # int formatting: a float's format spec costs a microsecond, and this runs once per request
    return f"{int(ms + 0.5)} ms" if ms < 10_000 else f"{ms / 1000:.1f} s"


def seconds(value: float) -> str:
    """A cooldown's length the way people say it: 3 s, 90 s, 12 min, 2 h."""
    if value < 120:
        return f"{value:.0f} s"
    if value < 7200:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.0f} h"


def models(client_model: str, served_model: str, fallback_from: str = "") -> str:
    head = f"{client_model or '?'} → {served_model}" if served_model else (client_model or "")
    return f"{head} (fallback from {fallback_from})" if fallback_from else head


def request_comment(client_model: str, served_model: str, *, account: str = "", attempts: int = 0,
                    tokens: Sequence[int] | None = None, ms: float | None = None,
                    fallback_from: str = "", problem: str = "") -> str:
    """A translated request's comment. ``problem`` (a stream's error event, a client that left) comes
    first, marked ⚠: the flow list must not show a success that was not one."""
    text = f"{client_model or '?'} → {served_model}" if served_model else client_model
    if fallback_from:
        text += f" (fallback from {fallback_from})"
    if account:
        text += SEP + account
    if attempts > 1:
        text += f"{SEP}{attempts} attempts"
    if tokens:
        text += f"{SEP}{tokens[0]}+{tokens[1]} tok"
    if ms is not None:
        text += SEP + duration(ms)
    if problem:
        text = f"{WARN}{shorten(problem, 120)}{SEP}{text}"
    return shorten(text)


def attempt_comment(number: int, total: int, status: int | None, reason: str, account: str, *,
                    cooldown: float = 0.0, error: str = "") -> str:
    """A failed upstream attempt's comment: which attempt, what Google said, which account, its cooldown."""
    which = f"attempt {number}/{total}" if total else f"attempt {number}"
    what = f"{status} {reason}".strip() if status else (error or "no answer")
    parts = [f"{WARN}{which}: {what}", account]
    if cooldown > 0:
        parts.append(f"cooling {seconds(cooldown)}")
    return shorten(SEP.join(p for p in parts if p))


def error_comment(status: int, code: str, message: str, context: str = "") -> str:
    """An error answer (the gateway's own, or the last attempt's): status and code first, then what it
    was about (``context``: the models, the attempts), then the message the client got."""
    head = f"{WARN}{status} {code}".rstrip()
    return shorten(SEP.join(p for p in (head, context, message) if p))
