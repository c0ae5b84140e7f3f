"""Test helper: a real ``redis-server`` (or ``valkey-server``) on a free loopback port, in its own temp dir.

Nothing is persisted (``--save ''``, ``--appendonly no``). When neither server is on PATH, ``find_server``
runs ``scripts/ensure-redis.sh`` once (the same step ``scripts/bootstrap.sh test`` takes) and tests skip
with its reason only when that cannot install one.

    with RedisServer() as server:
        ...  # server.url is "redis://127.0.0.1:PORT/0"
        server.stop()      # Redis goes away mid-test
        server.start()     # and comes back on the same port
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Self

from support.gateway import free_port

ROOT = Path(__file__).resolve().parents[2]
ENSURE = ROOT / "scripts" / "ensure-redis.sh"
STARTUP_TIMEOUT = 10.0
_install_tried: list[str] = []  # the reason it failed, once tried (one attempt per test session)


def find_server() -> tuple[str | None, str]:
    """The server binary, or None and why not (after trying to install one)."""
    for name in ("redis-server", "valkey-server"):
        if found := shutil.which(name):
            return found, ""
    if not _install_tried:
        done = subprocess.run(["bash", str(ENSURE)], capture_output=True, text=True, timeout=600, check=False)
        _install_tried.append(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else
                              f"scripts/ensure-redis.sh exited with {done.returncode}")
        for name in ("redis-server", "valkey-server"):
            if found := shutil.which(name):
                return found, ""
    return None, _install_tried[0]


class RedisServer:
    def __init__(self, binary: str | None = None) -> None:
        found, why = (binary, "") if binary else find_server()
        if found is None:
            raise FileNotFoundError(why)
        self.binary = found
        self.port = 0
        self.dir = Path(tempfile.mkdtemp(prefix="ag-redis-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> Self:
        """Start it; a restart keeps the port (the gateways know the URL). A port taken between choosing and
        binding it (a shared machine) is retried with another one, first start only."""
        for _ in range(5):
            port = self.port or free_port()
            log = (self.dir / "redis.log").open("ab")
            with log:
                self.proc = subprocess.Popen(
                    [self.binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                     "--appendonly", "no", "--dir", str(self.dir), "--daemonize", "no",
                     "--enable-debug-command", "local"],  # DEBUG SLEEP: a Redis that hangs
                    stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT)
            if self._wait_ready(port):
                self.port = port
                return self
            self.stop()
            if self.port:
                break
        raise RuntimeError(f"{self.binary} did not start:\n{self.log()}")

    def _wait_ready(self, port: int) -> bool:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is None or self.proc.poll() is not None:
                return False
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return True
            except OSError:
                pass
            time.sleep(0.02)
        return False

    def log(self) -> str:
        path = self.dir / "redis.log"
        return path.read_text(errors="replace")[-5000:] if path.exists() else ""

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.kill()  # the abrupt way: what a crash or a lost network looks like to the gateways
            self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)
