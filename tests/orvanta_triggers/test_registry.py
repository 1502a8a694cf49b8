"""The runnables registry: script paths resolve to modules without importing them."""

import sys

import pytest

from orvanta_triggers import registry, services


def test_example_resolves_to_module():
    """examples/echo resolves to runnables.examples.echo."""
    assert registry.module_name("examples/echo") == "runnables.examples.echo"


def test_later_package_is_searched():
    """A script missing from the first package is found in the next one (tests.runnables)."""
    assert registry.module_name("upper") == "tests.runnables.upper"


def test_unknown_path_raises():
    """A well-formed path that names no module raises UnknownScript."""
    with pytest.raises(registry.UnknownScript):
        registry.module_name("examples/no_such_script")


@pytest.mark.parametrize(
    "path",
    [
        "",
        "/examples/echo",
        "examples/echo/",
        "examples//echo",
        "examples.echo",
        "../runnables/examples/echo",
        "examples/echo.py",
        "1examples/echo",
        "examples/ech o",
        "os:system",
        None,
        3,
    ],
)
def test_malformed_path_raises(path):
    """A path that is not slash-separated identifiers raises UnknownScript."""
    with pytest.raises(registry.UnknownScript):
        registry.module_name(path)


def test_package_is_not_a_script():
    """A path naming a package (a directory), not a module, raises UnknownScript."""
    with pytest.raises(registry.UnknownScript):
        registry.module_name("examples")


@pytest.mark.parametrize("path", ["__init__", "examples/__init__", "_private", "examples/_echo"])
def test_package_modules_and_private_modules_are_not_scripts(path):
    """__init__ (the package itself, imported twice) and names starting with _ are refused, saying why."""
    with pytest.raises(registry.UnknownScript) as error:
        registry.module_name(path)
    assert "private modules such as _helpers are not scripts" in str(error.value)


def test_private_modules_are_not_listed():
    """The registry's list leaves out modules whose name starts with _."""
    scripts = registry.list_scripts()
    assert "upper" in scripts and not [path for path in scripts if path.startswith("_") or "/_" in path]


def test_trailing_newline_is_not_a_script_path():
    """A path with a trailing newline is malformed, not the script before it."""
    with pytest.raises(registry.UnknownScript):
        registry.module_name("examples/echo\n")


def test_path_below_a_module_raises():
    """A path that goes on below a module (examples/echo/main) raises UnknownScript."""
    with pytest.raises(registry.UnknownScript):
        registry.module_name("examples/echo/main")


def test_stdlib_module_is_not_a_script():
    """Only the registry's packages are searched: a stdlib module name is unknown."""
    with pytest.raises(registry.UnknownScript):
        registry.module_name("os")


def test_resolving_does_not_import(monkeypatch):
    """Resolving a script path leaves its module unimported."""
    monkeypatch.delitem(sys.modules, "tests.runnables.unimported", raising=False)
    assert registry.module_name("unimported") == "tests.runnables.unimported"
    assert registry.script_exists("unimported")
    assert "tests.runnables.unimported" not in sys.modules


def test_saving_a_trigger_does_not_import_its_script(workspace, monkeypatch):
    """Validating a trigger on save checks its script without importing it."""
    monkeypatch.delitem(sys.modules, "tests.runnables.unimported", raising=False)
    services.create_trigger(workspace=workspace, path="f/a/b", url="ws://example.org/", script_path="unimported")
    assert "tests.runnables.unimported" not in sys.modules


def test_unknown_path_below_a_module_does_not_import_it(monkeypatch):
    """A path that descends through a module (unimported/x) is refused without importing the module."""
    monkeypatch.delitem(sys.modules, "tests.runnables.unimported", raising=False)
    with pytest.raises(registry.UnknownScript):
        registry.module_name("unimported/x")
    assert "tests.runnables.unimported" not in sys.modules


def test_load_script_imports_and_returns_module():
    """load_script (workers only) returns the module with its main()."""
    module = registry.load_script("examples/echo")
    assert module.__name__ == "runnables.examples.echo" and module.main("x") == "x"


def test_list_scripts_includes_examples():
    """list_scripts names the example scripts and the test package's scripts, sorted."""
    scripts = registry.list_scripts()
    assert {
        "examples/echo",
        "examples/fail",
        "examples/json_content",
        "examples/auth_message",
        "examples/ws_url",
        "upper",
    } <= set(scripts)
    assert scripts == sorted(scripts)


def test_list_scripts_does_not_import_scripts(monkeypatch):
    """Listing scripts walks packages only; script modules stay unimported."""
    monkeypatch.delitem(sys.modules, "tests.runnables.unimported", raising=False)
    assert "unimported" in registry.list_scripts()
    assert "tests.runnables.unimported" not in sys.modules


def test_list_scripts_omits_packages():
    """Packages themselves are not listed as scripts."""
    assert "examples" not in registry.list_scripts()
