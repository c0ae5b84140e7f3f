"""The package's layering rules, as checks that return what breaks them (tests/test_layering.py).

Two views of the same imports:

- read: every ``import`` statement of every module, found with ``ast`` (also those inside functions,
  which run later and which importing a module never shows);
- run: each module imported alone in a fresh interpreter (after aiohttp's
  ``tests/test_circular_imports.py``), which shows what importing it really drags in, whether it can be
  imported first at all (an import cycle that breaks does so only in some orders), and any I/O its own
  top-level code does (seen by an audit hook).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import orjson

# The layers that must stay pure: no event loop, no network, no processes, no files.
PURE_LAYERS = ("openai_api", "translate")
# What a pure module may not import: the I/O libraries, and the modules that exist to do I/O.
PURE_FORBIDDEN = ("aiohttp", "mitmproxy", "asyncio", "socket", "ssl", "selectors", "subprocess",
                  "multiprocessing", "concurrent", "threading", "shutil", "tempfile", "urllib.request",
                  "http.client", "http.server", "requests", "httpx", "aiofiles", "mmap", "fcntl", "signal")
# ... nor the package's own I/O layers
PURE_FORBIDDEN_OWN = ("upstream", "mitm", "cli", "settings")
# Calls that do I/O, found by name: a pure module makes none (anywhere, not only at import).
IO_CALLS = frozenset({"open", "input", "print"})
IO_METHODS = frozenset({"read_text", "read_bytes", "write_text", "write_bytes"})
# What importing a pure module may not load, seen at run time (pydantic itself loads socket and
# threading, so the run-time view holds the big three; the read view holds the whole list above).
PURE_NOT_LOADED = ("aiohttp", "mitmproxy", "asyncio")


@dataclass(frozen=True, slots=True)
class Import:
    importer: str  # the importing module, dotted
    target: str  # the imported module, dotted and absolute (a package's own module when it is one)
    line: int


def package_modules(package_dir: Path) -> dict[str, Path]:
    """Dotted name -> file, for the package and every module in it."""
    modules = {}
    for path in sorted(package_dir.rglob("*.py")):
        parts = path.relative_to(package_dir.parent).with_suffix("").parts
        modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return modules


def imports_of(module: str, path: Path, modules: Mapping[str, Path]) -> list[Import]:
    """Every import statement of one module, resolved to absolute names."""
    tree = ast.parse(path.read_bytes(), str(path))
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [Import(module, alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            for alias in node.names:
                candidate = f"{base}.{alias.name}"  # "from . import errors" imports a module
                found.append(Import(module, candidate if candidate in modules else base, node.lineno))
    return found


def io_calls_of(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_bytes(), str(path))
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if isinstance(node.func, ast.Name) and node.func.id in IO_CALLS:
            calls.append((node.lineno, node.func.id))
        elif isinstance(node.func, ast.Attribute) and node.func.attr in IO_METHODS:
            calls.append((node.lineno, node.func.attr))
    return calls


def _within(name: str, prefixes: Iterable[str]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def layer_of(module: str, package: str) -> str:
    rest = module[len(package) + 1:] if module.startswith(package + ".") else ""
    return rest.split(".")[0]


def static_violations(package_dir: Path) -> list[str]:
    """Every import or call that breaks a layering rule, as ``file:line: what``."""
    package = package_dir.name
    modules = package_modules(package_dir)
    problems = []
    for module, path in modules.items():
        layer = layer_of(module, package)
        where = f"{path.relative_to(package_dir.parent)}"
        for imp in imports_of(module, path, modules):
            own_layer = layer_of(imp.target, package) if _within(imp.target, [package]) else None
            if layer in PURE_LAYERS and _within(imp.target, PURE_FORBIDDEN):
                problems.append(f"{where}:{imp.line}: {layer}/ is pure but imports {imp.target}")
            if layer in PURE_LAYERS and own_layer in PURE_FORBIDDEN_OWN:
                problems.append(f"{where}:{imp.line}: {layer}/ is pure but imports {imp.target}")
            if layer == "upstream" and own_layer == "mitm":
                problems.append(f"{where}:{imp.line}: upstream/ imports mitm/ ({imp.target})")
            if layer != "mitm" and _within(imp.target, ["mitmproxy"]):
                problems.append(f"{where}:{imp.line}: only mitm/ imports mitmproxy ({imp.target})")
        if layer in PURE_LAYERS:
            problems += [f"{where}:{line}: {layer}/ is pure but calls {name}()"
                         for line, name in io_calls_of(path)]
    return problems


def import_cycles(package_dir: Path) -> list[list[str]]:
    """The package's import cycles (every import statement counts, also those inside functions)."""
    modules = package_modules(package_dir)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for module, path in modules.items():
        graph[module] |= {imp.target for imp in imports_of(module, path, modules) if imp.target in modules}
    return [sorted(c) for c in _strongly_connected(graph) if len(c) > 1 or c <= graph[next(iter(c))]]


def _strongly_connected(graph: Mapping[str, set[str]]) -> Iterator[set[str]]:
    """Tarjan's algorithm, iterative (the graph is small, but recursion limits are not a design)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for nxt in successors:
                if nxt not in index:
                    index[nxt] = low[nxt] = len(index)
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph[nxt]))))
                    break
                if nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = set()
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.add(member)
                        if member == node:
                            break
                    yield component


# Runs in the fresh interpreter: imports one module with an audit hook that records the I/O done by the
# package's own code (a library's own I/O, such as pydantic reading its plugins' entry points, and the
# import system reading module files are not the package's).
_IMPORT_ALONE = r"""
import importlib, json, sys, sysconfig
module, ours = sys.argv[1], sys.argv[2]
stdlib = tuple({sysconfig.get_paths()[k] for k in ("stdlib", "platstdlib")})
IO_EVENTS = ("open", "socket.", "subprocess.", "os.system", "os.exec", "os.posix_spawn", "os.spawn",
             "os.fork", "os.remove", "os.rename", "os.mkdir", "os.rmdir", "os.listdir", "os.scandir",
             "os.chmod", "os.truncate", "shutil.", "urllib.Request", "http.client.")
found = []
def culprit(frame):
    while frame is not None:
        name = frame.f_code.co_filename
        if name.startswith("<frozen importlib"):
            return None
        if name.startswith(ours):
            return f"{name[len(ours):].lstrip('/')}:{frame.f_lineno}"
        if not name.startswith(stdlib) or "site-packages" in name:
            return None
        frame = frame.f_back
    return None
def hook(event, args):
    if event.startswith(IO_EVENTS):
        where = culprit(sys._getframe(1))
        if where:
            found.append(f"{where}: {event} {str(args)[:120]}")
sys.addaudithook(hook)
importlib.import_module(module)
print(json.dumps({"modules": sorted(sys.modules), "io": found}))
"""


@dataclass(frozen=True, slots=True)
class ImportedAlone:
    module: str
    error: str  # the interpreter's output when the import failed, else ""
    loaded: frozenset[str]
    io: tuple[str, ...]


def import_alone(module: str, package_dir: Path) -> ImportedAlone:
    """``module`` imported first and alone, in a new interpreter (``-I``: no PYTHONPATH, no current
    directory) that finds the package in its parent directory."""
    find = f"import sys; sys.path.insert(0, {str(package_dir.parent)!r})\n"
    result = subprocess.run([sys.executable, "-I", "-c", find + _IMPORT_ALONE, module, str(package_dir)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return ImportedAlone(module, result.stderr or result.stdout, frozenset(), ())
    report = orjson.loads(result.stdout.splitlines()[-1])
    return ImportedAlone(module, "", frozenset(report["modules"]), tuple(report["io"]))


def import_each_alone(package_dir: Path, workers: int = 2) -> dict[str, ImportedAlone]:
    modules = [m for m in package_modules(package_dir) if not m.endswith(".__main__")]
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return dict(zip(modules, pool.map(lambda m: import_alone(m, package_dir), modules), strict=True))


def runtime_violations(report: ImportedAlone, package: str) -> list[str]:
    """What importing one module did that its layer forbids."""
    if report.error:
        return [f"{report.module} cannot be imported first and alone:\n{report.error}"]
    layer = layer_of(report.module, package)
    problems = []
    if layer in PURE_LAYERS:
        bad = sorted(m for m in report.loaded if _within(m, PURE_NOT_LOADED)
                     or _within(m, [f"{package}.{own}" for own in PURE_FORBIDDEN_OWN]))
        if bad:
            problems.append(f"importing {report.module} ({layer}/ is pure) loads {', '.join(bad[:8])}")
    # No module of any layer does I/O when imported: that is start-up time, and hidden from its caller.
    problems += [f"importing {report.module} does I/O: {e}" for e in report.io]
    if layer != "mitm" and (bad := sorted(m for m in report.loaded if _within(m, ["mitmproxy"]))):
        problems.append(f"importing {report.module} loads mitmproxy (only mitm/ may): {', '.join(bad[:3])}")
    if layer == "upstream":
        bad = sorted(m for m in report.loaded if _within(m, [f"{package}.mitm"]))
        if bad:
            problems.append(f"importing {report.module} (upstream/) loads {', '.join(bad)}")
    return problems
