"""The shape of admin/: the rules of docs/patterns.md "Where code lives", checked on the source.

The import graph is read with ``ast`` from every module under admin/, imports at the top AND inside
functions (an import inside a function is a circle put off until it runs, not a circle gone). Imports
under ``if TYPE_CHECKING:`` never run and are left out. ``from package import name`` counts as an import
of ``package.name`` when that is a module, else of ``package``. A module's implicit import of its parent
packages is left out (every module would otherwise sit in a circle with ``admin/__init__.py``, whose
``create_app`` imports the views).
"""

from __future__ import annotations

import ast
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ADMIN = ROOT / "admin"

# Folders that may hold more than MAX_MODULES modules, and why.
MAX_MODULES = 12
TOO_BIG_ALLOWED = {
    # admin/ itself: the ground floor (config, db utilities, money, time, listing, the gateway, ...), each
    # module small and imported from everywhere; splitting it would only add a level to every import.
    "admin",
    # admin/views: one blueprint per staff page, mirroring the templates' folders; a flat list is what
    # register_blueprints walks.
    "admin/views",
    # admin/cli mirrors admin/views: one module per command group, plus support.py.
    "admin/cli",
}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict[str, Path]:
    return {module_name(p): p for p in sorted(ADMIN.rglob("*.py"))}


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imports(tree: ast.AST):
    """Every import statement that can run (those under ``if TYPE_CHECKING:`` cannot)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child):
                stack.extend(child.orelse)
                continue
            if isinstance(child, ast.Import | ast.ImportFrom):
                yield child
            stack.append(child)


def _statements(name: str, path: Path):
    """(base, [names]) for each import that can run; ``import x.y`` is ("x.y", [])."""
    tree = ast.parse(path.read_text(), str(path))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in _imports(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, []
            continue
        base = node.module or ""
        if node.level:
            anchor = package.split(".")
            anchor = anchor[: len(anchor) - (node.level - 1)]
            base = ".".join(anchor + ([base] if base else []))
        yield base, [alias.name for alias in node.names if alias.name != "*"]


def imported_names(name: str, path: Path) -> set[str]:
    """Dotted names this module imports (outside admin too: ``stripe``, ``flask``, ...)."""
    found: set[str] = set()
    for base, names in _statements(name, path):
        found.add(base)
        found.update(f"{base}.{n}" for n in names)
    return found


def graph() -> dict[str, set[str]]:
    """Module -> the admin modules it imports: ``from package import name`` imports ``package.name`` when
    that is a module, else ``package`` (for the name it defines)."""
    mods = modules()
    edges: dict[str, set[str]] = {}
    for name, path in mods.items():
        targets = set()
        for base, names in _statements(name, path):
            for n in names or [None]:
                if n is not None and f"{base}.{n}" in mods:
                    targets.add(f"{base}.{n}")
                elif base in mods:
                    targets.add(base)
        targets.discard(name)
        edges[name] = targets
    return edges


def strongly_connected(edges: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan: the groups of modules that import each other (directly or round a circle)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    groups: list[list[str]] = []
    counter = 0

    def visit(start: str) -> None:
        nonlocal counter
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        groups.append(sorted(group))

    for node in sorted(edges):
        if node not in index:
            visit(node)
    return groups


def one_circle(edges: dict[str, set[str]], group: list[str]) -> list[str]:
    """A shortest circle through the group's first module, to show in a failure."""
    members = set(group)
    start = group[0]
    paths = {start: [start]}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for child in sorted(edges[node] & members):
            if child == start:
                return paths[node] + [start]
            if child not in paths:
                paths[child] = paths[node] + [child]
                queue.append(child)
    return group


def circles() -> list[str]:
    edges = graph()
    return [
        " -> ".join(one_circle(edges, g)) + f"   ({len(g)} modules: {', '.join(g)})"
        for g in strongly_connected(edges)
    ]


def importers_of(prefixes: tuple[str, ...], *, within: str = "admin") -> list[str]:
    """``module imports name`` for every module under ``within`` importing a name under one of ``prefixes``."""
    found = []
    for name, path in modules().items():
        if not (name == within or name.startswith(within + ".")):
            continue
        for imported in sorted(imported_names(name, path)):
            if any(imported == p or imported.startswith(p + ".") for p in prefixes):
                found.append(f"{name} imports {imported}")
    return found


# -- the rules ------------------------------------------------------------------------------------


def test_no_import_circles():
    found = circles()
    assert not found, "import circles in admin/ (imports inside functions included):\n" + "\n".join(found)


def test_only_the_gateway_imports_stripe():
    found = [line for line in importers_of(("stripe",)) if not line.startswith("admin.stripe_gateway ")]
    assert not found, "\n".join(found)


def test_views_models_and_template_helpers_never_reach_the_gateway():
    found = []
    for within in (
        "admin.views",
        "admin.models",
        "admin.forms",
        "admin.htmx",
        "admin.charts",
        "admin.listing",
    ):
        found += importers_of(("admin.stripe_gateway", "stripe"), within=within)
    assert not found, "the gateway's errors are translated by the services (admin.errors):\n" + "\n".join(
        found
    )


def test_models_never_import_services():
    found = importers_of(
        ("admin.services", "admin.webhooks", "admin.worker", "admin.views", "admin.cli"),
        within="admin.models",
    )
    assert not found, "\n".join(found)


def test_errors_is_the_ground_floor():
    found = [
        imported
        for imported in imported_names("admin.errors", ADMIN / "errors.py")
        if imported == "admin" or imported.startswith("admin.")
    ]
    assert not found, f"admin/errors.py imports {found}"


def test_services_never_import_the_runtime_views_or_cli():
    found = importers_of(("admin.worker", "admin.views", "admin.cli"), within="admin.services")
    assert not found, "\n".join(found)


def test_the_pipeline_never_imports_the_runtime():
    found = importers_of(("admin.worker", "admin.views", "admin.cli"), within="admin.webhooks")
    assert not found, "\n".join(found)


def test_no_folder_holds_more_than_a_dozen_modules():
    per_folder: dict[str, list[str]] = defaultdict(list)
    for path in ADMIN.rglob("*.py"):
        if path.name != "__init__.py":
            per_folder[str(path.parent.relative_to(ROOT))].append(path.name)
    crowded = {
        folder: len(names)
        for folder, names in per_folder.items()
        if len(names) > MAX_MODULES and folder not in TOO_BIG_ALLOWED
    }
    assert not crowded, f"folders over {MAX_MODULES} modules: {crowded}"


# -- the checker itself (each rule must be able to fail) -----------------------------------------------


def test_the_checker_finds_a_circle_and_function_level_imports(tmp_path):
    edges = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    groups = strongly_connected(edges)
    assert groups == [["a", "b", "c"]]
    assert one_circle(edges, groups[0]) == ["a", "b", "c", "a"]
    src = tmp_path / "m.py"
    src.write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import hidden\n"
        "def f():\n    from admin.services.core import jobs\n    import stripe\n"
    )
    names = imported_names("admin.x.m", src)
    assert {"admin.services.core.jobs", "stripe"} <= names
    assert "hidden" not in names
