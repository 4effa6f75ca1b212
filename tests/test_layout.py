"""The layout of the code: commands on nets/'s top floor, the library in its subpackages, and no module
that needs another which needs it back (an import circle: nets/cli.py, export.py, predict.py and
tflite.py once formed one)."""
import ast
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("nets", "detect", "preprocessing")


def module_name(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def project_modules() -> dict[str, Path]:
    return {module_name(p): p for package in PACKAGES for p in (REPO / package).rglob("*.py")}


def imports_of(path: Path, modules: dict) -> set[str]:
    """Every project module a file imports, at the top or inside a function (a lazy import is still
    a dependency); `from a.b import c` counts a.b.c where that is a module, else a.b."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [f"{node.module}.{alias.name}" if f"{node.module}.{alias.name}" in modules else node.module
                     for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in modules)
    return found


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    state, stack = {}, []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for other in sorted(graph.get(node, ())):
            if state.get(other) == "open":
                return stack[stack.index(other):] + [other]
            if other not in state:
                cycle = visit(other)
                if cycle:
                    return cycle
        stack.pop()
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_no_import_circle_among_the_library_modules():
    modules = project_modules()
    # a package's __init__ that re-exports lazily is not a dependency of its own submodules
    graph = {name: {m for m in imports_of(path, modules) if m != name and not name.startswith(m + ".")}
             for name, path in modules.items()}
    assert find_cycle(graph) is None, " -> ".join(find_cycle(graph))


def test_find_cycle_sees_a_circle_through_a_lazy_import(tmp_path):
    # the checker itself: the circle the old nets/cli.py and nets/tflite.py formed, one side lazy
    graph = {"nets.cli": {"nets.predict"}, "nets.predict": {"nets.tflite"}, "nets.tflite": {"nets.cli"}}
    assert find_cycle(graph) == ["nets.cli", "nets.predict", "nets.tflite", "nets.cli"]
    lazy = tmp_path / "lazy.py"
    lazy.write_text("def f():\n    from nets.training.cli import main\n")
    assert imports_of(lazy, {"nets.training.cli": lazy}) == {"nets.training.cli"}


@pytest.mark.parametrize("path", sorted((REPO / "nets").glob("*.py")), ids=lambda p: p.name)
def test_the_top_floor_of_nets_holds_commands_only(path):
    """A newcomer tells commands from library at a glance: every file on nets/'s top floor (but
    __init__.py) runs as a script, and no library module does."""
    if path.name == "__init__.py":
        return
    assert 'if __name__ == "__main__":' in path.read_text(), f"{path.name} is not a command"


def test_library_modules_are_not_commands():
    commands = [p.relative_to(REPO).as_posix() for sub in ("network", "training", "evaluation", "inference")
                for p in (REPO / "nets" / sub).glob("*.py") if 'if __name__ == "__main__":' in p.read_text()]
    assert commands == []
