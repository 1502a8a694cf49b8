"""The import graph of the app and the listener, read from their source: layers point
one way (listener -> app -> wire), nothing imports this repo's project (config), the
listener imports no worker module, and no module imports itself back through others."""

import ast
from pathlib import Path

from django.conf import settings

PACKAGES = ("orvanta_triggers", "listener")
WORKER_SIDE = {
    "orvanta_triggers.tasks",
    "orvanta_triggers.jobrunner",
    "orvanta_triggers.jobanswers",
    "orvanta_triggers.jobrecords",
    "orvanta_triggers.workerprocess",
    "orvanta_triggers.execution",
}


def module_files():
    root = Path(settings.BASE_DIR)
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            if "migrations" in path.parts:
                continue
            parts = path.relative_to(root).with_suffix("").parts
            yield ".".join(parts[:-1] if parts[-1] == "__init__" else parts), path


MODULES = dict(module_files())


def imported_names(path):
    """Every module name `path` imports, at any depth of its code (lazy imports count)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            submodules = [f"{node.module}.{alias.name}" for alias in node.names]
            known = [name for name in submodules if name in MODULES]
            # `from package import submodule` depends on the submodule, not on the package.
            names.update(known if len(known) == len(submodules) else [node.module, *known])
    return names


def own_module(name):
    """The module of ours `name` is (or is inside), or None."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    module: {own_module(name) for name in imported_names(path) if own_module(name) not in (None, module)}
    for module, path in MODULES.items()
}
IMPORTS = {module: imported_names(path) for module, path in MODULES.items()}


def test_no_module_imports_this_repos_project():
    """Neither the app nor the listener imports config (the example project): any project can install them."""
    offenders = {m: sorted(n for n in names if n.split(".")[0] == "config") for m, names in IMPORTS.items()}
    assert {m: names for m, names in offenders.items() if names} == {}


def test_the_app_never_imports_the_listener():
    """Dependencies point one way: the listener imports the app, the app never the listener."""
    offenders = {
        m: sorted(dep for dep in deps if dep.split(".")[0] == "listener")
        for m, deps in GRAPH.items()
        if m.split(".")[0] == "orvanta_triggers"
    }
    assert {m: deps for m, deps in offenders.items() if deps} == {}


def test_the_listener_imports_no_worker_module():
    """The listener reaches workers through the wire formats only, never the modules that run jobs."""
    offenders = {m: sorted(deps & WORKER_SIDE) for m, deps in GRAPH.items() if m.split(".")[0] == "listener"}
    assert {m: deps for m, deps in offenders.items() if deps} == {}


def test_the_wire_module_imports_only_the_standard_library():
    """orvanta_triggers.wire imports neither Django nor the app, so settings modules and every process may import it."""
    assert IMPORTS["orvanta_triggers.wire"] <= {"base64", "json", "typing"}


def test_there_is_no_import_circle():
    """No module imports itself back through others (Tarjan's strongly connected components of the graph)."""
    index, low, stack, on_stack, circles = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for dep in GRAPH[module]:
            if dep not in index:
                visit(dep)
                low[module] = min(low[module], low[dep])
            elif dep in on_stack:
                low[module] = min(low[module], index[dep])
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

    for module in GRAPH:
        if module not in index:
            visit(module)
    assert circles == []
