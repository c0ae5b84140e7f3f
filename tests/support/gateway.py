"""Test helper: a real ``mitmdump -s addons/antigravity.py`` subprocess on a free loopback port."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Self

import orjson

ROOT = Path(__file__).resolve().parents[2]
ADDON = ROOT / "addons" / "antigravity.py"
STARTUP_TIMEOUT = 30.0


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def mitm_tool(name: str = "mitmdump") -> str:
    candidate = Path(sys.executable).parent / name
    return str(candidate) if candidate.exists() else (shutil.which(name) or name)


def write_account(directory: Path, name: str, **fields: Any) -> Path:
    """An account file in Antigravity-Manager's format; ``fields`` override the defaults."""
    now = int(time.time())
    if "api_key" in fields:
        data: dict[str, Any] = {"id": name, "email": f"{name}@example.com", **fields}
    else:
        token = {"access_token": f"at-{name}", "refresh_token": f"rt-{name}", "expires_in": 3599,
                 "expiry_timestamp": now + 3600, "token_type": "Bearer", "project_id": f"proj-{name}"}
        token.update(fields.pop("token", {}))
        data = {"id": name, "email": f"{name}@example.com", "name": name, "created_at": now, "last_used": now,
                "token": token, "disabled": False, "proxy_disabled": False, **fields}
    path = directory / f"{name}.json"
    path.write_bytes(orjson.dumps(data, option=orjson.OPT_INDENT_2))
    return path


class Gateway:
    """``mitmdump`` with the addon, pointed at an emulator; ``.url`` is its base URL (no /v1)."""

    def __init__(self, emulator: Any, accounts_dir: Path, *, confdir: Path | None = None,
                 options: dict[str, Any] | None = None, mode: str = "reverse", tool: str = "mitmdump",
                 extra_args: list[str] | None = None, port: int | None = None) -> None:
        self.emulator = emulator
        self.accounts_dir = accounts_dir
        self.port = port or free_port()
        self.confdir = confdir
        self.options = options or {}
        self.mode = mode
        self.tool = tool
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.dialect: str | None = None  # "cloudcode" or "gemini", where a test chose the upstream dialect
        self._log = tempfile.NamedTemporaryFile(prefix="mitmdump-", suffix=".log", delete=False)
        self.log_path = Path(self._log.name)
        # The gateway's own state (the usage ledger), never the user's ~/.antigravity_gw.
        self.data_dir = Path(self.options["ag_data_dir"]) if "ag_data_dir" in self.options else Path(
            tempfile.mkdtemp(prefix="ag-data-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        mode = (f"reverse:http://127.0.0.1:9@{self.port}" if self.mode == "reverse" else f"{self.mode}@{self.port}")
        sets: dict[str, Any] = {
            "listen_host": "127.0.0.1",
            "connection_strategy": "lazy",
            "ag_accounts": str(self.accounts_dir),
            "ag_gemini_url": self.emulator.gemini_url,
            "ag_oauth_token_url": self.emulator.oauth_token_url,
            "ag_oauth_client_id": "test-client-id",
            "ag_oauth_client_secret": "test-client-secret",
            "termlog_verbosity": "info",
            # The emulator and the tests' image servers live on 127.0.0.1, which the default (public)
            # refuses; the SSRF tests (tests/e2e/test_open_doors.py) set public, or None for the default.
            "ag_image_fetch": "any",
            "ag_data_dir": str(self.data_dir),
            **self.options,
        }
        args = [mitm_tool(self.tool), "-s", str(ADDON), "--mode", mode]
        if self.confdir:
            args += ["--set", f"confdir={self.confdir}"]
        for base in self.options.get("ag_cloudcode_urls", self.emulator.cloudcode_bases):
            args += ["--set", f"ag_cloudcode_urls={base}"]
        for name, value in sets.items():
            if name == "ag_cloudcode_urls" or value is None:  # None: leave mitmproxy's default
                continue
            for v in value if isinstance(value, list) else [value]:
                args += ["--set", f"{name}={str(v).lower() if isinstance(v, bool) else v}"]
        return args + self.extra_args

    def start(self, *, wait: bool = True) -> Self:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "NO_PROXY": "*"}
        env.pop("HTTPS_PROXY", None)
        env.pop("HTTP_PROXY", None)
        self.proc = subprocess.Popen(self.args(), stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        if wait:
            self._wait_ready()
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + STARTUP_TIMEOUT
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.proc.returncode}:\n{self.log()}")
            if self._healthy():
                return
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"mitmdump did not become ready in {STARTUP_TIMEOUT}s:\n{self.log()}")

    def _healthy(self) -> bool:
        # Only the addon answers /healthz: a proxy running without it would forward and fail (P19).
        # Probe only once the addon logged that it runs: mitmproxy accepts connections before its own
        # running() hooks, and a request in that window makes it exit ("Errors logged during startup").
        # In regular mode the probe goes through the proxy to the intercepted host, which the addon answers
        # (a direct request to a regular proxy would loop back to itself).
        if "antigravity gateway ready" not in self.log():
            return False
        url, opener = self.url + "/healthz", urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if self.mode != "reverse":
            url = "http://api.openai.com/healthz"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.url}))
        headers = {"authorization": f"Bearer {self.options['ag_api_key']}"} if self.options.get("ag_api_key") else {}
        try:
            with opener.open(urllib.request.Request(url, headers=headers), timeout=1) as r:
                return r.status == 200 and orjson.loads(r.read())["status"] == "ok"  # 503 "starting" before
        except (OSError, urllib.error.URLError, ValueError):
            return False

    @property
    def ca_cert(self) -> Path:
        """mitmproxy's CA certificate, for clients of the intercepting (regular) mode."""
        return (self.confdir or Path.home() / ".mitmproxy") / "mitmproxy-ca-cert.pem"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")[-20000:]

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def sent(emulator: Any, gw: Gateway, index: int = -1) -> dict[str, Any]:
    """The GenerateContentRequest Google received, whatever the dialect's envelope."""
    calls = [r for r in emulator.requests() if r["rpc"] in ("generateContent", "streamGenerateContent")]
    body = calls[index]["body"]
    return body["request"] if gw.dialect == "cloudcode" else body
