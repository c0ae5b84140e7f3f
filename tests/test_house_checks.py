"""The README's test command (scripts/test) runs ruff and mypy first and fails on a finding.

Each check is shown to fail: a copy of this checkout (sharing its .venv, so nothing is installed) gets
one violation, and scripts/test must stop with the tool's finding before pytest runs.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
COLLECT_ONE = ["--collect-only", "-q", "-p", "no:cacheprovider", "tests/unit/test_settings.py"]


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """This checkout's tracked and new files (not ignored ones), with its .venv linked in."""
    command = ["git", "-C", str(ROOT), "ls-files", "--cached", "--others", "--exclude-standard", "-z"]
    listing = subprocess.run(command, capture_output=True, check=True, timeout=60).stdout.split(b"\0")
    copy = tmp_path / "checkout"
    for name in filter(None, (n.decode() for n in listing)):
        source = ROOT / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    (copy / ".venv").symlink_to(ROOT / ".venv")
    # The copy must never install into the shared .venv (an editable install would point it at this
    # temporary copy, and every later test would lose the package): bootstrap is tested by
    # tests/e2e/test_bootstrap.py on fresh clones, so here it is a no-op.
    bootstrap = copy / "scripts" / "bootstrap.sh"
    bootstrap.write_text("#!/usr/bin/env bash\nexit 0\n")
    bootstrap.chmod(0o755)
    return copy


def scripts_test(checkout: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VIRTUAL_ENV", "PYTHONPATH"))}
    return subprocess.run([str(checkout / "scripts" / "test"), *COLLECT_ONE], cwd=checkout, env=env,
                          capture_output=True, text=True, timeout=300)


def test_a_clean_checkout_passes_both_checks_and_reaches_pytest(checkout):
    result = scripts_test(checkout)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "All checks passed!" in result.stdout and "Success: no issues found" in result.stdout
    assert "test_settings.py::" in result.stdout and "collected in" in result.stdout


def test_a_ruff_finding_fails_the_test_command_before_pytest(checkout):
    (checkout / "addons" / "antigravity_gw" / "translate" / "sloppy.py").write_text(
        "import json\n\n\ndef parse(text):\n    return json.loads(text)\n")
    result = scripts_test(checkout)
    assert result.returncode != 0
    assert "TID251" in result.stdout and "use orjson" in result.stdout  # the house's banned API
    assert "collected in" not in result.stdout  # pytest never ran


def test_a_mypy_error_in_an_untyped_function_fails_the_test_command(checkout):
    (checkout / "addons" / "antigravity_gw" / "translate" / "mismatch.py").write_text(
        "def total(parts):  # no annotations: only check_untyped_defs looks inside\n"
        "    count: int = 'several'\n"
        "    return count\n")
    result = scripts_test(checkout)
    assert result.returncode != 0
    assert "All checks passed!" in result.stdout  # ruff had nothing to say
    assert ('mismatch.py:2: error: Incompatible types in assignment (expression has type "str"'
            in result.stdout)
    assert "collected in" not in result.stdout
