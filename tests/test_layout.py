"""The package layout stays true: imports inside ``gliocore`` run one way, with no circles.

Layers, from the top: the CLI; the pipeline, validation, analysis and models; the store and the steps
(segment, features, location, longitudinal); cohort; imaging; the vocabulary (types, errors,
settings, versions). A package may import only what is listed for it below (lazy imports inside
functions count too). The store never imports a step, and no step imports the store.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "gliocore"

VOCABULARY = {"types", "errors", "settings", "versions", ""}
STEPS = {"segment", "features", "location", "longitudinal"}
ALLOWED: dict[str, set[str]] = {
    "": VOCABULARY,  # gliocore/__init__.py and the vocabulary modules
    "imaging": VOCABULARY,
    "cohort": VOCABULARY | {"imaging"},
    **{step: VOCABULARY | {"imaging", "cohort"} for step in STEPS},
    "preprocess": VOCABULARY | {"imaging", "cohort"},  # a step, before segmentation
    "store": VOCABULARY,
    "analysis": VOCABULARY | {"imaging", "cohort", "store"} | STEPS,
    "pipeline": VOCABULARY | {"imaging", "cohort", "store", "preprocess"} | STEPS,
    "models": VOCABULARY | {"imaging", "cohort", "store"} | STEPS,
    "validation": VOCABULARY | {"imaging", "cohort", "analysis"} | STEPS,
    "cli": VOCABULARY | {"imaging", "cohort", "store", "analysis", "models", "pipeline",
                         "validation", "preprocess", "cli_model"} | STEPS,
    "cli_model": VOCABULARY | {"cohort", "store", "analysis", "models"},  # `model` commands
    "__main__": {"cli"},
}
TOP_LEVEL_MODULES = {"types", "errors", "settings", "versions", "cli", "cli_model", "__main__"}


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path) -> set[str]:
    """Every ``gliocore`` module ``path`` imports, at the top or inside a function."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rsplit(".", 1)[0]
    return imports_in(path.read_text(), package)


def imports_in(source: str, package: str) -> set[str]:
    """The ``gliocore`` modules that ``source`` (code of a module in ``package``) imports."""
    tree = ast.parse(source)
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.split(".")[0] == "gliocore"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            if base.split(".")[0] != "gliocore":
                continue
            for alias in node.names:  # `from gliocore.x import y`: y may be a module
                candidate = f"{base}.{alias.name}"
                out.add(candidate if _is_module(candidate) else base)
    return out


def _is_module(name: str) -> bool:
    rel = Path(*name.split(".")[1:])
    return (ROOT / rel).with_suffix(".py").exists() or (ROOT / rel / "__init__.py").exists()


def layer(module: str) -> str:
    """``gliocore.location.vasari`` -> ``location``; ``gliocore.types`` -> ``types``."""
    parts = module.split(".")
    if len(parts) == 1:
        return ""
    return parts[1]


def package_of(module: str) -> str:
    name = layer(module)
    return "" if name in VOCABULARY else name


@functools.lru_cache(maxsize=1)
def graph() -> dict[str, set[str]]:
    return {module_name(p): imported_modules(p) for p in sorted(ROOT.rglob("*.py"))}


def test_every_module_sits_in_a_known_package():
    for module in graph():
        name = layer(module)
        assert name in ALLOWED or name in TOP_LEVEL_MODULES, (
            f"{module}: a new top-level module or package; give it a layer in tests/test_layout.py")


@pytest.mark.parametrize("module", sorted(graph()))
def test_imports_run_one_way(module):
    wrong = violations(module, graph()[module])
    assert not wrong, f"{module} ({package_of(module) or 'vocabulary'}) may not import {wrong}"


def test_no_streamlit_or_pages_inside_gliocore():
    for path in ROOT.rglob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) else [])
            for name in names:
                assert name.split(".")[0] not in {"streamlit", "pages", "app"}, f"{path}: imports {name}"


def find_circle(g: dict[str, set[str]]) -> list[str] | None:
    """One import circle of ``g`` (module -> imported modules), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(g.get(m, ())):
            if n not in g or n == m or m.startswith(n + "."):  # a package's own __init__ is not a circle
                continue
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (found := visit(n)):
                return found
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(g):
        if m not in state and (found := visit(m)):
            return found
    return None


def test_no_import_circles():
    circle = find_circle(graph())
    assert circle is None, "import circle: " + " -> ".join(circle or [])


def test_the_circle_finder_finds_one():
    g = {"gliocore.location.regions": {"gliocore.location.vasari"},
         "gliocore.location.vasari": {"gliocore.location.regions"}}
    assert find_circle(g) == ["gliocore.location.regions", "gliocore.location.vasari",
                              "gliocore.location.regions"]


def violations(module: str, imports: set[str]) -> list[str]:
    mine = package_of(module)
    return sorted(m for m in imports if layer(m) not in ALLOWED[mine] | {mine})


def test_the_checker_finds_wrong_imports():
    """The rules bite: a step importing the store (even lazily) and the store importing a step."""
    lazy = "def f():\n    from gliocore.store.database import Store\n"
    assert violations("gliocore.location.x", imports_in(lazy, "gliocore.location")) == [
        "gliocore.store.database"]
    step = "from gliocore.segment import qc\n"
    assert violations("gliocore.store.x", imports_in(step, "gliocore.store")) == ["gliocore.segment.qc"]
    relative = "from ..store import database\n"
    assert violations("gliocore.features.x", imports_in(relative, "gliocore.features")) == [
        "gliocore.store.database"]
