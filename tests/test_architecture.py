"""The layout holds: the pure core imports no Kafka client or stream framework, and no module of the
package imports another that imports it back.

The import graph is read from the source (ast), so an import inside a function counts as much as one
at the top: a lazy `import faust` in the core would still tie it to Faust.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

import streamrisk

PACKAGE_DIR = Path(streamrisk.__file__).parent

# The processor's package and the pure packages around it: plain Python over plain data, testable
# without a broker.
PURE = ("streamrisk.core", "streamrisk.windows", "streamrisk.features", "streamrisk.rules",
        "streamrisk.credit", "streamrisk.state", "streamrisk.settings")
FORBIDDEN = ("faust", "aiokafka", "mode", "aiohttp")


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(name: str, *, top_level_only: bool = False, type_checking: bool = False) -> set[str]:
    """Modules `name` imports (absolute names; a `from pkg import sub` of a submodule names it).
    Without `type_checking`, those in `if TYPE_CHECKING:` blocks are left out; with top_level_only,
    also those inside functions."""
    path = MODULES[name]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()

    def visit(nodes: list[ast.stmt]) -> None:
        for node in nodes:
            if isinstance(node, ast.If) and _is_type_checking(node) and not type_checking:
                visit(node.orelse)
                continue
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and top_level_only:
                continue
            if isinstance(node, ast.Import):
                found.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")[: len(package.split(".")) - node.level + 1]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                for alias in node.names:
                    sub = f"{module}.{alias.name}"
                    found.add(sub if sub in MODULES else module)
            for field in ("body", "orelse", "finalbody", "handlers"):
                children = getattr(node, field, None)
                if isinstance(children, list):
                    visit([c for c in children if isinstance(c, ast.stmt)] if field != "handlers"
                          else [s for h in children for s in h.body])

    visit(ast.parse(path.read_text(), str(path)).body)
    return found


def _pure(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in PURE)


def test_the_pure_core_imports_no_faust_nor_aiokafka_even_indirectly() -> None:
    pure = sorted(m for m in MODULES if _pure(m))
    assert "streamrisk.core.processor" in pure and "streamrisk.core.events" in pure
    leaks = []
    for start in pure:
        seen = {start}
        stack = [(start, (start,))]
        while stack:
            module, chain = stack.pop()
            for imported in _imports(module):
                if imported.split(".")[0] in FORBIDDEN:
                    leaks.append(" -> ".join((*chain, imported)))
                elif imported in MODULES and imported not in seen:
                    seen.add(imported)
                    stack.append((imported, (*chain, imported)))
    assert not leaks, "the pure core reaches a Kafka client or Faust:\n" + "\n".join(sorted(set(leaks)))


def test_importing_every_pure_module_loads_no_faust_nor_aiokafka() -> None:
    # The same at run time, in a fresh interpreter: catches what ast cannot see (importlib, plugins).
    pure = sorted(m for m in MODULES if _pure(m))
    code = (
        "import importlib, json, sys\n"
        f"for m in {pure!r}: importlib.import_module(m)\n"
        f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({FORBIDDEN!r}))))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(result.stdout) == []


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    out: list[list[str]] = []

    def connect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                out.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            connect(v)
    return out


def _package_graph(*, type_checking: bool = False) -> dict[str, set[str]]:
    # A package's __init__ importing its own submodules is how packages re-export, not a cycle:
    # edges from a module to the packages that contain it are left out.
    return {
        name: {
            m for m in _imports(name, type_checking=type_checking)
            if m in MODULES and m != name and not name.startswith(m + ".")
        }
        for name in MODULES
    }


def test_no_import_cycle_between_the_package_modules() -> None:
    cycles = _cycles(_package_graph())
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_cycle_in_the_pure_core_even_through_type_annotations() -> None:
    # A part typed `self: Processor` (a mixin) needs the processor only for its annotations, and is a
    # cycle all the same: the part cannot be read, tested or reused without the whole.
    graph = {k: {m for m in v if _pure(m)} for k, v in _package_graph(type_checking=True).items() if _pure(k)}
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_the_cycle_finder_finds_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert _cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("module", ["streamrisk.core.processor", "streamrisk.runtime.faust.app"])
def test_the_graph_reads_relative_imports(module: str) -> None:
    assert "streamrisk.settings" in _imports(module, top_level_only=True)
