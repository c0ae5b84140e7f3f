"""Fixtures for the e2e tests that run once per upstream dialect (chat and Responses)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from support.emulator import Emulator
from support.gateway import Gateway, write_account


@pytest.fixture(scope="module", params=["cloudcode", "gemini"])
def dialect_gateway(
    request: pytest.FixtureRequest, emulator_process: Emulator, mitm_confdir, tmp_path_factory
) -> Iterator[Gateway]:
    """One gateway per dialect for a whole module (starting mitmdump is slow): a Cloud Code OAuth account,
    or a public Gemini API key. ``gw.dialect`` says which."""
    accounts = tmp_path_factory.mktemp(f"accounts-{request.param}")
    if request.param == "cloudcode":
        write_account(accounts, "acc1")
    else:
        write_account(accounts, "key1", api_key="AIza-test-key-1")
    with Gateway(emulator_process, accounts, confdir=mitm_confdir) as gw:
        gw.dialect = request.param
        yield gw


@pytest.fixture
def gw(dialect_gateway: Gateway, emulator: Emulator) -> Gateway:
    """The module's dialect gateway, with the emulator reset for this test."""
    return dialect_gateway
