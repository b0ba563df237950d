"""The house shows the pipeline: configuration loads without the heavy libraries, no module
imports itself through others, and no stage imports the runtime that drives it."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("daemon", "converter", "fleet")
STAGES = ("capture", "vision", "model", "rules", "publish", "web", "update")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py")}


def imports_of(name: str, path: Path, known: set[str]) -> set[str]:
    """Project modules that ``name`` imports, anywhere in the file (module level, inside
    functions, under TYPE_CHECKING): a lazy import is still a dependency. ``from pkg import x``
    counts as ``pkg.x`` when that is a module, else as ``pkg``. A package's ``__init__`` run
    implicitly by importing one of its modules is not counted: Python handles it, and counting
    it would make every registry that lists its plug-ins a cycle."""
    is_pkg = path.name == "__init__.py"
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_pkg else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            targets = [f"{mod}.{a.name}" if f"{mod}.{a.name}" in known else mod for a in node.names]
        else:
            continue
        found |= {t for t in targets if t in known and t != name}
    return found


def graph() -> dict[str, set[str]]:
    mods = modules()
    known = set(mods)
    return {name: imports_of(name, path, known) for name, path in mods.items()}


def find_cycle(g: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a list of modules (first == last), or None."""
    state: dict[str, int] = {}  # 1 = on the stack, 2 = done
    stack: list[str] = []

    def visit(n: str) -> list[str] | None:
        state[n] = 1
        stack.append(n)
        for m in sorted(g[n]):
            if state.get(m) == 1:
                return stack[stack.index(m):] + [m]
            if m not in state and (c := visit(m)):
                return c
        stack.pop()
        state[n] = 2
        return None

    for n in sorted(g):
        if n not in state and (c := visit(n)):
            return c
    return None


def test_the_walker_sees_a_cycle_when_there_is_one():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}
    assert find_cycle(g) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_the_walker_resolves_relative_and_absolute_imports():
    g = graph()
    assert "daemon.vision.pipeline" in g["daemon.runtime.app"]
    assert "daemon.model.tflite" in g["daemon.vision.pipeline"]
    assert "daemon.types" in g["daemon.rules.base"]  # from ..types import ...
    assert "daemon.model.preprocess" in g["converter.evaluate"]


def test_no_import_cycles_in_daemon_or_converter():
    cycle = find_cycle(graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_daemon_never_imports_the_fleet_ingest():
    g = graph()
    assert not [(a, b) for a, deps in g.items() if a.startswith("daemon") for b in deps if b.startswith("fleet")]


def test_no_stage_imports_the_runtime_or_the_composed_config():
    g = graph()
    bad = [(m, d) for m, deps in g.items() for d in deps
           if m.startswith(tuple(f"daemon.{s}" for s in STAGES))
           and (d.startswith("daemon.runtime") or d in ("daemon.config", "daemon.cli", "daemon.analyze"))]
    assert bad == []


@pytest.mark.parametrize("module", ["daemon.config", "daemon.rules", "daemon.publish.outputs"])
def test_loading_the_config_loads_no_opencv_paho_or_litert(module):
    code = (f"import sys, {module}\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('cv2', 'paho', 'ai_edge_litert', 'tflite_runtime', 'tensorflow'))\n"
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
