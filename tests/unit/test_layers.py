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
# modules not yet split, each may not grow past its size today (none left)
# the layers, bottom first: a module may import its own layer's modules and those of the layers below
LAYERS = ("model", "source", "rules", "matching", "stages", "checks", "reports", "ops", "dag")
TOO_LONG_MODULES: dict[str, int] = {}
TOO_LONG_FUNCTIONS: dict[str, int] = {}  # a longer function says why in its docstring ('long because')


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
                doc = (ast.get_docstring(node) or "").lower()
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


MAX_INLINE_SQL_LINES = 3


def test_statements_longer_than_a_few_lines_live_in_include_sql():
    """sa.text(...) over a literal spanning more than three source lines belongs in include/sql/<area>/,
    read by name (crm_migration.model.db.sql)."""
    long_ones = []
    for name, path in _modules().items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", None) == "text" and node.args:
                arg = node.args[0]
                if isinstance(arg, ast.Constant | ast.JoinedStr | ast.BinOp) and \
                        arg.end_lineno - arg.lineno + 1 > MAX_INLINE_SQL_LINES:
                    long_ones.append(f"{name}:{arg.lineno}")
    assert long_ones == [], "move these statements to include/sql/<area>/*.sql"


def test_the_sql_spells_the_row_outcomes_as_outcomes_py_defines_them():
    """The row outcomes are defined once (crm_migration.model.outcomes); the SQL that stores or reads a fate
    spells them as literals: each such literal must be one of them (or a failure kind of the reconciliation,
    defined beside them), and the ledger's CHECK lists them all."""
    import re

    from crm_migration.checks.reconcile import FATES  # the outcomes and the reconciliation's failure kinds
    from crm_migration.model.outcomes import ROW_OUTCOMES

    sql_dir = PACKAGE.parents[1] / "include" / "sql"
    ddl = (sql_dir / "ddl" / "create_migration.sql").read_text(encoding="utf-8")
    check = re.search(r"fate\s+text NOT NULL CHECK \(fate IN \(([^)]*)\)\)", ddl)
    assert check and tuple(re.findall(r"'(\w+)'", check.group(1))) == ROW_OUTCOMES
    used = set()
    for path in sql_dir.rglob("*.sql"):
        text = path.read_text(encoding="utf-8")
        used |= set(re.findall(r"fate\s*=\s*'(\w+)'", text)) | set(re.findall(r"THEN '(\w+)'", text)) \
            if "fate" in text or "classify" in path.name else set()
    assert set(ROW_OUTCOMES) <= used <= set(FATES), used - set(FATES)
