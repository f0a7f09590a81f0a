"""The layer rule, beyond what `lint-imports` checks: the core imports from an allow-list.

import-linter (`make lint`, pyproject.toml) forbids named modules; this walks every import of
every core module (function-local ones included) and accepts only the core itself and the few
standard-library pieces a C port has an equivalent for.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

CORE = Path(__file__).resolve().parent.parent / "airfsm" / "core"
ALLOWED = ("airfsm.core", "enum", "dataclasses", "typing", "collections.abc", "hashlib", "hmac",
           "transitions", "__future__")


def imported_modules(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"{path.name}: relative import"
            assert node.module is not None
            names.add(node.module)
    return names


def allowed(name: str) -> bool:
    return any(name == ok or name.startswith(ok + ".") for ok in ALLOWED)


def test_core_imports_only_the_allow_list() -> None:
    offending = []
    for path in sorted(CORE.glob("*.py")):
        for name in sorted(imported_modules(path)):
            if not allowed(name):
                offending.append(f"{path.name} imports {name}")
    assert offending == []


def test_the_walk_sees_function_local_imports(tmp_path: Path) -> None:
    module = tmp_path / "m.py"
    module.write_text("import enum\n\ndef f():\n    import json\n    from os import path\n")
    assert imported_modules(module) == {"enum", "json", "os"}
    assert not allowed("json") and allowed("collections.abc") and not allowed("collections")


def test_no_import_cycles() -> None:
    """No module imports, directly or not, a module that imports it (the CLI and the gateway,
    the config and the store used to)."""
    import grimp  # import-linter's graph builder (a dev dependency)

    graph = grimp.build_graph("airfsm")
    cycles = sorted({
        tuple(sorted((importer, imported)))
        for importer in graph.modules
        for imported in graph.find_modules_directly_imported_by(importer)
        if imported.startswith("airfsm")
        and graph.chain_exists(importer=imported, imported=importer)
    })
    assert cycles == []


def test_the_readme_tree_names_every_module_of_each_layer() -> None:
    """README "Architecture" draws the folders; a module added or moved must show there."""
    readme = (CORE.parent.parent / "README.md").read_text(encoding="utf-8")
    tree = readme.split("## Architecture", 1)[1].split("```", 2)[1]
    sections: dict[str, set[str]] = {}
    package = ""
    for line in tree.splitlines():
        head = line.lstrip("│ ").removeprefix("├── ").removeprefix("└── ")
        if head != line.lstrip("│ ") and "/" in head.split()[0]:
            package = head.split("/")[0]
            sections[package] = set()
        if package:
            sections[package] |= set(re.findall(r"[a-z_]+", head))
    packages = {p.name for p in CORE.parent.iterdir() if (p / "__init__.py").exists()}
    assert set(sections) == packages
    for name in packages:
        for module in (CORE.parent / name).glob("*.py"):
            if module.stem != "__init__" or name == "cli":
                assert module.stem in sections[name], f"README tree: {name}/{module.name}"
