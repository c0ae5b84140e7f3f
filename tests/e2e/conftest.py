"""Fixtures for the e2e tests: a gateway per upstream dialect (chat and Responses), or one Cloud Code
gateway for a whole module."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from support.emulator import Emulator
from support.gateway import Gateway, write_account
from support.openai_schema import check_exchange
from support.recording import RecordingTransport


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


@pytest.fixture(scope="module")
def gateway_options() -> dict[str, Any]:
    """The options of the module's ``cloudcode_gateway``: a module overrides this fixture to set its own."""
    return {}


@pytest.fixture(scope="module")
def cloudcode_gateway(
    emulator_process: Emulator, mitm_confdir, tmp_path_factory, gateway_options: dict[str, Any]
) -> Iterator[Gateway]:
    """One gateway on one Cloud Code OAuth account (``acc1``) for a whole module, with ``gateway_options``."""
    accounts = tmp_path_factory.mktemp("accounts-cloudcode")
    write_account(accounts, "acc1")
    with Gateway(emulator_process, accounts, confdir=mitm_confdir, options=gateway_options) as gw:
        gw.dialect = "cloudcode"
        yield gw


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """A scratch working directory for a client run as a subprocess (Codex CLI, Claude Code)."""
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def gw(dialect_gateway: Gateway, emulator: Emulator) -> Gateway:
    """The module's dialect gateway, with the emulator reset for this test."""
    return dialect_gateway


@pytest.fixture
def conforming_client(gw: Gateway) -> Iterator[openai.OpenAI]:
    """The openai client, whose every Responses API (and embeddings) answer, each stream event included,
    is checked against OpenAI's published OpenAPI schema once the test is done
    (tests/support/openai_schema.py)."""
    transport = RecordingTransport()
    client = openai.OpenAI(base_url=gw.url + "/v1", api_key="sk-test", max_retries=0, timeout=30,
                           http_client=openai.DefaultHttpxClient(transport=transport))
    yield client
    client.close()
    for x in transport.exchanges:
        check_exchange(x.method, x.path, x.status, x.content_type, x.body)
