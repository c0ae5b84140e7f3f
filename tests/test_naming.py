"""Every module has its test file, where the tests mirror the package (after mitmproxy's
``test/filename_matching.py``):

    addons/antigravity_gw/<name>.py            tests/unit/test_<name>[_<aspect>].py
    addons/antigravity_gw/<layer>/<name>.py    tests/unit/<layer>/test_<name>[_<aspect>].py
    addons/antigravity_gw/mitm/<name>.py       tests/addon/test_<name>[_<aspect>].py

``_<aspect>`` lets a module have several files (``test_gateway_surface.py``). The exceptions are below,
each with its reason; one tested in another module's file names that file, which must mention it.
"""

from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = ROOT / "addons" / "antigravity_gw"
TESTS = ROOT / "tests"

# Modules without a test file of their own, and why.
EXEMPT = {
    "__main__.py": "one call; tests/unit/test_cli.py runs `python -m antigravity_gw`",
}
# Modules tested together with another one, in that one's file (which must mention the module).
TESTED_IN = {
    "translate/finish.py": "tests/unit/translate/test_usage_finish.py",
    "upstream/available_models.py": "tests/addon/test_models_endpoint.py",
    "mitm/options.py": "tests/addon/test_secret_options.py",
}


def expected_directory(relative: Path) -> Path:
    if relative.parent == Path("."):
        return TESTS / "unit"
    if relative.parts[0] == "mitm":
        return TESTS / "addon"
    return TESTS / "unit" / relative.parent


def modules() -> list[str]:
    return sorted(str(p.relative_to(PACKAGE_DIR)) for p in PACKAGE_DIR.rglob("*.py")
                  if p.name != "__init__.py")  # a package's __init__ holds its docstring


def files_for(relative: Path) -> list[Path]:
    directory, stem = expected_directory(relative), relative.stem
    return sorted([*directory.glob(f"test_{stem}.py"), *directory.glob(f"test_{stem}_*.py")])


@pytest.mark.parametrize("module", modules())
def test_every_module_has_its_test_file(module):
    relative = Path(module)
    if module in EXEMPT:
        return
    if module in TESTED_IN:
        other = ROOT / TESTED_IN[module]
        assert other.exists(), f"{module}: {TESTED_IN[module]} is gone: give the module its own test file"
        assert relative.stem in other.read_text(), f"{TESTED_IN[module]} does not mention {relative.stem}"
        return
    expected = expected_directory(relative) / f"test_{relative.stem}.py"
    assert files_for(relative), (
        f"addons/antigravity_gw/{module} has no test file: add {expected.relative_to(ROOT)} "
        "(or an explicit, commented exemption in tests/test_naming.py)")


def test_exemptions_name_real_modules():
    """An exemption outlives its module only by mistake."""
    assert set(EXEMPT) | set(TESTED_IN) <= set(modules())
    assert not set(TESTED_IN) & {m for m in modules() if files_for(Path(m))}, (
        "a module in TESTED_IN has its own test file now: drop its exemption")


def test_a_module_without_a_test_file_is_found(tmp_path, monkeypatch):
    """The check itself can fail: a new module with no test file is reported with the file to add."""
    package = tmp_path / "addons" / "antigravity_gw"
    (package / "upstream").mkdir(parents=True)
    (package / "upstream" / "quota.py").write_text("")
    (tmp_path / "tests" / "unit" / "upstream").mkdir(parents=True)
    monkeypatch.setitem(globals(), "ROOT", tmp_path)
    monkeypatch.setitem(globals(), "PACKAGE_DIR", package)
    monkeypatch.setitem(globals(), "TESTS", tmp_path / "tests")
    assert modules() == ["upstream/quota.py"]
    with pytest.raises(AssertionError, match=r"upstream/quota\.py has no test file: add "
                                             r"tests/unit/upstream/test_quota\.py"):
        test_every_module_has_its_test_file("upstream/quota.py")
    (tmp_path / "tests" / "unit" / "upstream" / "test_quota_cooldowns.py").write_text("")
    test_every_module_has_its_test_file("upstream/quota.py")
