"""Run scripts/gemini_emulator.py as a subprocess and script it from sync or async tests.

The control calls use only ``urllib.request``, so they work in plain sync tests and, being quick
loopback calls to another process, inside async tests too (they block the loop for a moment, which
cannot deadlock since the emulator has its own loop).

    with Emulator() as emu:
        emu.add_rule(match={"base": "/sandbox"}, times=1, reply={"error": {"kind": "capacity"}})
        ...  # point the gateway at emu.cloudcode_bases / emu.gemini_url / emu.oauth_token_url
        assert [r["base"] for r in emu.requests(kind="api")] == ["/sandbox", "/daily"]
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any, Final, Self

import orjson

SCRIPT: Final = Path(__file__).resolve().parents[2] / "scripts" / "gemini_emulator.py"
STARTUP_TIMEOUT: Final = 15.0
STOP_TIMEOUT: Final = 5.0
CONTROL_TIMEOUT: Final = 10.0


# Google's side of a three-turn tool loop with thinking, for a client asking "Weather and time in Paris?"
# with a get_weather(city) and an argument-less get_time tool: a call to each (get_time with the
# placeholder argument VALIDATED mode needs), then the answer.
WEATHER_AND_TIME_LOOP: Final[list[dict[str, Any]]] = [
    {
        "times": 1,
        "reply": {
            "thoughts": ["The user wants ", "the weather."],
            "function_calls": [{"name": "get_weather", "args": {"city": "Paris"}}],
        },
    },
    {
        "times": 1,
        "reply": {
            "thoughts": ["Now the time."],
            "function_calls": [{"name": "get_time", "args": {"_placeholder": True}}],
        },
    },
    {"times": 1, "reply": {"thoughts": ["Done."], "text": "9C in Paris at noon."}},
]


class EmulatorError(RuntimeError):
    """The emulator did not start, died, or refused a control call."""


class Emulator:
    """The emulator subprocess on a free loopback port, with its control API as methods."""

    def __init__(self, *args: str, startup_timeout: float = STARTUP_TIMEOUT) -> None:
        self._args = list(args)
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[bytes] | None = None
        self._workdir: tempfile.TemporaryDirectory[str] | None = None
        self._exit_code: int | None = None
        self.port = 0

    # Lifecycle

    def start(self) -> Self:
        self._workdir = tempfile.TemporaryDirectory(prefix="gemini-emulator-")
        ready_file = Path(self._workdir.name) / "port"
        stderr = (Path(self._workdir.name) / "stderr").open("wb")
        command = [sys.executable, str(SCRIPT), "--host", "127.0.0.1", "--port", "0",
                   "--ready-file", str(ready_file), *self._args]
        with stderr:  # the child keeps its own descriptor; ours only needs to live until Popen returns
            self._process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                             stderr=stderr)
        try:
            self._wait_ready(ready_file)
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self, ready_file: Path) -> None:
        deadline = time.monotonic() + self._startup_timeout
        while time.monotonic() < deadline:
            assert self._process is not None
            if self._process.poll() is not None:
                raise EmulatorError(f"emulator exited with {self._process.returncode}: {self.stderr()}")
            if not self.port and ready_file.exists():
                self.port = int(ready_file.read_text())
            if self.port and self._healthy():
                return
            time.sleep(0.05)
        raise EmulatorError(f"emulator not healthy after {self._startup_timeout} s: {self.stderr()}")

    def _healthy(self) -> bool:
        try:
            return self.health() == {"status": "ok"}
        except (OSError, EmulatorError):
            return False

    def stop(self) -> None:
        """Terminate, wait, and kill after 5 s; safe to call twice."""
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process is not None:
            self._exit_code = process.returncode
        if self._workdir is not None:
            self._workdir.cleanup()
            self._workdir = None

    @property
    def returncode(self) -> int | None:
        """None while running (or never started); the exit code once it ended or was stopped."""
        return self._exit_code if self._process is None else self._process.poll()

    def stderr(self) -> str:
        if self._workdir is None:
            return ""
        path = Path(self._workdir.name) / "stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # Addresses

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def cloudcode_bases(self) -> list[str]:
        """The three Cloud Code bases in the gateway's fallback order: sandbox, daily, prod."""
        return [f"{self.url}/sandbox/v1internal", f"{self.url}/daily/v1internal", f"{self.url}/v1internal"]

    @property
    def gemini_url(self) -> str:
        return self.url

    @property
    def oauth_token_url(self) -> str:
        return f"{self.url}/token"

    @property
    def oauth_auth_url(self) -> str:
        return f"{self.url}/o/oauth2/v2/auth"

    @property
    def oauth_userinfo_url(self) -> str:
        return f"{self.url}/oauth2/v2/userinfo"

    # Control API

    def health(self) -> Any:
        return self._control("GET", "health")

    def reset(self) -> None:
        self._control("POST", "reset")

    def add_rule(self, **rule: Any) -> None:
        """One rule: ``add_rule(match={...}, times=1, reply={...})``."""
        self._control("POST", "rules", {"rules": [rule]})

    def add_rules(self, rules: list[dict[str, Any]]) -> None:
        self._control("POST", "rules", {"rules": rules})

    def set_rules(self, rules: list[dict[str, Any]]) -> None:
        self._control("PUT", "rules", {"rules": rules})

    def rules(self) -> list[dict[str, Any]]:
        return self._control("GET", "rules")["rules"]

    def requests(self, **filters: Any) -> list[dict[str, Any]]:
        """Recorded calls; filters: ``kind="api"|"token"`` or any recorded field, e.g. ``rpc=...``."""
        query = urllib.parse.urlencode({k: "" if v is None else v for k, v in filters.items()})
        return self._control("GET", f"requests?{query}" if query else "requests")

    def configure(self, **config: Any) -> dict[str, Any]:
        """Merge into the config, e.g. ``configure(oauth={"rotate": True})``; returns the new config."""
        return self._control("POST", "config", config)

    def config(self) -> dict[str, Any]:
        return self._control("GET", "config")

    def _control(self, method: str, path: str, body: Any = None) -> Any:
        data = None if body is None else orjson.dumps(body)
        request = urllib.request.Request(f"{self.url}/_emulator/{path}", data=data, method=method,
                                         headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(request, timeout=CONTROL_TIMEOUT) as response:
                return orjson.loads(response.read())
        except urllib.error.HTTPError as exc:
            raise EmulatorError(f"{method} /_emulator/{path}: {exc.code} {exc.read().decode()}") from exc
