"""The gateway's ``ag_*`` options on the command line of the tools: ``--set ag_name=value``.

Same names, same parsing and checks as mitmdump's ``--set`` (the option table of ``mitm/options.py`` and
``mitm/auth.py``, read by the same ``read_settings``), and the same ``env:NAME`` / ``file:PATH``
references for secrets, so one set of settings serves the gateway and the CLI.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any

from .settings import Settings

TRUE, FALSE = ("true", "1", "yes", "on"), ("false", "0", "no", "off")


class OptionValues:
    """What ``read_settings`` reads from mitmproxy's options, as plain attributes."""

    def __init__(self, values: dict[str, Any]) -> None:
        self.__dict__.update(values)

    def __getattr__(self, name: str) -> Any:  # only for a name never set: tells mypy any option may be read
        raise AttributeError(name)

    def update(self, **values: Any) -> None:  # mitmproxy's options have it; the secret handling calls it
        self.__dict__.update(values)


def option_table() -> dict[str, tuple[Any, Any]]:
    """name -> (type, default), for every ag_* option of the gateway and its inbound auth."""
    from .mitm.auth import AUTH_OPTIONS
    from .mitm.options import OPTIONS

    return {name: (typespec, default) for name, typespec, default, _ in (*OPTIONS, *AUTH_OPTIONS)}


def parse_sets(specs: Iterable[str]) -> OptionValues:
    """``["ag_name=value", ...]`` over the defaults; ``ValueError`` names a bad one. Repeating a list
    option adds to it, as with mitmdump."""
    table = option_table()
    values: dict[str, Any] = {name: (list(d) if isinstance(d, list) else d) for name, (_, d) in table.items()}
    listed: set[str] = set()
    for spec in specs:
        name, sep, text = spec.partition("=")
        name = name.strip()
        if not sep:
            raise ValueError(f"--set {spec!r}: expected ag_name=value")
        if name not in table:
            close = difflib.get_close_matches(name, list(table), n=1, cutoff=0.6)
            hint = f"; did you mean {close[0]}?" if close else " (README's Options table lists them)"
            raise ValueError(f"--set {name}: not a gateway option{hint}")
        typespec = table[name][0]
        if typespec is str:
            values[name] = text
        elif typespec is bool:
            if text.lower() not in TRUE + FALSE:
                raise ValueError(f"--set {name}={text!r}: expected true or false")
            values[name] = text.lower() in TRUE
        elif typespec is int:
            try:
                values[name] = int(text)
            except ValueError:
                raise ValueError(f"--set {name}={text!r}: expected a whole number") from None
        else:  # a list option
            if name not in listed:
                values[name], listed = [], listed | {name}
            values[name].append(text)
    return OptionValues(values)


def settings_from(specs: Iterable[str]) -> tuple[Settings, OptionValues]:
    """The gateway's ``Settings`` for these ``--set`` values (and the raw values, for the auth options)."""
    from .mitm.options import read_settings_outside_mitmproxy

    values = parse_sets(specs)
    return read_settings_outside_mitmproxy(values), values
