"""The layers only point down (``docs/architecture.md``, "Layers"): `make lint` runs this file.

Every module of the product belongs to one layer; an import of a module in a higher layer fails,
as does any cycle between modules, and any import of another product module inside a function
(the old way of hiding a cycle). Only ``apps.py`` (Django's ``ready``) and the ``make run``
supervisor, which imports Django code after setting it up, import inside functions.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
APPS = ("slaboard", "tickets", "policies", "dashboard")

# (layer, module patterns): a pattern ending in ".*" covers a package's modules.
LAYERS: list[tuple[str, list[str]]] = [
    (
        "0 pure time math and infrastructure",
        [
            "policies.businesstime",
            "policies.clocks",
            "policies.durations",
            "policies.timezones",
            "slaboard",
            "slaboard.settings",
            "slaboard.celery",
            "slaboard.logs",
            "slaboard.dbclock",
            "slaboard.metrics",
            "slaboard.worker_heartbeat",
        ],
    ),
    (
        "1 models",
        [
            "tickets.models",
            "tickets.signals",
            "policies.models",
            "policies.models.*",
            "dashboard.models",
            "dashboard.roles",
            "slaboard.forms",
            "*.migrations",
            "*.migrations.*",
        ],
    ),
    (
        "2 domain: projection, rules, engine, notification detection, reads",
        [
            "tickets.projection",
            "policies.engine",
            "policies.audit",
            "policies.notifications",
            "policies.notifications.rules",
            "policies.notifications.detect",
            "policies.notifications.messages",
            "dashboard.access",
            "dashboard.boards",
            "dashboard.grants",
            "slaboard.health",
        ],
    ),
    (
        "3 actions: the use cases",
        [
            "tickets.actions",
            "tickets.importer",
            "policies.actions",
            "policies.holiday_import",
            "policies.notifications.acks",
            "policies.notifications.deliver",
            "dashboard.actions",
            "dashboard.publish",
            "dashboard.convergence",
        ],
    ),
    (
        "4 delivery: views, consumers, API, admin, tasks, commands, wiring",
        [
            "*.apps",
            "*.admin",
            "*.admin.*",
            "*.views",
            "*.urls",
            "*.tasks",
            "*.management",
            "*.management.*",
            "tickets.api",
            "tickets.api.*",
            "dashboard.consumers",
            "dashboard.kiosk",
            "dashboard.routing",
            "dashboard.templatetags",
            "dashboard.templatetags.*",
            "slaboard.api",
            "slaboard.admin_site",
            "slaboard.asgi",
            "slaboard.middleware",
            "slaboard.ops",
            "slaboard.security",
            "slaboard.run",
            "slaboard.demo",
            "slaboard.simulation",
            "tickets",
            "policies",
            "dashboard",
        ],
    ),
]
FUNCTION_IMPORTS_ALLOWED = {"slaboard.run"}


def _matches(module: str, pattern: str) -> bool:
    if pattern.startswith("*."):
        inner = pattern[2:]
        if inner.endswith(".*"):
            return f".{inner[:-2]}." in f".{module}"
        return module.endswith("." + inner)
    if pattern.endswith(".*"):
        return module.startswith(pattern[:-1])
    return module == pattern


def layer_of(module: str) -> int | None:
    found = None
    for index, (_, patterns) in enumerate(LAYERS):
        if any(_matches(module, pattern) for pattern in patterns):
            found = index if found is None else min(found, index)
    return found


def product_modules() -> dict[str, Path]:
    modules: dict[str, Path] = {}
    for app in APPS:
        for path in sorted((ROOT / app).rglob("*.py")):
            parts = list(path.relative_to(ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            modules[".".join(parts)] = path
    return modules


def _imports(tree: ast.AST, module: str) -> Iterator[tuple[str, int, bool]]:
    """(imported module, line, inside a function) for every import in ``tree``."""

    def visit(node: ast.AST, in_function: bool) -> Iterator[tuple[str, int, bool]]:
        for child in ast.iter_child_nodes(node):
            nested = in_function or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            if isinstance(child, ast.Import):
                for alias in child.names:
                    yield alias.name, child.lineno, in_function
            elif isinstance(child, ast.ImportFrom):
                base = child.module or ""
                if child.level:  # relative: from .x import y
                    package = module.split(".")[: -child.level] if child.level else []
                    base = ".".join([*package, base] if base else package)
                for alias in child.names:
                    yield f"{base}.{alias.name}", child.lineno, in_function
            else:
                yield from visit(child, nested)

    yield from visit(tree, False)


def _resolve(name: str, modules: dict[str, Path]) -> str | None:
    """The product module an import names (``a.b.c`` may be module ``a.b`` + attribute c)."""
    while name:
        if name in modules:
            return name
        name = name.rpartition(".")[0]
    return None


def import_graph() -> tuple[dict[str, set[str]], list[str]]:
    """Edges between product modules, and the problems found while reading them."""
    modules = product_modules()
    graph: dict[str, set[str]] = {module: set() for module in modules}
    problems: list[str] = []
    for module, path in modules.items():
        if layer_of(module) is None:
            problems.append(f"{module}: in no layer (add it to tests/test_layers.py LAYERS)")
            continue
        tree = ast.parse(path.read_text(), str(path))
        for name, line, in_function in _imports(tree, module):
            target = _resolve(name, modules)
            if target is None or target == module:
                continue
            if module.startswith(f"{target}."):
                continue  # a module importing its own package (re-exports)
            graph[module].add(target)
            where = f"{path.relative_to(ROOT)}:{line}"
            allowed = module in FUNCTION_IMPORTS_ALLOWED or module.endswith(".apps")
            if in_function and not allowed:
                problems.append(f"{where}: imports {target} inside a function")
            mine, theirs = layer_of(module), layer_of(target)
            if mine is not None and theirs is not None and theirs > mine:
                problems.append(
                    f"{where}: {module} (layer {LAYERS[mine][0][0]}) imports {target} "
                    f"(layer {LAYERS[theirs][0][0]}, higher)"
                )
    return graph, problems


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def connect(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for other in graph.get(node, ()):
            if other not in index:
                connect(other)
                low[node] = min(low[node], low[other])
            elif other in on_stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            connect(node)
    return found


def test_every_import_points_down_a_layer_and_none_hides_in_a_function() -> None:
    _, problems = import_graph()
    assert not problems, "\n".join(problems)


def test_no_modules_import_each_other_in_a_cycle() -> None:
    graph, _ = import_graph()
    assert cycles(graph) == []


def test_the_checker_sees_an_upward_import_and_a_cycle() -> None:
    assert layer_of("tickets.models") == 1 and layer_of("dashboard.publish") == 3
    assert layer_of("policies.admin.rules") == 4 and layer_of("tickets.migrations.0001_x") == 1
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


if __name__ == "__main__":  # `make lint`: no Django needed, so a cycle cannot stop it first
    import sys

    graph, found = import_graph()
    found += [f"import cycle: {' → '.join(cycle)}" for cycle in cycles(graph)]
    print("\n".join(found) or f"layers: {len(graph)} modules, every import points down")
    sys.exit(1 if found else 0)
