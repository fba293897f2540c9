"""The import graph of the fusednn package has no cycles.

Built with `ast` from every python/fusednn/**.py: module-level imports and imports inside
functions alike (a late import hides a cycle instead of removing it), relative forms
(`from . import x`, `from ..y import z`) resolved against the importing module. Importing
`a.b.c` runs the __init__ of `a.b` too, so that is an edge as well, except to the
importer's own enclosing packages (Python starts those before the importer; reading a
name from one of them, as `from . import name`, is an edge and is counted).
"""
from __future__ import annotations

import ast
import importlib.machinery
import pathlib

import pytest

import fusednn

# The package the tests import: the source tree's python/fusednn in a development build,
# the installed copy (with its compiled _C) in CI.
PACKAGE_DIR = pathlib.Path(fusednn.__file__).resolve().parent


def _modules(root: pathlib.Path) -> dict[str, pathlib.Path | None]:
    """Dotted module name -> .py file (None for a compiled extension such as _C, which
    imports nothing of the package) for every module under the package root."""
    modules = {}
    for path in root.rglob("*"):
        suffix = next((s for s in importlib.machinery.EXTENSION_SUFFIXES
                       if path.name.endswith(s)), None)
        if path.suffix != ".py" and suffix is None:
            continue
        relative = path.relative_to(root)
        stem = relative.name[:-len(suffix)] if suffix else relative.stem
        parts = (root.name,) + relative.parent.parts + (stem,)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        modules[".".join(parts)] = path if suffix is None else None
    return modules


def _package_of(module: str, path: pathlib.Path) -> str:
    return module if path.name == "__init__.py" else module.rpartition(".")[0]


def _targets(module: str, path: pathlib.Path, modules: dict) -> set[str]:
    """The fusednn modules whose code runs (or must have run) for `module`'s imports."""
    package = _package_of(module, path)
    named = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            named.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module
            for alias in node.names:
                submodule = f"{source}.{alias.name}"
                # `from P import n`: n is P's submodule or a name P's __init__ defines.
                named.add(submodule if submodule in modules else source)
    ancestors_of_importer = {".".join(module.split(".")[:i])
                             for i in range(1, module.count(".") + 1)}
    targets = set()
    for name in named:
        if name not in modules:
            continue  # outside fusednn
        targets.add(name)
        parts = name.split(".")
        targets.update(parent for parent in (".".join(parts[:i]) for i in range(1, len(parts)))
                       if parent not in ancestors_of_importer)
    targets.discard(module)
    return targets


def import_graph(root: pathlib.Path = PACKAGE_DIR) -> dict[str, set[str]]:
    modules = _modules(root)
    return {module: set() if path is None else _targets(module, path, modules)
            for module, path in modules.items()}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None (iterative depth-first search)."""
    state = dict.fromkeys(graph, 0)  # 0 unseen, 1 on the current path, 2 done
    for start in sorted(graph):
        if state[start]:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state[nxt] == 1:
                return path[path.index(nxt):] + [nxt]
            elif state[nxt] == 0:
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


def test_fusednn_has_no_import_cycle():
    graph = import_graph()
    assert "fusednn.models.sequential" in graph and "fusednn.layers.base" in graph  # found the files
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# The checker itself, on small packages written for the test: it must find the forms of
# cycle the package had (a late import, a name read from the parent package) and must not
# report the parent/child relation every package has.
def _write_package(root: pathlib.Path, files: dict[str, str]) -> pathlib.Path:
    for name, text in files.items():
        path = root / "fusednn" / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "fusednn"


@pytest.mark.parametrize("files, expected", [
    # models <-> io through an import inside a function
    ({"__init__.py": "from . import io, models\n",
      "io.py": "def load():\n    from . import models\n",
      "models.py": "from . import io\n"},
     {"fusednn.io", "fusednn.models"}),
    # a child reading a name from its package's __init__, which imports the child
    ({"__init__.py": "",
      "layers/__init__.py": "from .wrappers import Wrapper\ndef serialize(x): return x\n",
      "layers/wrappers.py": "class Wrapper:\n    def f(self):\n        from . import serialize\n"},
     {"fusednn.layers", "fusednn.layers.wrappers"}),
    # importing a submodule runs its package's __init__: callbacks -> models -> callbacks
    ({"__init__.py": "",
      "callbacks.py": "from .models.progress import Progress\n",
      "models/__init__.py": "from .training import fit\n",
      "models/training.py": "from .. import callbacks\n",
      "models/progress.py": "class Progress: pass\n"},
     {"fusednn.callbacks", "fusednn.models", "fusednn.models.training"}),
])
def test_checker_finds_cycles(tmp_path, files, expected):
    cycle = find_cycle(import_graph(_write_package(tmp_path, files)))
    assert cycle is not None and set(cycle) == expected


def test_checker_accepts_a_package_importing_its_children(tmp_path):
    root = _write_package(tmp_path, {
        "__init__.py": "from . import backend, layers\nfrom .layers import Dense\n",
        "backend.py": "import numpy\n",
        "layers/__init__.py": "from .core import Dense\n",
        "layers/core.py": "from .. import backend\nfrom ..backend import numpy\n"})
    graph = import_graph(root)
    assert graph["fusednn.layers.core"] == {"fusednn.backend"}
    assert find_cycle(graph) is None
