"""No module of the engine or the application imports a module that imports it back.

Circles make the import order matter (a half-initialised module raises at start-up) and hide which
layer sits on which. The imports are read from the source with ``ast``, at module level and inside
functions (a lazy ``from .x import y`` closes a circle as surely as one at the top).
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Import name -> source folder (the engine installs as `discomkd` from core/, see pyproject.toml).
PACKAGES = {"discomkd": ROOT / "core", "discomkd_gui": ROOT / "discomkd_gui"}


def module_files(packages: dict[str, Path]) -> dict[str, Path]:
    """Every module of the packages by its dotted name (a package is its ``__init__.py``)."""
    modules = {}
    for package, folder in packages.items():
        for path in sorted(folder.rglob("*.py")):
            parts = [package, *path.relative_to(folder).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def imported_modules(name: str, path: Path, known: set[str]) -> set[str]:
    """The known modules that ``name`` (at ``path``) imports anywhere in its code."""
    is_package = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: `.` is the module's own package
                base_parts = name.split(".") if is_package else name.split(".")[:-1]
                base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            # `from pkg import mod` imports the sub-module pkg.mod when there is one.
            targets = [base] + [f"{base}.{alias.name}" for alias in node.names]
        else:
            continue
        found.update(t for t in targets if t in known and t != name)
    return found


def import_graph(packages: dict[str, Path]) -> dict[str, set[str]]:
    modules = module_files(packages)
    return {name: imported_modules(name, path, set(modules)) for name, path in modules.items()}


def import_circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Groups of modules that reach each other through imports (Tarjan's strongly connected components)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    circles: list[list[str]] = []

    def visit(module: str) -> None:
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for target in sorted(graph[module]):
            if target not in index:
                visit(target)
                low[module] = min(low[module], low[target])
            elif target in on_stack:
                low[module] = min(low[module], index[target])
        if low[module] == index[module]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == module:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return circles


def test_no_module_imports_one_that_imports_it_back():
    graph = import_graph(PACKAGES)
    assert "discomkd.cli" in graph and "discomkd_gui.app" in graph
    circles = import_circles(graph)
    assert circles == [], "import circles: " + "; ".join(" <-> ".join(c) for c in circles)


def test_the_shared_option_parsing_sits_below_both_commands():
    graph = import_graph(PACKAGES)
    assert "discomkd.options" in graph["discomkd.cli"] and "discomkd.options" in graph["discomkd.compare_command"]
    assert "discomkd.cli" not in graph["discomkd.compare_command"]
    assert "discomkd_gui.app" not in graph["discomkd_gui.self_test"]


def test_circle_finder_sees_a_circle_closed_inside_a_function(tmp_path):
    package = tmp_path / "pkg"
    (package / "sub").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "sub" / "__init__.py").write_text("")
    (package / "a.py").write_text("from .sub import b\n")
    (package / "sub" / "b.py").write_text("def later():\n    from ..c import thing\n")
    (package / "c.py").write_text("import pkg.a\n")
    (package / "d.py").write_text("from . import a\n")  # imports into the circle, is not part of it
    graph = import_graph({"pkg": package})
    assert graph["pkg.a"] == {"pkg.sub", "pkg.sub.b"}
    assert graph["pkg.d"] == {"pkg", "pkg.a"}
    assert import_circles(graph) == [["pkg.a", "pkg.c", "pkg.sub.b"]]


# The engine's layers from the bottom up (docs/architecture.md); a module imports only from its own
# layer or the ones below. Training and inference are side by side: neither imports the other.
ENGINE_LAYERS = [
    {"discomkd", "discomkd.errors", "discomkd.config"},
    {"discomkd.storage"},
    {"discomkd.data"},
    {"discomkd.model"},
    {"discomkd.training", "discomkd.inference"},
    {"discomkd.options", "discomkd.console", "discomkd.compare_command", "discomkd.cli", "discomkd.__main__"},
]


def engine_layer(module: str) -> tuple[int, str]:
    """The layer index of an engine module and the name of its layer (package or top-level module)."""
    parts = module.split(".")
    for depth in (2, 1):
        name = ".".join(parts[:depth])
        for index, layer in enumerate(ENGINE_LAYERS):
            if name in layer:
                return index, name
    raise AssertionError(f"{module} belongs to no layer: add it to ENGINE_LAYERS and docs/architecture.md")


def test_engine_layers_import_only_downward():
    graph = import_graph({"discomkd": PACKAGES["discomkd"]})
    upward = []
    for module, targets in graph.items():
        level, layer = engine_layer(module)
        for target in targets:
            target_level, target_layer = engine_layer(target)
            side_by_side = target_level == level and {layer, target_layer} == {"discomkd.training", "discomkd.inference"}
            if target_level > level or side_by_side:
                upward.append(f"{module} -> {target}")
    assert upward == [], "imports against the layering: " + "; ".join(sorted(upward))
