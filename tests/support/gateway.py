"""Test helper: a real ``mitmdump -s addons/antigravity.py`` subprocess on a free loopback port.

The port is chosen by the kernel (mitmproxy listens on port 0) and read back from mitmdump's own
"listening at" line: a port picked by the test and bound later by mitmdump could be taken in between by
any other process of this shared machine.
"""

from __future__ import annotations

import os
import re
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
# mitmproxy's line for each proxy listener: "reverse proxy to http://... listening at 127.0.0.1:41234."
# or "HTTP(S) proxy listening at 127.0.0.1:41234." (mitmweb's "Web server listening at http://..." is not one)
LISTENING = re.compile(r"proxy(?: to \S+)? listening at \S+:(\d+)\.$", re.MULTILINE)


def free_port() -> int:
    """A port free now, for programs that cannot listen on port 0 and say which port they got; it can be
    taken before the program binds it, so prefer port 0 wherever the program reports its port."""
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
        self.port = port or 0  # 0: the kernel picks, start() reads it from the log and keeps it for restarts
        self.confdir = confdir
        self.options = options or {}
        self.mode = mode
        self.tool = tool
        self.extra_args = extra_args or []
        self.proc: subprocess.Popen[bytes] | None = None
        self.dialect: str | None = None  # "cloudcode" or "gemini", where a test chose the upstream dialect
        # a raw descriptor, the child's stdout across restarts; the file stays for a failed test's reader
        self._log_fd, log_name = tempfile.mkstemp(prefix="mitmdump-", suffix=".log")
        self._log_start = 0
        self.log_path = Path(log_name)
        # The gateway's own state (the usage ledger), never the user's ~/.antigravity_gw.
        self.data_dir = Path(self.options["ag_data_dir"]) if "ag_data_dir" in self.options else Path(
            tempfile.mkdtemp(prefix="ag-data-"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def args(self) -> list[str]:
        spec = "reverse:http://127.0.0.1:9" if self.mode == "reverse" else self.mode
        mode = f"{spec}@{self.port}"
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
            # Quota snapshots call the emulator at start-up and after 429s, which would show up in the
            # recorded requests of tests about something else; tests/e2e/test_quota.py turns them on.
            "ag_quota_refresh": 0,
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
        self._log_start = os.fstat(self._log_fd).st_size  # this run's lines start here (a restart appends)
        self.proc = subprocess.Popen(self.args(), stdout=self._log_fd, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, cwd=ROOT, env=env)
        deadline = time.monotonic() + STARTUP_TIMEOUT
        self._wait_until(self._listening_port, deadline, "listen")
        if wait:
            self._wait_until(self._healthy, deadline, "become ready")
        return self

    def _wait_until(self, check: Any, deadline: float, what: str) -> None:
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"mitmdump exited with {self.proc.returncode}:\n{self.log()}")
            if check():
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mitmdump did not {what} in {STARTUP_TIMEOUT}s:\n{self.log()}")

    def _listening_port(self) -> bool:
        """The port of this run's latest listener line: the gateway rebinds a listener that came up on
        every interface (listen_host unset), on a new port when port 0 was asked for."""
        with self.log_path.open("rb") as f:
            f.seek(self._log_start)
            found = LISTENING.findall(f.read().decode(errors="replace"))
        if found:
            self.port = int(found[-1])  # the same as asked for, unless 0 was asked for
        return bool(found)

    def _healthy(self) -> bool:
        # Only the addon answers /healthz: a proxy running without it would forward and fail (P19).
        # Probe only once the addon logged that it runs: mitmproxy accepts connections before its own
        # running() hooks, and a request in that window makes it exit ("Errors logged during startup").
        # In regular mode the probe goes through the proxy to the intercepted host, which the addon answers
        # (a direct request to a regular proxy would loop back to itself).
        if "antigravity gateway ready" not in self.log() or not self._listening_port():
            return False
        url, opener = self.url + "/healthz", urllib.request.build_opener(urllib.request.ProxyHandler({}))
        if self.mode != "reverse":
            url = "http://api.openai.com/healthz"
            opener = urllib.request.build_opener(urllib.request.ProxyHandler({"http": self.url}))
        key = self.options.get("ag_api_key")
        headers = {"authorization": f"Bearer {key}"} if key else {}
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
