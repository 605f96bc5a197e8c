"""Layers run one way: no module of metacrm imports from a layer above its own."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "metacrm"

#: Bottom to top; a module may import from its own layer or any layer before it.
LAYERS = ("errors", "types", "metadata", "formula", "checks", "runtime", "ui_schema", "platform")
#: Modules at the package's top level that sit in the bottom layer with errors and types.
BOTTOM = {"errors": 0, "types": 0, "i18n": 0, "__init__": 0}


def rank(module: str) -> int | None:
    """The layer of a dotted `metacrm.x.y` module name, or None outside metacrm."""
    parts = module.split(".")
    if parts[0] != "metacrm":
        return None
    if len(parts) == 1:
        return 0
    head = parts[1]
    if head in BOTTOM:
        return BOTTOM[head]
    if head in LAYERS:
        return LAYERS.index(head)
    raise AssertionError(f"{module}: metacrm.{head} belongs to no layer; add it to LAYERS")


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported(tree: ast.AST, here: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, module) of every import anywhere in the tree, functions included."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base if is_package else base[:-1]
                base = base[: len(base) - (node.level - 1)]
                source = ".".join([*base, *([node.module] if node.module else [])])
            else:
                source = node.module or ""
            # `from metacrm import formula` imports the layer `formula`.
            found += [(node.lineno, f"{source}.{alias.name}") for alias in node.names]
    return found


def upward_imports() -> list[str]:
    problems = []
    for path in sorted(PACKAGE.rglob("*.py")):
        here = module_name(path)
        own = rank(here)
        assert own is not None
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for line, target in imported(tree, here, path.name == "__init__.py"):
            other = _rank_of_import(target)
            if other is not None and other > own:
                where = path.relative_to(PACKAGE.parent)
                problems.append(
                    f"{where}:{line}: {here} ({LAYERS[own]}) imports {target} ({LAYERS[other]})"
                )
    return problems


def _rank_of_import(target: str) -> int | None:
    """The layer of an imported name; `metacrm.x.Name` counts as the module `metacrm.x`."""
    parts = target.split(".")
    if parts[0] != "metacrm":
        return None
    if len(parts) >= 2 and parts[1] not in LAYERS and parts[1] not in BOTTOM:
        return 0  # a name of the package itself (`from metacrm import __version__`)
    return rank(".".join(parts[:2]))


def test_layers_run_one_way() -> None:
    problems = upward_imports()
    assert not problems, "upward imports:\n" + "\n".join(problems)


def test_the_check_sees_imports_inside_functions() -> None:
    tree = ast.parse("def f():\n    from metacrm import platform\n")
    assert imported(tree, "metacrm.metadata.x", False) == [(2, "metacrm.platform")]
    assert _rank_of_import("metacrm.platform") == LAYERS.index("platform")
    assert _rank_of_import("metacrm.__version__") == 0
