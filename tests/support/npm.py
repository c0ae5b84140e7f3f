"""npm packages for the e2e tests of real clients (Codex CLI, Claude Code, the Vercel AI SDK): each is
installed once into its own git-ignored cache folder of the checkout, and a test skips, saying why, only
when npm is missing or cannot install it. Also how such a client is run and its failure shown."""

from __future__ import annotations

import os
import shutil
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest

INSTALL_TIMEOUT = 300


def npm_install(prefix: Path, *packages: str) -> None:
    """``npm install`` the package specs (``name@version``) into ``prefix``, or skip the calling test."""
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip(f"npm is not installed, so {' '.join(packages)} cannot be installed")
    command = [npm, "install", "--prefix", str(prefix), "--no-audit", "--no-fund", *packages]
    try:
        subprocess.run(command, capture_output=True, text=True, timeout=INSTALL_TIMEOUT, check=True)
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm could not install {' '.join(packages)} within {INSTALL_TIMEOUT} s")
    except subprocess.CalledProcessError as e:
        pytest.skip(f"npm could not install {' '.join(packages)}: {e.stderr.strip()[-500:]}")


def cli_version(exe: Path) -> str:
    """What ``exe --version`` prints, or "" when it does not run (not installed yet)."""
    try:
        out = subprocess.run([str(exe), "--version"], capture_output=True, text=True, timeout=60, check=True)
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip()


def npm_cli(prefix: Path, package: str, command: str) -> Path:
    """The executable ``command`` of the npm package spec ``package`` (``name@version``), installed into
    ``prefix`` unless that version answers ``--version`` there already."""
    version = package.rsplit("@", 1)[1]
    exe = prefix / "node_modules" / ".bin" / command
    if version not in cli_version(exe).split():
        npm_install(prefix, package)
        said = cli_version(exe)
        assert version in said.split(), f"npm installed {package}, but `{command} --version` says {said!r}"
    return exe


def run_cli(command: Sequence[str], *, cwd: Path, env: dict[str, str], timeout: float) -> tuple[str, str]:
    """Runs a client's command with stdin closed; its stdout, and the context to show when it failed
    (exit code, the ends of stdout and stderr). Asserts that it exited 0."""
    proc = subprocess.run(list(command), cwd=cwd, env=env, stdin=subprocess.DEVNULL, capture_output=True,
                          text=True, timeout=timeout)
    context = f"exit {proc.returncode}\nstdout:\n{proc.stdout[-4000:]}\nstderr:\n{proc.stderr[-4000:]}"
    assert proc.returncode == 0, context
    return proc.stdout, context


def client_env(*dropped_prefixes: str) -> dict[str, str]:
    """This process's environment for a client: without proxy variables (it talks to the loopback
    gateway only, ``NO_PROXY=*``) and without the variables starting with ``dropped_prefixes`` (the
    user's own settings for that client)."""
    proxies = ("http_proxy", "https_proxy", "all_proxy")
    env = {k: v for k, v in os.environ.items()
           if k.lower() not in proxies and not k.startswith(dropped_prefixes)}
    env["NO_PROXY"] = "*"
    return env
