"""The package's layers, checked from the source: imports point downward only, no module imports
another that imports it back, and the torch-free layers never name torch (docs/architecture.md)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

import ilsvrc

PACKAGE = Path(ilsvrc.__file__).parent

# Bottom to top. A module may import its own layer and the layers below it, never one above.
LAYERS = ["errors", "networks", "analysis", "nn", "tracing", "training", "pictures", "cli"]
TORCH_FREE = ("networks", "analysis")  # not even inside a function
HEAVY = ("torch", "torchvision", "numpy", "matplotlib", "PIL", "safetensors")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def layer_of(module: str) -> int:
    """ilsvrc.training.loop -> the index of 'training'; the package itself and __main__ sit on top."""
    parts = module.split(".")
    if len(parts) == 1 or parts[1] in ("__main__",):
        return len(LAYERS)
    return LAYERS.index(parts[1])


def imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module, line) of every import in the file, also those inside functions.

    `from . import x` names the module `x` when `x` is one (a submodule file or package)."""
    tree = ast.parse(path.read_text())
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((target, node.lineno))
            for alias in node.names:
                sub = f"{target}.{alias.name}"
                where = PACKAGE.parent / Path(*sub.split("."))
                if where.with_suffix(".py").exists() or (where / "__init__.py").exists():
                    found.append((sub, node.lineno))
    return found


SOURCES = sorted(PACKAGE.rglob("*.py"))


def test_every_module_belongs_to_a_layer() -> None:
    for path in SOURCES:
        module = module_name(path)
        assert layer_of(module) <= len(LAYERS), module


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: module_name(p))
def test_imports_point_downward_only(path: Path) -> None:
    source = module_name(path)
    upward = [
        f"{source} (layer {layer_of(source)}) imports {target} (layer {layer_of(target)}) at line {line}"
        for target, line in imports(path)
        if target.startswith("ilsvrc.") and layer_of(target) > layer_of(source)
    ]
    assert not upward, "\n".join(upward)


def test_no_import_cycles() -> None:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        source = module_name(path)
        graph[source] = {
            t for t, _ in imports(path) if t.startswith("ilsvrc.") and t != source and t in _modules()
        }
    # a package's __init__ re-exporting its own modules is not a cycle of theirs
    for source, targets in graph.items():
        graph[source] = {t for t in targets if not source.startswith(t + ".")}
    cycles = []
    state: dict[str, int] = {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                cycles.append(" -> ".join(trail[trail.index(nxt) :] + [node, nxt]))
            elif nxt not in state:
                visit(nxt, trail + [node])
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not cycles, "\n".join(cycles)


def _modules() -> set[str]:
    return {module_name(p) for p in SOURCES}


@pytest.mark.parametrize("path", [p for p in SOURCES if layer_of(module_name(p)) < len(LAYERS)
                                  and LAYERS[layer_of(module_name(p))] in TORCH_FREE],
                         ids=lambda p: module_name(p))  # fmt: skip
def test_the_torch_free_layers_never_name_torch(path: Path) -> None:
    named = [f"{t} at line {line}" for t, line in imports(path) if t.split(".")[0] in HEAVY]
    assert not named, f"{module_name(path)} imports " + ", ".join(named)


def test_the_analysis_and_its_tables_run_without_torch() -> None:
    code = (
        "import sys, ilsvrc\n"
        "from ilsvrc.analysis import render\n"
        "report = ilsvrc.analyze(ilsvrc.get_spec('vgg16'), batch=8)\n"
        "render.render(render.summary_table(report, derive=True), 'text')\n"
        "render.dump_json(render.summary_json(report))\n"
        "ilsvrc.compare(report, ilsvrc.analyze(ilsvrc.get_spec('vgg19')))\n"
        "heavy = sorted(m for m in sys.modules if m.split('.')[0] in {'torch', 'torchvision', 'numpy'})\n"
        "print(heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]", done.stdout
