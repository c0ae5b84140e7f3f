"""``scripts/gateway --demo``: the gateway in front of the bundled Google emulator, no account needed.

Starts ``scripts/gemini_emulator.py`` on a free loopback port, writes a throwaway API-key account
into a temporary directory, appends the options that point the gateway at both to the gateway
command it is given, and runs that command. When the gateway exits (Ctrl-C, SIGTERM), the emulator
is stopped and the directory removed; if this launcher itself is killed, Linux stops both children
(parent-death signal).

    python scripts/demo.py -- mitmdump -s addons/antigravity.py --mode ...
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import orjson

EMULATOR = Path(__file__).resolve().parent / "gemini_emulator.py"
STARTUP_TIMEOUT = 15.0
DEMO_ACCOUNT = {"id": "demo", "email": "demo@emulator.invalid", "api_key": "demo-key-for-the-emulator",
                "disabled": False}
BANNER = """
================================================================================
  DEMO MODE: answers come from the bundled EMULATOR (scripts/gemini_emulator.py)
  on {url}, not from Google. It echoes your last message ("echo: hi").
  Throwaway account directory: {accounts} (removed on exit).
  For real answers, add an account (scripts/ag accounts add ...) and run scripts/gateway.
================================================================================
"""


def die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` that has Linux send SIGTERM to the child when this launcher dies."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
    except OSError:
        return None
    pr_set_pdeathsig = 1
    return lambda: libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


def start_emulator(workdir: Path) -> tuple[subprocess.Popen[bytes], str]:
    ready = workdir / "emulator.port"
    proc = subprocess.Popen([sys.executable, str(EMULATOR), "--host", "127.0.0.1", "--port", "0",
                             "--ready-file", str(ready)], stdin=subprocess.DEVNULL,
                            preexec_fn=die_with_parent())
    deadline = time.monotonic() + STARTUP_TIMEOUT
    while not ready.exists():
        if proc.poll() is not None or time.monotonic() > deadline:
            stop(proc)
            raise SystemExit("demo: the emulator did not start (see its output above)")
        time.sleep(0.05)
    return proc, f"http://127.0.0.1:{int(ready.read_text())}"


def stop(proc: subprocess.Popen[bytes]) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def run(gateway_command: Sequence[str]) -> int:
    with tempfile.TemporaryDirectory(prefix="ag-demo-") as tmp:
        workdir = Path(tmp)
        accounts = workdir / "accounts"
        accounts.mkdir()
        (accounts / "demo.json").write_bytes(orjson.dumps(DEMO_ACCOUNT))
        emulator, url = start_emulator(workdir)
        try:
            print(BANNER.format(url=url, accounts=accounts), file=sys.stderr, flush=True)
            command = [*gateway_command, "--set", f"ag_accounts={accounts}", "--set", f"ag_gemini_url={url}"]
            gateway = subprocess.Popen(command, preexec_fn=die_with_parent())
            forward = lambda signum, _frame: gateway.send_signal(signum)  # noqa: E731
            for signum in (signal.SIGTERM, signal.SIGHUP):
                signal.signal(signum, forward)
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C reaches the gateway itself (same group)
            return gateway.wait()
        finally:
            stop(emulator)


def main(argv: Sequence[str]) -> int:
    command = list(argv[1:] if argv and argv[0] == "--" else argv)
    if not command:
        print(__doc__, file=sys.stderr)
        return 2
    with contextlib.suppress(KeyboardInterrupt):
        return run(command)
    return 130


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
