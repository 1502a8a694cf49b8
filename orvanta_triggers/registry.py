"""The runnables registry: script paths such as `examples/echo` resolve to modules
in the packages listed by ORVANTA_RUNNABLE_PACKAGES.

Resolution only reads package metadata (`importlib.util.find_spec`), so a script is
never imported before a worker runs it; unknown paths are never imported at all.
"""

import ast
import functools
import importlib
import importlib.util
import pkgutil
import re

from orvanta_triggers import conf

# Segments start with a letter: `__init__` is a package's own module (importing it as
# a script imports the package a second time) and `_name` is private by convention.
SCRIPT_PATH_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*(/[A-Za-z][A-Za-z0-9_]*)*\Z")


class UnknownScript(LookupError):
    """The script path is malformed or names no module in the registry."""


def _find_module(package, segments):
    """The spec of `package.seg1.seg2...`, descending only through packages."""
    name = package
    spec = importlib.util.find_spec(name)
    for segment in segments:
        if spec is None or spec.submodule_search_locations is None:
            return None
        name = f"{name}.{segment}"
        spec = importlib.util.find_spec(name)
    return spec


@functools.lru_cache(maxsize=4096)
def module_name(script_path):
    """The module that implements `script_path`, or raise UnknownScript. Found paths
    are remembered (workers resolve one per job); a miss is looked up again next time."""
    if not isinstance(script_path, str) or not SCRIPT_PATH_RE.match(script_path):
        raise UnknownScript(
            f"'{script_path}' is not a script path: use segments of letters, digits and _ separated by /, "
            "each starting with a letter (packages' __init__ and private modules such as _helpers are not scripts)"
        )
    segments = script_path.split("/")
    for package in conf.runnable_packages():
        try:
            spec = _find_module(package, segments)
        except (ImportError, ValueError):
            spec = None
        if spec is not None and spec.submodule_search_locations is None:
            return spec.name
    raise UnknownScript(f"no script '{script_path}' in {', '.join(conf.runnable_packages())}")


def script_exists(script_path):
    try:
        module_name(script_path)
    except UnknownScript:
        return False
    return True


def load_script(script_path):
    """Import the script's module (workers only); it must define main()."""
    module = importlib.import_module(module_name(script_path))
    if not callable(getattr(module, "main", None)):
        raise UnknownScript(f"script '{script_path}' defines no main()")
    return module


def list_scripts():
    """Every script path in the registry, first package wins, sorted."""
    found = {}
    for package in conf.runnable_packages():
        try:
            root = importlib.import_module(package)
        except ImportError:
            continue
        for info in pkgutil.walk_packages(root.__path__, prefix=f"{package}."):
            if info.ispkg:
                continue
            path = info.name[len(package) + 1 :].replace(".", "/")
            if SCRIPT_PATH_RE.match(path):
                found.setdefault(path, info.name)
    return sorted(found)


def describe_script(script_path):
    """{"path", "has_preprocessor", "parameters"} read from the script's source with
    `ast`, so listing the registry imports (and runs) nothing."""
    spec = importlib.util.find_spec(module_name(script_path))
    with open(spec.origin, encoding="utf-8") as source:
        tree = ast.parse(source.read(), filename=spec.origin)
    functions = {node.name: node for node in tree.body if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}
    main = functions.get("main")
    return {
        "path": script_path,
        "has_preprocessor": "preprocessor" in functions,
        "parameters": _parameters(main) if main else [],
    }


def _parameters(function):
    args = function.args
    positional = args.posonlyargs + args.args
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    described = []
    for arg, default in [*zip(positional, defaults), *zip(args.kwonlyargs, args.kw_defaults)]:
        entry = {
            "name": arg.arg,
            "type": ast.unparse(arg.annotation) if arg.annotation else None,
            "required": default is None,
        }
        if default is not None:
            try:
                entry["default"] = ast.literal_eval(default)
            except ValueError:
                entry["default"] = ast.unparse(default)
        described.append(entry)
    return described
