"""The accounts' live state as data (``GET /ag/accounts``) and as a readable table (``ag.accounts``, and
``accounts list --live``, which renders the JSON a running gateway answers).

Pure functions, no mitmproxy: the CLI renders the same table from the JSON. No secrets: ids, labels,
states, quota numbers and times only.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

from .upstream.pool import AccountStatus
from .upstream.quota import AccountQuota, blocked_models


def utc(timestamp: float | None) -> str | None:
    if not timestamp:
        return None
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def account_view(s: AccountStatus, quota: AccountQuota | None, *, now: float, floor: float,
                 served: int, last_used: float | None, can_refresh: bool, note: str = "") -> dict[str, Any]:
    """One account for ``GET /ag/accounts``; ``floor`` is a fraction (0.1 = 10 %); ``note``: what the user
    should know (why it cannot refresh, until when it still works)."""
    a = s.account
    stuck = s.state != "disabled" and a.kind == "oauth" and not can_refresh
    state = "cannot refresh" if stuck and s.state == "ready" else s.state  # works until its token expires
    view: dict[str, Any] = {
        "id": a.id, "email": a.email, "kind": a.kind, "state": state, "cannot_refresh": stuck,
        "note": note or None,
        "until": utc(s.until), "reason": s.reason or None,
        "cooldowns": [{"model": c.model or None, "until": utc(c.until), "reason": c.reason}
                      for c in s.cooldowns],
        "requests_served": served, "last_used": utc(last_used),
        "tier": (quota.tier or None) if quota else None,
        "quota": quota_view(quota, now=now, floor=floor) if a.kind == "oauth" else None,
    }
    return view


def quota_view(quota: AccountQuota | None, *, now: float, floor: float) -> dict[str, Any]:
    if quota is None:
        return {"fetched_at": None, "age_seconds": None, "error": None, "models": {}, "buckets": []}
    exhausted = blocked_models(quota, floor, now)
    return {
        "fetched_at": utc(quota.fetched_at),
        "age_seconds": round(now - quota.fetched_at) if quota.fetched_at else None,
        "error": quota.error or None,
        "buckets_error": quota.buckets_error or None,
        "models": {m: {"remaining_fraction": q.remaining, "reset_time": utc(q.reset),
                       "exhausted_until": utc(exhausted.get(m))}
                   for m, q in sorted(quota.models.items())},
        "buckets": [{"id": b.bucket_id, "group": b.group, "window": b.window,
                     "remaining_fraction": b.remaining, "reset_time": utc(b.reset)} for b in quota.buckets],
    }


# ---- the table ----------------------------------------------------------------------------------
COLUMNS = ("ACCOUNT", "KIND", "STATE", "TIER", "SERVED", "LAST USED")


def table(views: Iterable[Mapping[str, Any]], now: float) -> list[str]:
    """Lines of text: one row per account, then its per-model quota and buckets indented below it."""
    views = list(views)
    if not views:
        return ["no accounts loaded"]
    rows = [(v["email"] or v["id"], "oauth" if v["kind"] == "oauth" else "api key", _state(v, now),
             v.get("tier") or "-", str(v.get("requests_served", 0)), v.get("last_used") or "-")
            for v in views]
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(COLUMNS)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(COLUMNS, widths, strict=True)).rstrip()]
    for view, row in zip(views, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        if view.get("note"):
            lines.append("    " + view["note"])
        lines += ["    " + line for line in _quota_lines(view, now)]
    return lines


def _state(v: Mapping[str, Any], now: float) -> str:
    state = v["state"]
    if state == "cooling" and v.get("until"):
        return f"cooling until {v['until']} ({_in(v['until'], now)}): {v.get('reason') or ''}".rstrip(": ")
    if state == "disabled":
        return f"disabled ({v.get('reason') or 'disabled'})"
    return state


def _quota_lines(v: Mapping[str, Any], now: float) -> list[str]:
    lines = [f"{c['model']}: cooling until {c['until']} ({_in(c['until'], now)}): {c['reason']}"
             for c in v.get("cooldowns", ()) if c.get("model")]
    quota = v.get("quota")
    if quota is None:
        return lines
    if not quota.get("fetched_at"):
        problem = f": {quota['error']}" if quota.get("error") else ""
        return [*lines, f"quota: not fetched yet{problem}"]
    head = f"quota as of {quota['fetched_at']} ({quota['age_seconds']}s ago)"
    if quota.get("error"):
        head += f"; the last refresh failed: {quota['error']}"
    lines.append(head)
    models = quota.get("models") or {}
    width = max((len(m) for m in models), default=0)
    for model, q in models.items():
        lines.append(f"  {model.ljust(width)}  {_fraction(q['remaining_fraction'])}{_reset(q, now)}")
    for b in quota.get("buckets") or ():
        reset = f", resets {b['reset_time']} ({_in(b['reset_time'], now)})" if b.get("reset_time") else ""
        left = _fraction(b["remaining_fraction"]).strip()
        lines.append(f"  bucket {b['id']} ({b['group']}): {left}{reset}")
    return lines


def _fraction(value: float | None) -> str:
    return "   ?" if value is None else f"{value * 100:3.0f}%"


def _reset(q: Mapping[str, Any], now: float) -> str:
    if q.get("exhausted_until"):
        return f"  EXHAUSTED until {q['exhausted_until']} ({_in(q['exhausted_until'], now)})"
    if q.get("reset_time"):
        return f"  resets {q['reset_time']} ({_in(q['reset_time'], now)})"
    return ""


def _in(iso: str, now: float) -> str:
    try:
        seconds = datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp() - now
    except ValueError:
        return "?"
    if seconds <= 0:
        return "passed"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    if hours:
        return f"in {hours}h{minutes:02d}m"
    return f"in {minutes}m{secs:02d}s" if minutes else f"in {secs}s"
