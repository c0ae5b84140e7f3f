"""The architecture's layers hold (README "Architecture"; the rules are in tests/support/layering.py).

- ``openai_api/`` and ``translate/`` are pure: no aiohttp, mitmproxy, asyncio or other I/O module, none
  of the package's I/O layers, no I/O call;
- no module does I/O (opens a file, a socket, a process) when it is imported;
- ``upstream/`` does not import ``mitm/``; only ``mitm/`` imports (and loads) mitmproxy;
- no import cycle between the package's modules, and every module can be imported first and alone.

The checks are tried on a small package that breaks each rule once, so a check that cannot fail fails.
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from support.layering import (
    ImportedAlone,
    import_alone,
    import_cycles,
    import_each_alone,
    package_modules,
    runtime_violations,
    static_violations,
)

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "addons" / "antigravity_gw"
MODULES = sorted(package_modules(PACKAGE_DIR))
# __main__ runs the command line when imported: it is one call (tests/unit/test_cli.py runs it)
IMPORTED_ALONE = [m for m in MODULES if not m.endswith(".__main__")]


def test_the_layers_import_only_what_they_may():
    assert static_violations(PACKAGE_DIR) == []


def test_no_import_cycle_between_modules():
    assert import_cycles(PACKAGE_DIR) == []


@pytest.fixture(scope="module")
def imported_alone() -> dict[str, ImportedAlone]:
    """Every module imported alone, each in its own interpreter (two at a time: the machine has 2 cores)."""
    return import_each_alone(PACKAGE_DIR)


@pytest.mark.parametrize("module", IMPORTED_ALONE)
def test_each_module_imports_alone_and_stays_in_its_layer(module, imported_alone):
    assert runtime_violations(imported_alone[module], "antigravity_gw") == []


def test_the_package_is_what_the_layering_test_walks():
    assert {"antigravity_gw.translate.endpoints", "antigravity_gw.mitm.gateway",
            "antigravity_gw.upstream.relay", "antigravity_gw"} <= set(MODULES)


# A package that breaks every rule once: each check must see its breach.
BROKEN = {
    "__init__.py": "",
    "errors.py": "",
    "openai_api/__init__.py": "",
    "openai_api/loops.py": "import asyncio\n",
    "openai_api/lazy.py": "def later():\n    from ..upstream import fetch\n",
    "translate/__init__.py": "",
    "translate/reads.py": "from pathlib import Path\nSCHEMA = Path(__file__).read_text()\n",
    "translate/opens.py": "with open(__file__, 'rb') as f:\n    HEAD = f.read(1)\n",
    "translate/pure.py": "from .. import errors\nfrom ..openai_api import loops\n",
    "upstream/__init__.py": "",
    "upstream/fetch.py": "from ..mitm import glue\n",
    "upstream/boot.py": "import os\nimport mitmproxy.http\nNAMES = os.listdir('.')\n",
    "mitm/__init__.py": "",
    "mitm/glue.py": "from . import ring_b\n",
    "mitm/ring_a.py": "from . import ring_b\nVALUE = 1\n",
    "mitm/ring_b.py": "from .ring_a import VALUE\n",
}


@pytest.fixture(scope="module")
def broken(tmp_path_factory: pytest.TempPathFactory) -> Path:
    package = tmp_path_factory.mktemp("layers") / "layered"
    for name, text in BROKEN.items():
        (package / name).parent.mkdir(parents=True, exist_ok=True)
        (package / name).write_text(textwrap.dedent(text))
    return package


def test_the_static_check_sees_each_forbidden_import_and_call(broken):
    found = "\n".join(static_violations(broken))
    assert "layered/openai_api/loops.py:1: openai_api/ is pure but imports asyncio" in found
    assert "layered/openai_api/lazy.py:2: openai_api/ is pure but imports layered.upstream" in found
    assert "layered/translate/reads.py:2: translate/ is pure but calls read_text()" in found
    assert "layered/translate/opens.py:1: translate/ is pure but calls open()" in found
    assert "layered/upstream/fetch.py:1: upstream/ imports mitm/ (layered.mitm.glue)" in found
    assert "layered/upstream/boot.py:2: only mitm/ imports mitmproxy (mitmproxy.http)" in found
    assert "pure.py" not in found  # the package's own pure modules are fine to import


def test_the_cycle_check_sees_a_cycle(broken):
    assert import_cycles(broken) == [["layered.mitm.ring_a", "layered.mitm.ring_b"]]


def test_importing_alone_sees_io_a_forbidden_load_and_a_cycle_that_breaks(broken):
    reads = runtime_violations(import_alone("layered.translate.reads", broken), "layered")
    assert len(reads) == 1 and "does I/O: translate/reads.py:2: open" in reads[0]
    opens = runtime_violations(import_alone("layered.translate.opens", broken), "layered")
    assert len(opens) == 1 and "does I/O: translate/opens.py:1: open" in opens[0]
    loops = runtime_violations(import_alone("layered.openai_api.loops", broken), "layered")
    assert len(loops) == 1 and "loads asyncio" in loops[0]
    fetch = runtime_violations(import_alone("layered.upstream.fetch", broken), "layered")
    assert fetch == ["importing layered.upstream.fetch (upstream/) loads layered.mitm, layered.mitm.glue, "
                     "layered.mitm.ring_a, layered.mitm.ring_b"]
    # ring_a first: it imports ring_b, which wants ring_a's VALUE while ring_a is half made (ring_b first
    # works: only some orders break, hence each module first)
    assert runtime_violations(import_alone("layered.mitm.ring_b", broken), "layered") == []
    ring = runtime_violations(import_alone("layered.mitm.ring_a", broken), "layered")
    assert len(ring) == 1 and "cannot be imported first and alone" in ring[0] and "ImportError" in ring[0]
    boot = runtime_violations(import_alone("layered.upstream.boot", broken), "layered")
    assert len(boot) == 2 and "does I/O: upstream/boot.py:3: os.listdir" in boot[0]
    assert "loads mitmproxy (only mitm/ may): mitmproxy" in boot[1]
    # what a pure module loads through another counts too
    pure = runtime_violations(import_alone("layered.translate.pure", broken), "layered")
    assert len(pure) == 1 and "loads asyncio" in pure[0]
