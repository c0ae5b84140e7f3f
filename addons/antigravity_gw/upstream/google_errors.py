"""Google's error answers (``google.rpc.Status``) read as data.

``details`` entries are matched by their ``@type`` and ``reason``, never by position or by message
text. Durations come from ``RetryInfo.retryDelay`` (protobuf durations such as ``"45.837906927s"``),
``ErrorInfo.metadata.quotaResetDelay`` (``"9h22m20.5s"``), ``quotaResetTimeStamp`` (RFC 3339) or a
``Retry-After`` header, in that order of trust. The public Gemini API names no ErrorInfo for its
429s; its ``QuotaFailure`` violations say which model's quota ran out (``quotaDimensions.model``)
and whether that quota is per model (``quotaId`` ``...PerModel...``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Any

import orjson

ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"
QUOTA_FAILURE = "type.googleapis.com/google.rpc.QuotaFailure"


class ErrorReason(StrEnum):
    QUOTA_EXHAUSTED = "QUOTA_EXHAUSTED"
    RATE_LIMIT_EXCEEDED = "RATE_LIMIT_EXCEEDED"
    MODEL_CAPACITY_EXHAUSTED = "MODEL_CAPACITY_EXHAUSTED"
    VALIDATION_REQUIRED = "VALIDATION_REQUIRED"
    SERVICE_DISABLED = "SERVICE_DISABLED"
    UNKNOWN = "UNKNOWN"


@dataclass(frozen=True, slots=True)
class GoogleError:
    http_status: int
    status: str = ""  # google.rpc code name, e.g. RESOURCE_EXHAUSTED
    message: str = ""
    reason: ErrorReason | str = ErrorReason.UNKNOWN
    model: str = ""  # ErrorInfo.metadata.model, or the model a QuotaFailure names
    retry_after: float | None = None  # seconds, the best hint found
    quota_per_model: bool = False  # a QuotaFailure says the exhausted quota is counted per model

    @property
    def reason_name(self) -> str:
        """The most telling name of what happened: the ErrorInfo reason (QUOTA_EXHAUSTED) when Google gave
        one, else the status (RESOURCE_EXHAUSTED, UNAVAILABLE)."""
        if self.reason and self.reason != ErrorReason.UNKNOWN:
            return str(self.reason)
        return self.status

    @property
    def is_per_model(self) -> bool:
        """Does the exhausted quota belong to one model (other models of the account still work)?"""
        return bool(self.model) and (self.reason == ErrorReason.QUOTA_EXHAUSTED or self.quota_per_model)


_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|h|m|s)")


def parse_duration(text: str) -> float:
    """``"45.837906927s"``, ``"1h16m0.667s"``, ``"500ms"`` or a bare number of seconds, in seconds."""
    text = text.strip()
    if not text:
        raise ValueError("empty duration")
    try:
        return max(float(text), 0.0)
    except ValueError:
        pass
    pos, total = 0, 0.0
    scale = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        total += float(m.group(1)) * scale[m.group(2)]
        pos = m.end()
    if pos != len(text) or pos == 0:
        raise ValueError(f"not a duration: {text!r}")
    return total


def parse_retry_after_header(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` as delta-seconds or an HTTP date."""
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        pass
    try:
        return max(parsedate_to_datetime(value).timestamp() - now, 0.0)
    except (TypeError, ValueError):
        return None


def _seconds_until(timestamp: str, now: float) -> float | None:
    try:
        return max(datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp() - now, 0.0)
    except ValueError:
        return None


def _first_duration(*candidates: Any) -> float | None:
    for c in candidates:
        if isinstance(c, str):
            try:
                return parse_duration(c)
            except ValueError:
                continue
        if isinstance(c, dict) and ("seconds" in c or "nanos" in c):  # protobuf Duration as JSON object
            return float(c.get("seconds", 0)) + float(c.get("nanos", 0)) / 1e9
    return None


def parse_google_error(http_status: int, body: bytes, *, retry_after_header: str | None = None,
                       now: float) -> GoogleError:
    """Whatever Google sent (JSON Status, a list of them, or text), as a ``GoogleError``."""
    try:
        data = orjson.loads(body) if body else {}
    except orjson.JSONDecodeError:
        data = {}
    if isinstance(data, list) and data:  # some endpoints wrap the Status in a one-element list
        data = data[0]
    err = data.get("error") if isinstance(data, dict) else None
    if not isinstance(err, dict):
        text = body[:300].decode("utf-8", "replace").strip()
        return GoogleError(http_status, message=text,
                           retry_after=parse_retry_after_header(retry_after_header, now=now))
    info = _detail(err, ERROR_INFO)
    retry = _detail(err, RETRY_INFO)
    quota_model, quota_per_model = _quota_failure(_detail(err, QUOTA_FAILURE))
    meta = found if isinstance(found := info.get("metadata"), dict) else {}
    reason_text = str(info.get("reason") or "")
    reason: ErrorReason | str = ErrorReason(reason_text) if reason_text in ErrorReason.__members__ else (
        reason_text or ErrorReason.UNKNOWN)
    delay = _first_duration(retry.get("retryDelay"), meta.get("quotaResetDelay"))
    if delay is None and isinstance(meta.get("quotaResetTimeStamp"), str):
        delay = _seconds_until(meta["quotaResetTimeStamp"], now)
    if delay is None:
        delay = parse_retry_after_header(retry_after_header, now=now)
    return GoogleError(
        http_status=http_status, status=str(err.get("status") or ""), message=str(err.get("message") or ""),
        reason=reason, model=str(meta.get("model") or quota_model), retry_after=delay,
        quota_per_model=quota_per_model,
    )


def anthropic_error_message(message: str) -> str | None:
    """Claude behind Cloud Code: Anthropic's own error JSON (``{"type": "error", "error": {"type",
    "message"}, "request_id"}``) as the text of Google's message, maybe after a prefix; its message, or
    None when the text is not that."""
    start = message.find("{")
    if start < 0 or '"error"' not in message:
        return None
    try:
        data = orjson.loads(message[start:])
    except orjson.JSONDecodeError:
        return None
    inner = data.get("error") if isinstance(data, dict) else None
    if not isinstance(inner, dict):
        return None
    text, kind = inner.get("message"), inner.get("type")
    if not isinstance(text, str) or not text:
        return None
    return f"{text} ({kind})" if isinstance(kind, str) and kind else text


def _detail(err: dict[str, Any], type_url: str) -> dict[str, Any]:
    """The first ``details`` entry of that ``@type`` ({} when there is none)."""
    for d in err.get("details") or ():
        if isinstance(d, dict) and d.get("@type") == type_url:
            return d
    return {}


def _quota_failure(detail: dict[str, Any]) -> tuple[str, bool]:
    """``(model, per model?)`` from a QuotaFailure's first violation that names a model."""
    for v in detail.get("violations") or ():
        dims = v.get("quotaDimensions") if isinstance(v, dict) else None
        if isinstance(dims, dict) and isinstance(dims.get("model"), str) and dims["model"]:
            return dims["model"], "PerModel" in str(v.get("quotaId") or "")
    return "", False
