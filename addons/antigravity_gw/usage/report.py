"""Usage reports from the ledger: requests, tokens, errors and latency per day, hour, account, model or
key. ``scripts/ag usage`` prints them as a table (or JSON, or a chart) and ``GET /ag/usage`` answers the
same JSON; both call ``summarize``. Read-only: a report never blocks the gateway's writer (WAL)."""

from __future__ import annotations

import re
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from .ledger import connect

GROUPS = {
    "day": "strftime('%Y-%m-%d', ts, 'unixepoch')",
    "hour": "strftime('%Y-%m-%d %H:00', ts, 'unixepoch')",
    "account": "account",
    "model": "CASE mapped_model WHEN '' THEN client_model ELSE mapped_model END",
    "key": "key_name",
}
DEFAULT_SINCE = "24h"
_SINCE = re.compile(r"(\d+(?:\.\d+)?)([mhdw])")
_UNIT = {"m": 60, "h": 3600, "d": 86400, "w": 7 * 86400}
NUMBERS = (
    "requests",
    "errors",
    "prompt_tokens",
    "completion_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "total_tokens",
)
_QUERIED = tuple(k for k in NUMBERS if k != "total_tokens")  # what the query sums (total_tokens: added after)
_AVERAGED = ("duration_sum", "duration_n", "first_sum", "first_n")  # the sums and counts of the averages


def parse_since(text: str, now: float) -> float:
    """``24h``, ``7d``, ``30m``, ``2w`` ago, or a UTC date ``2026-12-01`` (or ISO time): unix seconds."""
    text = text.strip()
    if m := _SINCE.fullmatch(text):
        return now - float(m[1]) * _UNIT[m[2]]
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ValueError(f"--since: {text!r} is not like 24h, 7d or 2026-12-01") from None
    return (when if when.tzinfo else when.replace(tzinfo=UTC)).timestamp()


def parse_by(text: str) -> str:
    if text not in GROUPS:
        raise ValueError(f"--by: {text!r} is not one of {', '.join(GROUPS)}")
    return text


def summarize(path: Path, since: float, by: str) -> dict[str, Any]:
    """Blocking. ``{"since", "by", "rows": [...], "total": {...}}``; every row has the group's value as
    ``by``'s name plus ``NUMBERS``, ``avg_ms`` and ``avg_first_chunk_ms``. No ledger yet: no rows."""
    group = GROUPS[parse_by(by)]
    if not path.exists():
        return {"since": since, "by": by, "rows": [], "total": _total([])}
    conn = connect(path)
    try:
        conn.row_factory = sqlite3.Row
        rows = conn.execute(
            f"SELECT {group} AS grp, COUNT(*) AS requests,"
            " SUM(status >= 400 OR status = 0) AS errors,"
            " SUM(prompt_tokens) AS prompt_tokens, SUM(completion_tokens) AS completion_tokens,"
            " SUM(cached_tokens) AS cached_tokens, SUM(reasoning_tokens) AS reasoning_tokens,"
            " SUM(duration_ms) AS duration_sum, COUNT(duration_ms) AS duration_n,"
            " SUM(first_chunk_ms) AS first_sum, COUNT(first_chunk_ms) AS first_n"
            f" FROM requests WHERE ts >= ? GROUP BY grp ORDER BY grp",
            (since,),
        ).fetchall()
    finally:
        conn.close()
    out = [_row(by, dict(r)) for r in rows]
    return {"since": since, "by": by, "rows": out, "total": _total([dict(r) for r in rows])}


def _row(by: str, r: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {by: r["grp"]}
    row.update({k: int(r[k] or 0) for k in _QUERIED})
    row["total_tokens"] = row["prompt_tokens"] + row["completion_tokens"]
    row["avg_ms"] = round(r["duration_sum"] / r["duration_n"], 1) if r["duration_n"] else None
    row["avg_first_chunk_ms"] = round(r["first_sum"] / r["first_n"], 1) if r["first_n"] else None
    return row


def _total(rows: list[dict[str, Any]]) -> dict[str, Any]:
    summed: dict[str, Any] = {k: sum((r[k] or 0) for r in rows) for k in (*_QUERIED, *_AVERAGED)}
    summed["grp"] = "total"
    total = _row("total", summed)
    del total["total"]
    return total


def table(report: dict[str, Any]) -> str:
    """The report as aligned text columns, a total line last."""
    by = report["by"]
    head = [by, "requests", "errors", "prompt", "completion", "cached", "reasoning", "avg ms", "first ms"]
    lines = [[_cell(r[by]) or "-", *_numbers(r)] for r in report["rows"]]
    lines.append(["total", *_numbers(report["total"])])
    widths = [max(len(row[i]) for row in [head, *lines]) for i in range(len(head))]

    def fmt(row: list[str]) -> str:
        pairs = enumerate(zip(row, widths, strict=True))
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in pairs)

    return "\n".join([fmt(head), *map(fmt, lines)])


def _numbers(r: dict[str, Any]) -> list[str]:
    return [
        str(r["requests"]),
        str(r["errors"]),
        str(r["prompt_tokens"]),
        str(r["completion_tokens"]),
        str(r["cached_tokens"]),
        str(r["reasoning_tokens"]),
        _cell(r["avg_ms"]),
        _cell(r["avg_first_chunk_ms"]),
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.0f}" if isinstance(value, float) else str(value)


def chart(report: dict[str, Any], path: Path) -> None:
    """A PNG: tokens (stacked prompt/completion) and errors per group. Needs matplotlib (``chart`` extra)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    by, rows = report["by"], report["rows"]
    labels = [_cell(r[by]) or "-" for r in rows]
    fig, (tokens, requests) = plt.subplots(2, 1, figsize=(max(6, len(rows) * 0.6), 7), sharex=True)
    prompt = [r["prompt_tokens"] for r in rows]
    tokens.bar(labels, prompt, label="prompt")
    tokens.bar(labels, [r["completion_tokens"] for r in rows], bottom=prompt, label="completion")
    tokens.set_ylabel("tokens")
    tokens.legend()
    requests.bar(labels, [r["requests"] - r["errors"] for r in rows], label="ok")
    requests.bar(
        labels,
        [r["errors"] for r in rows],
        bottom=[r["requests"] - r["errors"] for r in rows],
        label="errors",
        color="tab:red",
    )
    requests.set_ylabel("requests")
    requests.legend()
    requests.tick_params(axis="x", labelrotation=45)
    since = datetime.fromtimestamp(report["since"], UTC).strftime("%Y-%m-%d %H:%M UTC")
    fig.suptitle(f"antigravity gateway usage by {by} since {since}")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def spent_since(path: Path, since: float) -> dict[str, int]:
    """Blocking: tokens per key name since ``since`` (the daily budgets survive a restart)."""
    if not path.exists():
        return {}
    conn = connect(path)
    try:
        rows = conn.execute(
            "SELECT key_name, SUM(prompt_tokens + completion_tokens) FROM requests"
            " WHERE ts >= ? AND key_name != '' GROUP BY key_name",
            (since,),
        ).fetchall()
    finally:
        conn.close()
    return {name: int(total or 0) for name, total in rows}
