"""Cross-cutting fixtures: the Google emulator, real mitmdump gateways, and openai clients."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.emulator import Emulator
from support.gateway import Gateway, write_account


@pytest.fixture(scope="session")
def emulator_process() -> Iterator[Emulator]:
    with Emulator() as emu:
        yield emu


@pytest.fixture
def emulator(emulator_process: Emulator) -> Emulator:
    """The session's emulator, with rules, recordings and config reset for this test."""
    emulator_process.reset()
    return emulator_process


@pytest.fixture(scope="session")
def mitm_confdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One mitmproxy confdir (CA) for every gateway of the session: generating a CA costs time."""
    return tmp_path_factory.mktemp("mitmproxy-conf")


@pytest.fixture
def accounts_dir(tmp_path: Path) -> Path:
    d = tmp_path / "accounts"
    d.mkdir()
    return d


@pytest.fixture
def start_gateway(emulator: Emulator, mitm_confdir: Path, tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    """Factory: ``start_gateway(accounts={...}, options={...})`` runs a mitmdump for this test."""
    started: list[Gateway] = []

    def start(accounts: dict[str, dict[str, Any]] | None = None, accounts_dir: Path | None = None,
              **kwargs: Any) -> Gateway:
        directory = accounts_dir or (tmp_path / f"accounts-{len(started)}")
        directory.mkdir(exist_ok=True)
        for name, fields in (accounts if accounts is not None else {"acc1": {}}).items():
            write_account(directory, name, **fields)
        gw = Gateway(emulator, directory, confdir=mitm_confdir, **kwargs)
        started.append(gw)
        return gw.start()

    yield start
    for gw in started:
        gw.stop()


@pytest.fixture
def gateway(start_gateway: Callable[..., Gateway]) -> Gateway:
    """A gateway with one Cloud Code OAuth account (``acc1``) on the emulator."""
    return start_gateway()


@pytest.fixture
def client(gateway: Gateway) -> Any:
    import openai

    return openai.OpenAI(base_url=gateway.url + "/v1", api_key="sk-test", max_retries=0, timeout=30)


@pytest.fixture
def redis_server() -> Iterator[Any]:
    """A real redis-server on a free loopback port for this test (installed by the set-up if missing)."""
    from support.redis_server import RedisServer

    try:
        server = RedisServer()
    except FileNotFoundError as e:
        pytest.skip(f"no redis-server: {e}")
    with server:
        yield server
