"""The demo is built on the public API only, and its modules import each other without a cycle."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Final

import cloudkit_trio.demo

DEMO: Final = Path(cloudkit_trio.demo.__file__).parent


def imports() -> dict[str, set[str]]:
    """Each demo module's imports, absolute (relative ones as ``cloudkit_trio.demo.*``)."""
    found: dict[str, set[str]] = {}
    for path in sorted(DEMO.glob("*.py")):
        names: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    names.add(
                        f"cloudkit_trio.demo.{node.module}" if node.module else "cloudkit_trio.demo"
                    )
                else:
                    assert node.module is not None
                    names.add(node.module)
                    names.update(
                        f"{node.module}.{a.name}" for a in node.names if a.name.startswith("_")
                    )
        found[path.stem] = names
    return found


class TestPublicOnly:
    def test_no_private_module_of_the_library(self) -> None:
        """Outside its own package, the demo imports no module or name with a leading underscore."""
        private = {
            (module, name)
            for module, names in imports().items()
            for name in names
            if name.startswith("cloudkit_trio")
            and not name.startswith("cloudkit_trio.demo")
            and any(part.startswith("_") for part in name.split("."))
        }
        assert not private

    def test_no_import_cycle(self) -> None:
        """The demo's modules form a DAG."""
        graph = {
            module: {n.rpartition(".")[2] for n in names if n.startswith("cloudkit_trio.demo.")}
            for module, names in imports().items()
        }
        done: set[str] = set()

        def visit(module: str, path: tuple[str, ...]) -> None:
            assert module not in path, " -> ".join((*path, module))
            if module in done:
                return
            for target in graph.get(module, ()):
                visit(target, (*path, module))
            done.add(module)

        for module in graph:
            visit(module, ())

    def test_the_demo_is_small(self) -> None:
        """The demo stays under half of the 3,594 lines it had before it moved to the public API."""
        assert sum(len(p.read_text().splitlines()) for p in DEMO.glob("*.py")) <= 3594 // 2
