"""The package's import structure: no cycle, no other module's private name, and each layer imports only below it.

Every import is counted, lazy ones inside functions included (a cycle closed by a lazy import is still a cycle);
imports under ``if TYPE_CHECKING:`` are not (they never run)."""

from __future__ import annotations

import ast
from pathlib import Path

import networkx as nx
import pytest

ROOT = Path(__file__).resolve().parent.parent / "cfcompile"

# Bottom up; a unit (top-level module or package) may import its own modules and the units of lower layers only.
LAYERS = [
    {"_compat", "config"},      # torch-version fixes; options and sizes
    {"pinned"},                 # pinned host memory, UVA views, alignment
    {"offload"},                # the host store
    {"costmodel"},              # profiles, graph costs, the two-stream model, topology
    {"plan"},                   # the plan IR, layout, search
    {"runtime", "report"},      # what compiled code calls; dumps and plots (neither imports the other)
    {"compiler"},               # the backend, passes, graph lifecycle
    {"presets", "tiny_pipelines"},   # diffusers model presets; tiny pipelines built from configs (tests, examples)
    {"planning", "pipelines", "full_pipelines"},   # plan_model; apply / restore; full-size random pipelines
    {"elastic"},                # sequence parallelism and serving (its cost tables come from plan_model)
    {"__init__"},               # the public API
    {"cli"},
    {"__main__"},
]
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}


def _module(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module(p): p for p in sorted(ROOT.rglob("*.py"))}


def _imports(name: str, path: Path, known: set[str]) -> list[tuple[str, str]]:
    """(imported module, imported name or "") for every cfcompile import in ``path``."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for block in ast.walk(tree) if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(
        block.test) for stmt in block.body for n in ast.walk(stmt)}   # annotations only: never imported at run time
    out = []
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue
        if isinstance(node, ast.Import):
            out += [(a.name, "") for a in node.names if a.name.split(".")[0] == "cfcompile"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            if mod.split(".")[0] != "cfcompile":
                continue
            for a in node.names:
                sub = f"{mod}.{a.name}"
                out.append((sub, "") if sub in known else (mod, a.name))
    return out


def _graph() -> tuple[nx.DiGraph, list[tuple[str, str, str]]]:
    mods = _modules()
    g = nx.DiGraph()
    g.add_nodes_from(mods)
    names = []
    for name, path in mods.items():
        for mod, what in _imports(name, path, set(mods)):
            while mod not in mods and "." in mod:   # ``import cfcompile.x.y`` of a name
                mod = mod.rpartition(".")[0]
            if mod != name:
                g.add_edge(name, mod)
                names.append((name, mod, what))
    return g, names


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def test_no_import_cycle():
    g, _ = _graph()
    cycles = list(nx.simple_cycles(g))
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(c + c[:1]) for c in cycles[:20])


def test_no_private_name_across_modules():
    _, names = _graph()
    bad = [f"{a} imports {what} from {b}" for a, b, what in names if what.startswith("_") and what != "__version__"]
    assert not bad, "\n".join(bad)


def test_every_unit_has_a_layer():
    assert {_unit(m) for m in _modules()} <= set(LAYER)


def test_layers_import_only_below():
    g, _ = _graph()
    bad = []
    for a, b in g.edges:
        ua, ub = _unit(a), _unit(b)
        if ua == ub or ub == "__init__" and b == "cfcompile" and ua == "__init__":
            continue
        if not LAYER[ub] < LAYER[ua]:
            bad.append(f"{a} (layer {LAYER[ua]}, {ua}) imports {b} (layer {LAYER[ub]}, {ub})")
    assert not bad, "\n".join(sorted(bad))


@pytest.mark.parametrize("unit", ["runtime", "report", "plan", "costmodel"])
def test_lower_layers_import_no_compiler(unit):
    g, _ = _graph()
    assert not [(a, b) for a, b in g.edges if _unit(a) == unit and _unit(b) == "compiler"]
