"""The package's shape, read with `ast` (no import runs): every import goes down the layers
(crm_migration/__init__.py says which), no import circle between modules, at module level or inside a
function; modules and functions stay small enough to read, and the few that are not yet are named here,
so the list can only shrink."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "plugins" / "crm_migration"
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
# not yet split (issue 15): each may not grow past its size today
# the layers, bottom first: a module may import its own layer's modules and those of the layers below
LAYERS = ("model", "source", "rules", "matching", "stages", "checks", "reports", "ops", "dag")
TOO_LONG_MODULES = {"crm_migration.matching.linkage": 754}
TOO_LONG_FUNCTIONS = {"crm_migration.matching.dedupe.cluster_scored": 65, "crm_migration.dag.tasks.run_delta_sync": 67,
                      "crm_migration.matching.partitioned.prepare": 80, "crm_migration.ops.delta.run_dedupe_delta": 85,
                      "crm_migration.reports.report_html.render_html": 85, "crm_migration.stages.run.run_extract": 89}


def _modules() -> dict[str, Path]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def import_graph() -> dict[str, set[str]]:
    """Module -> the package's modules it imports, wherever the import statement is."""
    modules = _modules()
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for name, path in modules.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            targets: list[str] = []
            if isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                targets = [f"{node.module}.{a.name}" for a in node.names] + [node.module]
            elif isinstance(node, ast.ImportFrom):  # relative
                base = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
                base = base.rsplit(".", node.level - 1)[0] if node.level > 1 else base
                mod = f"{base}.{node.module}" if node.module else base
                targets = [f"{mod}.{a.name}" for a in node.names] + [mod]
            elif isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            hit = next((t for t in targets if t in modules), None)  # the most specific module named
            if hit and hit != name:
                graph[name].add(hit)
    return graph


def circles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in graph:
        if v not in index:
            visit(v)
    return found


def test_no_import_circle():
    graph = import_graph()
    assert len(graph) > 20 and any(graph.values()), "the walk found the package"
    assert circles(graph) == [], "modules that import each other (directly or round a circle)"


def _layer(module: str) -> int:
    parts = module.split(".")
    assert len(parts) >= 3 and parts[1] in LAYERS, f"{module} is in no layer: put it in one of {LAYERS}"
    return LAYERS.index(parts[1])


def test_imports_go_down_the_layers_only():
    graph = import_graph()
    upward = sorted(f"{m} -> {t}" for m, targets in graph.items() if m != "crm_migration"
                    for t in targets if _layer(t) > _layer(m))
    assert upward == [], "a layer imports one above it: move the shared part down"


def test_every_layer_says_what_lives_there_and_what_it_may_import():
    for layer in LAYERS:
        doc = ast.get_docstring(ast.parse((PACKAGE / layer / "__init__.py").read_text(encoding="utf-8"))) or ""
        assert len(doc) > 80 and ("May import" in doc or "Imports nothing" in doc), layer


def test_the_circle_finder_finds_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_modules_and_functions_stay_readable():
    too_long, functions = {}, {}
    for name, path in _modules().items():
        text = path.read_text(encoding="utf-8")
        lines = len(text.splitlines())
        if lines > TOO_LONG_MODULES.get(name, MAX_MODULE_LINES):
            too_long[name] = lines
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = node.end_lineno - node.lineno + 1
                doc = ast.get_docstring(node) or ""
                if n > TOO_LONG_FUNCTIONS.get(f"{name}.{node.name}", MAX_FUNCTION_LINES) and "long because" not in doc:
                    functions[f"{name}.{node.name}"] = n
    assert too_long == {}, f"modules over {MAX_MODULE_LINES} lines: split them"
    assert functions == {}, f"functions over {MAX_FUNCTION_LINES} lines: split them, or say why ('long because')"


def test_no_test_module_imports_another():
    tests = PACKAGE.parents[1] / "tests"
    found = []
    for path in tests.rglob("test_*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            found += [f"{path.relative_to(tests)}: {n}" for n in names if n.split(".")[0].startswith("test_")]
    assert len(list(tests.rglob("test_*.py"))) > 20
    assert found == [], "shared helpers belong in tests/helpers.py or conftest.py"
