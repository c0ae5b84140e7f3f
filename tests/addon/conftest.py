"""Addon tests run in this process with mitmproxy's test context, which configures every option's default
before a test sets its own: ``ag_data_dir``'s default (``~/.antigravity_gw``) was created in the real home
that way. Each test gets a home of its own, so nothing here reads or writes the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def own_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    return home

