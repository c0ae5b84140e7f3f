"""README's two set-up commands work the first time, in either order, on a fresh clone.

Each order gets its own clone of this checkout (with the working tree's uncommitted edits laid over it,
so the test checks the code under test) and so its own new ``.venv``: that is what a new user starts
from. Creating a venv and installing into it is slow, so one test runs both orders and each command is
kept short: ``scripts/gateway`` until its ready line, ``scripts/test`` collecting one small test file.
pip's own cache is shared, so nothing is downloaded twice.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support.gateway import ROOT

pytestmark = pytest.mark.e2e

INSTALL_TIMEOUT = 420.0  # a cold venv on the shared 2-core machine; pip's cache keeps it to ~1-2 min


def fresh_clone(dest: Path) -> Path:
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(dest)], check=True, timeout=120)
    listing = ["git", "-C", str(ROOT), "ls-files", "--modified", "--others", "--exclude-standard", "-z"]
    changed = subprocess.run(listing, capture_output=True, check=True, timeout=60).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in changed)):
        source, target = ROOT / name, dest / name
        if source.is_file():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
        elif target.exists():  # deleted in the working tree
            target.unlink()
    assert not (dest / ".venv").exists()
    return dest


def user_env(home: Path) -> dict[str, str]:
    """A new user's environment: an empty home (no accounts, no mitmproxy CA yet), pip's cache kept."""
    home.mkdir(exist_ok=True)
    pip_cache = subprocess.run([sys.executable, "-m", "pip", "cache", "dir"], capture_output=True, text=True,
                               timeout=60).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH", "AG_"))}
    env.update(HOME=str(home), PIP_CACHE_DIR=pip_cache or str(Path.home() / ".cache" / "pip"),
               PYENV_ROOT=os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv")))
    return env


def run_test_command(clone: Path, env: dict[str, str]) -> str:
    """``scripts/test``, as README says, limited to collecting one file (the suite itself is running now)."""
    command = [str(clone / "scripts" / "test"), "--collect-only", "-q", "-p", "no:cacheprovider",
               "tests/unit/test_settings.py"]
    result = subprocess.run(command, cwd=clone, env=env, capture_output=True, text=True,
                            timeout=INSTALL_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "test_settings.py::" in result.stdout
    # the house rules' checks ran first, in the new .venv
    assert "All checks passed!" in result.stdout and "Success: no issues found" in result.stdout
    return result.stderr


def run_gateway_command(clone: Path, env: dict[str, str]) -> str:
    """``scripts/gateway``, as README says, until it is ready; then stopped."""
    log = clone.parent / f"{clone.name}-gateway.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([str(clone / "scripts" / "gateway")], cwd=clone, stdout=out,
                                stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                env={**env, "AG_PORT": "0"})  # any free port: only its ready line counts
        try:
            deadline = time.monotonic() + INSTALL_TIMEOUT
            while "antigravity gateway ready" not in log.read_text(errors="replace"):
                assert proc.poll() is None, f"scripts/gateway exited ({proc.returncode}):\n{log.read_text()}"
                assert time.monotonic() < deadline, f"scripts/gateway not ready:\n{log.read_text()}"
                time.sleep(0.2)
        finally:
            proc.terminate()
            proc.wait(timeout=20)
    return log.read_text(errors="replace")


@pytest.mark.timeout(1200)
def test_the_two_readme_commands_work_the_first_time_in_either_order(tmp_path):
    for order in (("gateway", "test"), ("test", "gateway")):
        clone = fresh_clone(tmp_path / "-then-".join(order))
        env = user_env(tmp_path / f"home-{order[0]}")
        outputs = [run_gateway_command(clone, env) if command == "gateway" else run_test_command(clone, env)
                   for command in order]
        for output in outputs:
            for word in ("No such file", "Traceback", "ERROR"):
                assert word not in output, output
        stamp = (clone / ".venv" / ".antigravity-installed").read_text().split()
        assert stamp[1] == "test", stamp  # the test extra is installed, and recorded as a clean list
        if order[0] == "test":  # everything scripts/gateway needs is already there: no second install
            assert "bootstrap: installing" not in outputs[1], outputs[1]
        else:
            assert "bootstrap: installing .[test] into .venv" in outputs[1], outputs[1]
        assert "bootstrap: installing" not in run_test_command(clone, env)  # re-runs are cheap


def test_without_a_new_enough_python_bootstrap_says_which_version_and_how_to_get_one(tmp_path):
    old = shutil.which("python3", path="/usr/bin:/bin")
    if old is None or subprocess.run([old, "-c", "import sys; sys.exit(sys.version_info >= (3, 12))"],
                                     timeout=30).returncode:
        pytest.skip("needs an older python3 in /usr/bin")
    clone = fresh_clone(tmp_path / "clone")
    env = {**user_env(tmp_path / "home"), "PATH": "/usr/bin:/bin", "PYENV_ROOT": str(tmp_path / "no-pyenv")}
    result = subprocess.run([str(clone / "scripts" / "gateway")], cwd=clone, env=env, capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "needs Python 3.12 or newer" in result.stderr and "pyenv install 3.12" in result.stderr
    assert not (clone / ".venv").exists()
