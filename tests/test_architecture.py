"""The floor plan holds: wings by job, each naming its rooms, layered, with no import circle.

Every import counts, the deferred ones inside functions and the ``TYPE_CHECKING`` ones too:
a circle that only type checkers or one rarely taken path walk is still a circle an engineer
must hold in their head (docs/architecture.md, "Wings")."""

import ast
import os
import re

from helpers import ROOT

# Lower layers first: a wing imports only from wings before it (and the shared modules at the
# package's top); the entry modules (cli, options, build) may import anything.
LAYERS = [("database", "site"), ("steps",), ("results",), ("load",), ("judging",), ("reports",), ("bisect",), ("scan",)]
ENTRY_MODULES = {"cli", "options", "build"}


def modules_of(package: str) -> dict:
    """Dotted module name -> file, for every module of ``package``."""
    found = {}
    for folder, _, files in os.walk(os.path.join(ROOT, package)):
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(folder, name)
                dotted = os.path.relpath(path, ROOT)[:-3].replace(os.sep, ".")
                found[dotted.removesuffix(".__init__")] = path
    return found


def import_graph(package: str) -> dict:
    """Module -> the modules of ``package`` it imports anywhere in its file."""
    modules = modules_of(package)
    graph = {}
    for name, path in modules.items():
        here = name if path.endswith("__init__.py") else name.rsplit(".", 1)[0]
        imported = set()
        for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
            if isinstance(node, ast.Import):
                imported.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = here.split(".")[: len(here.split(".")) - node.level + 1]
                    base = ".".join(parts + ([node.module] if node.module else []))
                for alias in node.names:
                    imported.add(f"{base}.{alias.name}" if f"{base}.{alias.name}" in modules else base)
        graph[name] = {module for module in imported if module in modules and module != name}
    return graph


def circles(graph: dict) -> list:
    """Every strongly connected group of more than one module (Tarjan)."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(module):
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for other in graph[module]:
            if other not in index:
                visit(other)
                low[module] = min(low[module], low[other])
            elif other in on_stack:
                low[module] = min(low[module], index[other])
        if low[module] == index[module]:
            group = []
            while not group or group[-1] != module:
                group.append(stack.pop())
                on_stack.discard(group[-1])
            if len(group) > 1:
                found.append(sorted(group))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    return found


def wing_of(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if len(parts) > 2 or (len(parts) == 2 and os.path.isdir(os.path.join(ROOT, *parts))) else None


def test_no_module_of_the_package_is_in_an_import_circle():
    assert circles(import_graph("moodleload")) == []


def test_no_module_of_the_simulated_site_is_in_an_import_circle():
    assert circles(import_graph("sim")) == []


def test_a_circle_is_found_where_there_is_one():
    assert circles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def is_entry(module: str) -> bool:
    return module.count(".") == 1 and module.split(".")[1] in ENTRY_MODULES


def test_each_wing_imports_only_the_wings_below_it_and_the_shared_modules():
    layer = {wing: number for number, wings in enumerate(LAYERS) for wing in wings}
    upward = []
    for module, imported in import_graph("moodleload").items():
        if is_entry(module):
            continue
        for other in imported:
            if is_entry(other):
                upward.append((module, other))
            elif wing_of(other) is not None and wing_of(other) != wing_of(module):
                if wing_of(module) is None or layer[wing_of(other)] >= layer[wing_of(module)]:
                    upward.append((module, other))  # a shared module or a lower wing reaching up
    assert upward == []


def test_every_wing_is_in_a_layer_and_the_package_map():
    wings = {wing_of(module) for module in modules_of("moodleload")} - {None}
    assert wings == {wing for layer in LAYERS for wing in layer}
    package_map = ast.get_docstring(ast.parse(open(os.path.join(ROOT, "moodleload", "__init__.py")).read()))
    assert all(f"``{wing}``" in package_map for wing in wings), package_map


def test_each_wings_init_names_exactly_its_rooms():
    module_names = {module.split(".")[-1] for module in modules_of("moodleload")}
    for wing in {wing_of(module) for module in modules_of("moodleload")} - {None}:
        folder = os.path.join(ROOT, "moodleload", wing)
        rooms = {name[:-3] for name in os.listdir(folder) if name.endswith(".py") and name != "__init__.py"}
        docstring = ast.get_docstring(ast.parse(open(os.path.join(folder, "__init__.py")).read()))
        assert docstring, wing
        named = set(re.findall(r"``(\w+)``", docstring)) & module_names
        assert rooms <= named, f"{wing}: rooms not named: {sorted(rooms - named)}"
        assert named - rooms == set(), f"{wing}: names rooms it does not have: {sorted(named - rooms)}"


def test_only_needs_and_build_work_out_a_path_from_their_own_file():
    # A path built from __file__ moves when its module moves into a wing: the --processes
    # children and the scan once looked for the toolkit inside moodleload/ after such a move.
    allowed = {"moodleload.needs", "moodleload.build"}
    offenders = [name for name, path in modules_of("moodleload").items()
                 if name not in allowed and "__file__" in open(path, encoding="utf-8").read()]
    assert offenders == []


def test_the_import_root_holds_the_package_its_requirements_and_the_examples():
    from moodleload.needs import IMPORT_ROOT, REQUIREMENTS

    assert os.path.samefile(IMPORT_ROOT, ROOT)
    assert os.path.isfile(os.path.join(IMPORT_ROOT, "moodleload", "__init__.py"))
    assert os.path.isfile(REQUIREMENTS)
    assert os.path.isfile(os.path.join(IMPORT_ROOT, "examples", "bisect-step.sh"))


def test_no_module_of_the_package_is_over_500_lines():
    # docs/architecture.md promises rooms small enough to read whole; a module past it splits.
    long = {name: count for name, path in modules_of("moodleload").items()
            if (count := len(open(path, encoding="utf-8").read().splitlines())) > 500}
    assert long == {}
