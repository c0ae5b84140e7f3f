"""README's options table lists every ag_* option the addons declare, with its default."""

from __future__ import annotations

import re
from collections.abc import Sequence

from mitmproxy.test import taddons
from support.gateway import ROOT

from antigravity_gw import make_addons


def readme_rows() -> dict[str, str]:
    rows = {}
    for line in (ROOT / "README.md").read_text().splitlines():
        if m := re.match(r"^\| `(ag_\w+)` \| (.*?) \| .* \|$", line):
            rows[m[1]] = m[2]
    return rows


def shown(default: object) -> str:
    """How a default is written in the table's second column."""
    if isinstance(default, bool):
        return f"`{str(default).lower()}`"
    if isinstance(default, Sequence) and not isinstance(default, str):
        return f"`{list(default)}`".replace("'", "")
    return f"`{default}`"


def declared() -> dict[str, object]:
    with taddons.context(*make_addons()) as tctx:
        opts = tctx.options._options
        return {name: opt.default for name, opt in opts.items() if name.startswith("ag_")}


def test_every_declared_option_is_in_the_readme_table_with_its_default():
    options, rows = declared(), readme_rows()
    assert options, "no ag_* option declared?"
    missing = sorted(set(options) - set(rows))
    assert not missing, f"README's options table lacks {missing}"
    for name, default in options.items():
        assert shown(default) in rows[name], f"README: {name} = {rows[name]!r}, not {shown(default)}"


def test_the_readme_table_documents_no_option_that_does_not_exist():
    assert not sorted(set(readme_rows()) - set(declared()))


def test_each_option_is_declared_by_exactly_one_addon():
    from antigravity_gw.mitm import auth, options
    names = [o[0] for o in options.OPTIONS] + [o[0] for o in auth.AUTH_OPTIONS]
    assert len(names) == len(set(names))
