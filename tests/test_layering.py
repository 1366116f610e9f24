"""The shape of src/, read with ast: no import cycles, nothing imports the command line but `python -m dreamdd`,
no module imports one on a higher layer (README's layout, top to bottom; imports under TYPE_CHECKING count not),
and no function longer than a screen."""
import ast
from pathlib import Path

import pytest

import dreamdd

ROOT = Path(dreamdd.__file__).resolve().parent
# Layers, top first; a module may import its own layer and the ones below. The first matching prefix wins.
LAYERS = [
    ["dreamdd.__main__", "dreamdd.cli"],
    ["dreamdd.experiments"],                  # the library of the benchmarks: a client of the API
    ["dreamdd.api"],
    ["dreamdd.budget", "dreamdd.coreset", "dreamdd.planner", "dreamdd.report"],
    ["dreamdd.engine"],
    ["dreamdd.methods", "dreamdd.experts"],
    ["dreamdd.evaluation", "dreamdd.runs", "dreamdd.sources", "dreamdd.artifact", "dreamdd.plots",
     "dreamdd.tables"],
    ["dreamdd.io", "dreamdd.selection", "dreamdd.synthetic", "dreamdd.training", "dreamdd.image_optimizer",
     "dreamdd.zca"],
    ["dreamdd.models", "dreamdd.data", "dreamdd.augment", "dreamdd.config", "dreamdd.protocols",
     "dreamdd.devices", "dreamdd.precision", "dreamdd.determinism", "dreamdd.compilation", "dreamdd.distributed"],
    ["dreamdd.registry", "dreamdd.errors", "dreamdd.seeding", "dreamdd.faults", "dreamdd"],
]


def _modules() -> dict[str, Path]:
    found = {}
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = _modules()


def _imports(module: str) -> set[str]:
    path = MODULES[module]
    tree = ast.parse(path.read_text())
    typing_only = {id(n) for node in ast.walk(tree) if isinstance(node, ast.If)
                   and "TYPE_CHECKING" in ast.unparse(node.test) for n in ast.walk(node)}
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    out = set()
    for node in ast.walk(tree):
        if id(node) in typing_only or not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            base = package.split(".")[:len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            targets = [f"{target}.{a.name}" if f"{target}.{a.name}" in MODULES else target for a in node.names]
        out |= {t for t in targets if t in MODULES and t != module}
    return out


GRAPH = {module: _imports(module) for module in MODULES}


def _layer(module: str) -> int:
    for rank, prefixes in enumerate(LAYERS):
        if any(module == p or module.startswith(p + ".") for p in prefixes if p != "dreamdd") or module == "dreamdd" \
                and "dreamdd" in prefixes:
            return rank
    raise AssertionError(f"{module} has no layer in tests/test_layering.py (and in README's layout): give it one")


def test_every_module_has_a_layer():
    for module in MODULES:
        _layer(module)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_no_module_imports_a_higher_layer(module):
    upward = sorted(t for t in GRAPH[module] if _layer(t) < _layer(module))
    assert not upward, f"{module} imports {upward}, above it"


def test_nothing_imports_the_command_line():
    assert sorted(m for m, targets in GRAPH.items() if "dreamdd.cli" in targets) == ["dreamdd.__main__"]


def test_no_import_cycles():
    state: dict[str, int] = {}            # 1: on the current path, 2: done

    def visit(module: str, path: list[str]) -> None:
        state[module] = 1
        for target in sorted(GRAPH[module]):
            if state.get(target) == 1:
                raise AssertionError("import cycle: " + " -> ".join(path[path.index(target):] + [target]))
            if target not in state:
                visit(target, path + [target])
        state[module] = 2

    for module in sorted(MODULES):
        if module not in state:
            visit(module, [module])


def test_a_cycle_and_an_upward_import_would_be_caught():
    assert _layer("dreamdd.api") < _layer("dreamdd.engine.distiller") < _layer("dreamdd.methods.idc")
    assert "dreamdd.methods" in GRAPH["dreamdd.engine.distiller"]       # the reader sees real imports
    assert "dreamdd.engine.distiller" not in GRAPH["dreamdd.methods.base"]    # and a method sees no loop


LONGEST = 60     # lines a function of src/ may span, so that each reads at a glance


def test_no_function_is_longer_than_a_screen():
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and \
                    node.end_lineno - node.lineno + 1 > LONGEST:
                long.append(f"{module}.{node.name} ({node.end_lineno - node.lineno + 1} lines)")
    assert not long, f"functions over {LONGEST} lines: {long}"
