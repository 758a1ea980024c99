"""Architecture checks: qsim_core's public boundary, the import graph, and module size.

The boundary. Code in ``qstore/`` and ``bench/`` may import

* the package itself: ``import qsim_core as qc``, or ``from qsim_core import X``
  with ``X`` in ``qsim_core.__all__``;
* from a submodule, only names that submodule lists in its ``__all__``:
  ``from qsim_core.circuit import is_symbolic``;
* a submodule object, only if it is a public module (one with ``__all__``, its
  packages too): ``from qsim_core import backends``, ``import qsim_core.backends.contract``;

and never an underscore name, nor anything from a module that has no
``__all__``. Every import statement counts, inside functions too; relative
imports (qstore importing qstore) are not checked. ``__all__`` is read by
importing the qsim_core module, so a name re-exported by accident (``GATES``
is importable from :mod:`qsim_core.circuit` but not listed there) is refused.
Dynamic imports (``importlib.import_module``) are not seen.

The graph. Among the modules of ``qsim_core`` and ``qstore`` (``pkg/__init__.py``
is module ``pkg``) the imports executed at import time (module level, class
bodies, ``if``/``try`` blocks; not function bodies, not ``if TYPE_CHECKING:``)
must form no cycle. ``from .x import y`` and ``from . import x`` resolve to the
modules they load: ``x`` when it is a submodule, else the package. Importing a
package implies its ``__init__``, except for the packages that contain the
importing module, which are already being imported; so ``pkg.sub -> pkg`` is an
edge only when ``pkg.sub`` takes a name from ``pkg`` itself (``from . import
name`` with ``name`` not a submodule, ``from .. import X``, ``from pkg import
X``, ``import pkg``). Such an edge closes a cycle whenever ``pkg/__init__``
imports ``pkg.sub`` (directly or not): a submodule imports the module that
defines a name, never its own package. ``pkg.__main__`` may import ``pkg``:
nothing imports ``__main__``, so it is on no cycle.

Also: ``qsim_core`` never imports ``qstore``, and no module under ``qsim_core/``,
``qstore/`` or ``bench/`` is over 800 lines unless its docstring has a line
``Over 800 lines: <reason>``.

Each checker is a plain function over source text or a directory, unit-tested
at the end of this file on small synthetic inputs.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import textwrap
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CORE = "qsim_core"
#: directories whose imports of qsim_core must stay on the public side
CLIENT_DIRS = ("qstore", "bench")
#: packages whose import graph must be acyclic
GRAPH_PACKAGES = ("qsim_core", "qstore")
#: directories whose modules are held to MAX_LINES
SIZED_DIRS = ("qsim_core", "qstore", "bench")
MAX_LINES = 800
WAIVER = "Over 800 lines:"


# ---------------------------------------------------------------------------------------------------------------
# files and module names


def python_files(root: Path, directories: Iterable[str]) -> list[Path]:
    """Every ``.py`` file under ``root/<directory>`` for each directory, sorted (caches and build trees skipped)."""
    files: list[Path] = []
    for directory in directories:
        base = root / directory
        files.extend(path for path in base.rglob("*.py")
                     if not any(part == "__pycache__" or part == "build" or part.startswith(".")
                                for part in path.relative_to(root).parts))
    return sorted(files)


def module_name(path: Path, root: Path) -> str:
    """``pkg/sub/__init__.py`` -> ``pkg.sub``; ``pkg/sub/mod.py`` -> ``pkg.sub.mod`` (``path`` under ``root``)."""
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _top(dotted: str) -> str:
    return dotted.partition(".")[0]


def _prefixes(dotted: str) -> list[str]:
    """``a.b.c`` -> ``["a", "a.b", "a.b.c"]``."""
    parts = dotted.split(".")
    return [".".join(parts[:k]) for k in range(1, len(parts) + 1)]


def _parse(source: str, filename: str) -> ast.Module:
    return ast.parse(source, filename)


# ---------------------------------------------------------------------------------------------------------------
# (a) the public boundary


@dataclass(frozen=True)
class Violation:
    """One import that crosses the boundary: where, what, why."""

    path: str
    line: int
    imported: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: {self.imported}: {self.reason}"


class PublicApi:
    """What qsim_core exports, read by importing its modules (cached).

    ``exports(module)`` is the module's ``__all__`` as a tuple, or None when it
    has none; it raises ImportError when the module cannot be imported.
    """

    def __init__(self) -> None:
        self._exports: dict[str, tuple[str, ...] | None] = {}

    def exports(self, module: str) -> tuple[str, ...] | None:
        if module not in self._exports:
            names = getattr(importlib.import_module(module), "__all__", None)
            self._exports[module] = None if names is None else tuple(names)
        return self._exports[module]

    def is_module(self, dotted: str) -> bool:
        """True if ``dotted`` names an importable module (not an attribute of one)."""
        try:
            return importlib.util.find_spec(dotted) is not None
        except (ImportError, ValueError):
            return False


def _module_problem(api: PublicApi, module: str) -> str | None:
    """Why ``module`` (a qsim_core submodule) is not public, or None if it and its packages are."""
    for prefix in _prefixes(module)[1:]:
        last = prefix.rpartition(".")[2]
        if last.startswith("_"):
            return f"{prefix} is a private module (underscore name)"
        try:
            exported = api.exports(prefix)
        except ImportError as error:
            return f"{prefix} cannot be imported ({error})"
        if exported is None:
            return f"{prefix} has no __all__, so nothing in it is public"
    return None


def boundary_violations(source: str, path: str, api: PublicApi | None = None) -> list[Violation]:
    """Every import of qsim_core in ``source`` that breaks the convention (see the module docstring)."""
    api = api or PublicApi()
    found: list[Violation] = []
    for node in ast.walk(_parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if _top(alias.name) != CORE or alias.name == CORE:
                    continue
                problem = _module_problem(api, alias.name)
                if problem:
                    found.append(Violation(path, node.lineno, f"import {alias.name}", problem))
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _top(node.module) == CORE:
            module = node.module
            problem = _module_problem(api, module) if module != CORE else None
            if problem:
                found.extend(Violation(path, node.lineno, f"from {module} import {alias.name}", problem)
                             for alias in node.names)
                continue
            exported = api.exports(module) or ()
            for alias in node.names:
                name = alias.name
                where = f"from {module} import {name}"
                if name == "*":
                    continue  # a star import brings in exactly __all__, which the module has (checked above)
                if name.startswith("_"):
                    found.append(Violation(path, node.lineno, where, f"{name} is private (underscore name)"))
                elif name in exported:
                    continue
                elif api.is_module(f"{module}.{name}"):
                    problem = _module_problem(api, f"{module}.{name}")
                    if problem:
                        found.append(Violation(path, node.lineno, where, problem))
                else:
                    found.append(Violation(path, node.lineno, where, f"{name} is not in {module}.__all__"))
    return sorted(found, key=lambda violation: violation.line)  # ast.walk is breadth first


# ---------------------------------------------------------------------------------------------------------------
# (b) the import graph


@dataclass(frozen=True)
class Edge:
    """``source`` imports ``target`` at import time, at ``path:line``."""

    source: str
    target: str
    path: str
    line: int


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def import_time_imports(tree: ast.AST) -> Iterator[ast.Import | ast.ImportFrom]:
    """Import statements run when the module is imported: not in functions, not under ``if TYPE_CHECKING:``."""
    for child in ast.iter_child_nodes(tree):
        if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            continue
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for statement in child.orelse:  # the else branch does run
                if isinstance(statement, (ast.Import, ast.ImportFrom)):
                    yield statement
                else:
                    yield from import_time_imports(statement)
        else:
            yield from import_time_imports(child)


def _absolute(node: ast.ImportFrom, module: str, is_package: bool) -> str | None:
    """The absolute module a ``from ... import`` reads from, or None if it climbs out of the tree."""
    if node.level == 0:
        return node.module
    package = module.split(".") if is_package else module.split(".")[:-1]
    if node.level - 1 > len(package) - 1:
        return None
    base = package[: len(package) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def module_edges(source: str, path: str, module: str, is_package: bool, known: set[str]) -> list[Edge]:
    """The import-time edges from ``module`` to the ``known`` modules (rules in the module docstring)."""
    inside = set(_prefixes(module))  # the module and the packages that contain it: already being imported
    edges: list[Edge] = []

    def add(target: str, line: int) -> None:
        if target in known and target != module:
            edges.append(Edge(module, target, path, line))

    for node in import_time_imports(_parse(source, path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                for implied in _prefixes(alias.name)[:-1]:
                    if implied not in inside:
                        add(implied, node.lineno)
                add(alias.name, node.lineno)  # named explicitly: an edge even to an enclosing package
            continue
        base = _absolute(node, module, is_package)
        if base is None:
            continue
        for implied in _prefixes(base)[:-1]:
            if implied not in inside:
                add(implied, node.lineno)
        names = [alias.name for alias in node.names]
        submodules = [f"{base}.{name}" for name in names if f"{base}.{name}" in known]
        takes_names = len(submodules) < len(names)  # something that is not a submodule: base's own namespace
        if base not in inside or takes_names:
            add(base, node.lineno)
        for submodule in submodules:
            add(submodule, node.lineno)
    return edges


def import_graph(root: Path, packages: Sequence[str]) -> list[Edge]:
    """Every import-time edge among the modules of ``packages`` under ``root``."""
    files = python_files(root, packages)
    known = {module_name(path, root) for path in files}
    edges: list[Edge] = []
    for path in files:
        edges.extend(module_edges(path.read_text(encoding="utf-8"), str(path.relative_to(root)),
                                  module_name(path, root), path.name == "__init__.py", known))
    return edges


def strongly_connected(graph: Mapping[str, Iterable[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of ``graph`` (iterative), each sorted; singletons included."""
    nodes = sorted(set(graph) | {t for targets in graph.values() for t in targets})
    successors = {node: sorted(set(graph.get(node, ()))) for node in nodes}
    index: dict[str, int] = {}
    lowlink: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []
    for start in nodes:
        if start in index:
            continue
        work = [(start, 0)]
        while work:
            node, position = work.pop()
            if position == 0:
                index[node] = lowlink[node] = len(index)
                stack.append(node)
                on_stack.add(node)
            targets = successors[node]
            if position < len(targets):
                work.append((node, position + 1))
                target = targets[position]
                if target not in index:
                    work.append((target, 0))
                elif target in on_stack:
                    lowlink[node] = min(lowlink[node], index[target])
                continue
            if lowlink[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                components.append(sorted(component))
            if work:
                parent = work[-1][0]
                lowlink[parent] = min(lowlink[parent], lowlink[node])
    return components


def _cycle_through(first: str, members: set[str], graph: Mapping[str, Iterable[str]]) -> list[str]:
    """A shortest cycle ``first -> ... -> first`` inside ``members`` (breadth first)."""
    previous: dict[str, str] = {}
    frontier = [first]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, ())):
                if target not in members:
                    continue
                if target == first:
                    path = [node]
                    while path[-1] != first:
                        path.append(previous[path[-1]])
                    return [*reversed(path), first]
                if target not in previous:
                    previous[target] = node
                    following.append(target)
        frontier = following
    raise AssertionError(f"{first} is on no cycle within {sorted(members)}")


def import_cycles(edges: Sequence[Edge]) -> list[str]:
    """One description per strongly connected component with a cycle: its members and one cycle, with lines."""
    graph: dict[str, set[str]] = {}
    where: dict[tuple[str, str], Edge] = {}
    for edge in edges:
        graph.setdefault(edge.source, set()).add(edge.target)
        where.setdefault((edge.source, edge.target), edge)
    reports = []
    for component in strongly_connected(graph):
        if len(component) < 2:
            continue
        cycle = _cycle_through(component[0], set(component), graph)
        steps = "\n".join(f"    {a} -> {b}  ({where[a, b].path}:{where[a, b].line})"
                          for a, b in zip(cycle, cycle[1:], strict=False))
        reports.append(f"cycle among {', '.join(component)}:\n{steps}")
    return reports


# ---------------------------------------------------------------------------------------------------------------
# (c) qsim_core never imports qstore


def forbidden_imports(source: str, path: str, forbidden: str = "qstore") -> list[Violation]:
    """Every absolute import of package ``forbidden`` in ``source``, at any depth."""
    found = []
    for node in ast.walk(_parse(source, path)):
        if isinstance(node, ast.Import):
            found.extend(Violation(path, node.lineno, f"import {alias.name}", f"imports {forbidden}")
                         for alias in node.names if _top(alias.name) == forbidden)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _top(node.module) == forbidden:
            found.append(Violation(path, node.lineno, f"from {node.module} import ...", f"imports {forbidden}"))
    return found


# ---------------------------------------------------------------------------------------------------------------
# (d) module size


def oversized(source: str, path: str, limit: int = MAX_LINES) -> str | None:
    """A description if ``source`` has more than ``limit`` lines and no ``Over 800 lines: <reason>`` docstring line."""
    lines = len(source.splitlines())
    if lines <= limit:
        return None
    docstring = ast.get_docstring(_parse(source, path)) or ""
    if any(line.startswith(WAIVER) and line[len(WAIVER):].strip() for line in docstring.splitlines()):
        return None
    return f"{path}: {lines} lines (limit {limit}; split it, or give the reason in a docstring line '{WAIVER} ...')"


# ===============================================================================================================
# the checks on this tree


def _relative(path: Path) -> str:
    return str(path.relative_to(ROOT))


def test_clients_import_only_public_qsim_core_names():
    api = PublicApi()
    violations = [str(v) for path in python_files(ROOT, CLIENT_DIRS)
                  for v in boundary_violations(path.read_text(encoding="utf-8"), _relative(path), api)]
    assert not violations, "imports across qsim_core's public boundary:\n" + "\n".join(violations)


def test_modules_clients_import_from_declare_a_public_api():
    """Every qsim_core submodule qstore/bench import from has an __all__ of real, public names and says so."""
    api = PublicApi()
    used: set[str] = set()
    for path in python_files(ROOT, CLIENT_DIRS):
        for node in ast.walk(_parse(path.read_text(encoding="utf-8"), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module and _top(node.module) == CORE:
                used.add(node.module)
                used.update(f"{node.module}.{alias.name}" for alias in node.names
                            if api.is_module(f"{node.module}.{alias.name}"))
            elif isinstance(node, ast.Import):
                used.update(alias.name for alias in node.names if _top(alias.name) == CORE)
    problems = []
    for name in sorted(used):
        module = importlib.import_module(name)
        exported = api.exports(name)
        if exported is None:
            continue  # reported by the boundary test
        problems += [f"{name}.__all__ lists {entry!r}, which is private" for entry in exported if entry.startswith("_")]
        problems += [f"{name}.__all__ lists {entry!r}, which it does not define"
                     for entry in exported if not hasattr(module, entry)]
        if "public" not in (module.__doc__ or "").lower():
            problems.append(f"{name}: its docstring does not say what is public")
    assert not problems, "\n".join(problems)


def test_no_import_cycles():
    cycles = import_cycles(import_graph(ROOT, GRAPH_PACKAGES))
    assert not cycles, "import cycles (fix by importing the defining module, not the package):\n" + "\n".join(cycles)


def test_qsim_core_does_not_import_qstore():
    violations = [str(v) for path in python_files(ROOT, [CORE])
                  for v in forbidden_imports(path.read_text(encoding="utf-8"), _relative(path))]
    assert not violations, "qsim_core must not depend on qstore:\n" + "\n".join(violations)


def test_modules_are_at_most_800_lines():
    offenders = [problem for path in python_files(ROOT, SIZED_DIRS)
                 if (problem := oversized(path.read_text(encoding="utf-8"), _relative(path)))]
    print("\n".join(offenders))
    assert not offenders, "modules over 800 lines:\n" + "\n".join(offenders)


# ===============================================================================================================
# the checkers on synthetic input


@pytest.fixture(scope="module")
def api() -> PublicApi:
    return PublicApi()


@pytest.mark.parametrize("source, imported", [
    ("from qsim_core.compiler.program import _TOL", "from qsim_core.compiler.program import _TOL"),
    ("from qsim_core.derivatives import shift_rule", "from qsim_core.derivatives import shift_rule"),
    ("import qsim_core.derivatives", "import qsim_core.derivatives"),
    ("import qsim_core.backends.driver as driver", "import qsim_core.backends.driver"),
    ("from qsim_core.backends.driver import CompiledBackend", "from qsim_core.backends.driver import CompiledBackend"),
    ("from qsim_core.backends import driver", "from qsim_core.backends import driver"),
    ("from qsim_core.backends import _FACTORIES", "from qsim_core.backends import _FACTORIES"),
    ("from qsim_core.circuit import _builder", "from qsim_core.circuit import _builder"),
    ("from qsim_core.circuit import GATES", "from qsim_core.circuit import GATES"),  # imported there, not exported
    ("from qsim_core import native", "from qsim_core import native"),
    ("from qsim_core import NoSuchName", "from qsim_core import NoSuchName"),
    ("from qsim_core import __version__", "from qsim_core import __version__"),
    ("from qsim_core.derivatives import *", "from qsim_core.derivatives import *"),
    ("import qsim_core.no_such_module", "import qsim_core.no_such_module"),
    ("from qsim_core.backends.cython import _kernels", "from qsim_core.backends.cython import _kernels"),
])
def test_boundary_reports(api, source, imported):
    violations = boundary_violations(source, "snippet.py", api)
    assert [(v.path, v.line, v.imported) for v in violations] == [("snippet.py", 1, imported)], violations


@pytest.mark.parametrize("source", [
    "import qsim_core",
    "import qsim_core as qc",
    "from qsim_core import Circuit, Param, seed_circuit",
    "from qsim_core import backends, compiler",
    "from qsim_core.circuit import is_symbolic, ParamValue",
    "from qsim_core.gates import Gate",
    "from qsim_core.backends import Job, get_backend, PREFERENCE",
    "from qsim_core.backends.contract import Job",
    "import qsim_core.backends.contract",
    "from qsim_core.compiler import DEFAULT_BLOCK_QUBITS",
    "from qsim_core.measurement import *",
    "from . import _private\nfrom .qsim_core import _private\nfrom ..x import _y",  # relative: qstore's own
    "import qsim_core_extra\nfrom qsim_core_extra import _x",  # another package
    "import numpy as np",
])
def test_boundary_accepts(api, source):
    assert boundary_violations(source, "snippet.py", api) == []


def test_boundary_sees_nested_imports_and_names_each_one(api):
    source = textwrap.dedent("""\
        import qsim_core as qc

        class Layer:
            def run(self):
                if True:
                    from qsim_core.backends.driver import CompiledBackend, _run
                from qsim_core.circuit import Circuit, _builder
    """)
    violations = boundary_violations(source, "qstore/x.py", api)
    assert [str(v) for v in violations] == [
        "qstore/x.py:6: from qsim_core.backends.driver import CompiledBackend: qsim_core.backends.driver has no "
        "__all__, so nothing in it is public",
        "qstore/x.py:6: from qsim_core.backends.driver import _run: qsim_core.backends.driver has no __all__, "
        "so nothing in it is public",
        "qstore/x.py:7: from qsim_core.circuit import _builder: _builder is private (underscore name)",
    ]


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")
    return root


def _cycles(tmp_path: Path, files: Mapping[str, str]) -> list[str]:
    return import_cycles(import_graph(_write(tmp_path, files), ["pkg"]))


def test_two_module_cycle_is_found_with_its_lines(tmp_path):
    cycles = _cycles(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/a.py": "import os\nfrom . import b\n",
        "pkg/b.py": "from .a import thing\n",
    })
    assert cycles == ["cycle among pkg.a, pkg.b:\n"
                      "    pkg.a -> pkg.b  (pkg/a.py:2)\n"
                      "    pkg.b -> pkg.a  (pkg/b.py:1)"]


def test_three_module_cycle_across_subpackages(tmp_path):
    cycles = _cycles(tmp_path, {
        "pkg/__init__.py": "",
        "pkg/sub/__init__.py": "from .x import X\n",
        "pkg/sub/x.py": "from ..y import Y\n",
        "pkg/y.py": "try:\n    import pkg.sub\nexcept ImportError:\n    pass\n",  # in a try block: still import time
    })
    assert len(cycles) == 1 and cycles[0].startswith("cycle among pkg.sub, pkg.sub.x, pkg.y:"), cycles


def test_submodule_importing_its_own_package_is_a_cycle(tmp_path):
    cycles = _cycles(tmp_path, {
        "pkg/__init__.py": "from .a import A\nfrom .b import B\n",
        "pkg/a.py": "A = 1\n",
        "pkg/b.py": "from pkg import A\nB = A\n",  # should be: from .a import A
    })
    assert cycles == ["cycle among pkg, pkg.b:\n    pkg -> pkg.b  (pkg/__init__.py:2)\n    pkg.b -> pkg  (pkg/b.py:1)"]
    relative = _cycles(tmp_path / "relative", {
        "pkg/__init__.py": "from .a import A\nfrom .b import B\n",
        "pkg/a.py": "A = 1\n",
        "pkg/sub/__init__.py": "",
        "pkg/b.py": "from .sub import helper\n",
        "pkg/sub/helper.py": "from .. import A\n",  # from the package itself, two levels up
    })
    assert len(relative) == 1 and "pkg.sub.helper -> pkg  (pkg/sub/helper.py:1)" in relative[0], relative


@pytest.mark.parametrize("files", [
    {  # the package imports its submodules, they import siblings and take submodules from the package
        "pkg/__init__.py": "from .a import A\nfrom .b import B\nfrom . import c\n",
        "pkg/a.py": "from .b import B\nfrom . import c\nimport pkg.c\nA = B\n",
        "pkg/b.py": "B = 1\n",
        "pkg/c.py": "from pkg.b import B\n",
    },
    {  # __main__ imports the package; nothing imports __main__
        "pkg/__init__.py": "from .a import A\n",
        "pkg/a.py": "A = 1\n",
        "pkg/__main__.py": "from . import A\nimport pkg\n",
    },
    {  # imports in functions and under TYPE_CHECKING do not run at import time
        "pkg/__init__.py": "",
        "pkg/a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .b import B\n",
        "pkg/b.py": "def f():\n    from .a import A\n    return A\n",
    },
    {  # other packages are not in the graph
        "pkg/__init__.py": "import os\nfrom numpy import linalg\n",
    },
])
def test_no_false_cycles(tmp_path, files):
    assert _cycles(tmp_path, files) == []


def test_module_edges_resolve_relative_imports():
    known = {"pkg", "pkg.a", "pkg.b", "pkg.sub", "pkg.sub.a", "pkg.sub.x"}
    source = ("from . import a\nfrom . import a, helper\nfrom ..b import B\nfrom .x import X\nimport pkg.sub.x\n"
              "import numpy\nfrom ... import too_far\n")
    # in the package pkg.sub itself: "." is pkg.sub
    edges = module_edges(source, "pkg/sub/__init__.py", "pkg.sub", True, known)
    assert [(e.target, e.line) for e in edges] == [("pkg.sub.a", 1), ("pkg.sub.a", 2), ("pkg.b", 3),
                                                   ("pkg.sub.x", 4), ("pkg.sub.x", 5)]
    # in its submodule pkg.sub.y: "." is pkg.sub too, and "helper" is a name taken from it
    edges = module_edges(source, "pkg/sub/y.py", "pkg.sub.y", False, known)
    assert [(e.target, e.line) for e in edges] == [("pkg.sub.a", 1), ("pkg.sub", 2), ("pkg.sub.a", 2), ("pkg.b", 3),
                                                   ("pkg.sub.x", 4), ("pkg.sub.x", 5)]
    # from outside: importing pkg.sub.x runs pkg and pkg.sub first
    edges = module_edges("import pkg.sub.x\nfrom pkg.sub import a\n", "other.py", "other", False, known)
    assert [(e.target, e.line) for e in edges] == [("pkg", 1), ("pkg.sub", 1), ("pkg.sub.x", 1),
                                                   ("pkg", 2), ("pkg.sub", 2), ("pkg.sub.a", 2)]


def test_strongly_connected_components():
    graph = {"a": ["b"], "b": ["c"], "c": ["a", "d"], "d": ["e"], "e": ["d"], "f": ["a"]}
    assert sorted(strongly_connected(graph)) == [["a", "b", "c"], ["d", "e"], ["f"]]
    deep = {str(k): [str(k + 1)] for k in range(5000)}  # no recursion limit
    deep["5000"] = ["0"]
    assert len(strongly_connected(deep)) == 1


def test_forbidden_imports():
    source = textwrap.dedent("""\
        import numpy
        from qstore_other import x

        def f():
            import qstore.ml as ml
            from qstore import ml
    """)
    assert [str(v) for v in forbidden_imports(source, "qsim_core/x.py")] == [
        "qsim_core/x.py:5: import qstore.ml: imports qstore",
        "qsim_core/x.py:6: from qstore import ...: imports qstore",
    ]


def test_oversized():
    body = "x = 1\n" * 799
    assert oversized('"""Doc."""\n' + body, "ok.py") is None  # 800 lines
    assert oversized('"""Doc."""\n' + body + "y = 2\n", "big.py").startswith("big.py: 801 lines")
    waived = '"""Doc.\n\nOver 800 lines: one state machine, split it and it reads worse.\n"""\n' + body
    assert oversized(waived, "waived.py") is None
    empty_reason = '"""Doc.\n\nOver 800 lines:\n"""\n' + body
    assert oversized(empty_reason, "bare.py") is not None
    not_in_docstring = "# Over 800 lines: a comment is not the docstring\n" + body + "y = 2\n"
    assert oversized(not_in_docstring, "comment.py") is not None
