"""``python -m antigravity_gw usage`` (``scripts/ag usage``): the usage ledger as a table, JSON or a chart.

    usage [--since 24h|7d|DATE] [--by day|hour|account|model|key] [--json] [--png FILE] [--data-dir DIR]

Reads ``usage.sqlite3`` in the gateway's ``ag_data_dir`` (default ``~/.antigravity_gw``) while the
gateway runs: the ledger is in WAL mode, so the report never blocks it. Rows reach the file within a
second of a request finishing (the gateway writes in batches); ``GET /ag/usage`` on the gateway answers
the same report including the latest requests.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import orjson

from .settings import DEFAULT_DATA_DIR
from .usage import report
from .usage.ledger import FILE_NAME


def add_parser(tools: Any) -> None:
    p = tools.add_parser(
        "usage",
        help="requests, tokens, errors and latency from the usage ledger",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--since",
        default=report.DEFAULT_SINCE,
        help="how far back: 30m, 24h, 7d, 2w, or a UTC date/time such as 2026-12-01 (default 24h)",
    )
    p.add_argument("--by", default="day", choices=tuple(report.GROUPS), help="one row per ... (default day)")
    p.add_argument("--json", action="store_true", help="the report as JSON (what GET /ag/usage answers)")
    p.add_argument(
        "--png",
        type=Path,
        metavar="FILE",
        help="also draw a chart into FILE (needs matplotlib: scripts/bootstrap.sh chart)",
    )
    p.add_argument(
        "--data-dir",
        dest="dir",
        type=Path,
        default=Path(DEFAULT_DATA_DIR),
        help=f"the gateway's ag_data_dir (default {DEFAULT_DATA_DIR})",
    )
    p.set_defaults(run=cmd_usage)


def cmd_usage(args: argparse.Namespace, out: TextIO) -> None:
    since = report.parse_since(args.since, time.time())
    path = args.dir / FILE_NAME
    if not path.exists():
        print(
            f"note: no usage ledger at {path} yet (the gateway writes it once it has served a request; "
            "pass --data-dir if its ag_data_dir is elsewhere)",
            file=sys.stderr,
        )
    result = report.summarize(path, since, args.by)
    if args.png:
        try:
            report.chart(result, args.png)
        except ImportError:
            raise ValueError(
                "--png needs matplotlib: run 'scripts/bootstrap.sh chart' (or pip install "
                "matplotlib), then try again"
            ) from None
    if args.json:
        out.write(orjson.dumps(result, option=orjson.OPT_INDENT_2).decode() + "\n")
    else:
        out.write(report.table(result) + "\n")
    if args.png:
        print(f"chart written to {args.png}", file=sys.stderr)
