"""The API reference has an entry, with a docstring, for every public name."""

from __future__ import annotations

import importlib
import importlib.util
import re
import subprocess
import sys
import zlib
from functools import cache
from pathlib import Path
from typing import Any

import pytest

griffe = pytest.importorskip("griffe", reason="the docs extra is not installed")
pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
pytest.importorskip("material", reason="the docs extra is not installed")

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "reference"
EXTENSION = ROOT / "docs" / "_ext" / "cloudkit_griffe.py"


def _extension_modules() -> tuple[str, ...]:
    """The docs extension's list of modules with a reference page: the one list."""
    spec = importlib.util.spec_from_file_location("cloudkit_griffe", EXTENSION)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return tuple(module.PUBLIC_MODULES)


DOCUMENTED_MODULES = sorted(_extension_modules())
# cloudkit_trio.demo is the `cloudkit-trio demo` command, documented as a guide (demo.md).
UNDOCUMENTED_PACKAGES = {"cloudkit_trio.demo"}


def test_every_public_package_has_a_reference_page() -> None:
    """A new public package (no leading underscore) cannot be left out of the reference."""
    source = ROOT / "src" / "cloudkit_trio"
    packages = {
        f"cloudkit_trio.{path.parent.name}"
        for path in source.glob("*/__init__.py")
        if not path.parent.name.startswith("_")
    }
    assert set(DOCUMENTED_MODULES) == {"cloudkit_trio"} | packages - UNDOCUMENTED_PACKAGES


def _importable(name: str) -> bool:
    """Present and importable here (a module whose extra is not installed is left out)."""
    if importlib.util.find_spec(name) is None:
        return False
    try:
        importlib.import_module(name)
    except ImportError:
        return False
    return True


PRESENT_MODULES = [name for name in DOCUMENTED_MODULES if _importable(name)]
_DIRECTIVE = re.compile(r"^::: (\S+)\s*$", re.M)


@cache
def directives() -> dict[str, Path]:
    """Every ``::: path`` of the reference pages, with the page it is on."""
    found: dict[str, Path] = {}
    for page in sorted(REFERENCE.glob("*.md")):
        for path in _DIRECTIVE.findall(page.read_text(encoding="utf-8")):
            assert path not in found, f"{path} is documented on {found[path]} and {page}"
            found[path] = page
    return found


def runtime_object(path: str) -> Any:
    try:
        return importlib.import_module(path)
    except ImportError:
        module, _, name = path.rpartition(".")
        return getattr(importlib.import_module(module), name)


@cache
def documented_objects() -> list[object]:
    return [runtime_object(path) for path in directives()]


@cache
def package() -> Any:
    extensions = griffe.load_extensions(f"{EXTENSION}:CloudkitDocstrings")
    return griffe.load(
        "cloudkit_trio",
        search_paths=[str(ROOT / "src")],
        extensions=extensions,
        resolve_aliases=False,
    )


def public_names() -> list[tuple[str, str]]:
    return [
        (module, name)
        for module in PRESENT_MODULES
        for name in importlib.import_module(module).__all__
    ]


class TestCoverage:
    @pytest.mark.parametrize("module", PRESENT_MODULES)
    def test_every_public_module_has_a_page(self, module: str) -> None:
        """Each public module is rendered, so its docstring and anchor exist."""
        assert module in directives(), f"add a reference page with '::: {module}'"

    @pytest.mark.parametrize(("module", "name"), public_names())
    def test_every_public_name_has_an_entry(self, module: str, name: str) -> None:
        """Every name in __all__ is documented: under its own path, or (a re-export)
        under the path of the same object elsewhere."""
        path = f"{module}.{name}"
        if path in directives():
            return
        obj = getattr(importlib.import_module(module), name)
        assert not isinstance(obj, str | int | float) and any(
            obj is documented for documented in documented_objects()
        ), f"{path} has no entry: add '::: {path}' to a page under docs/reference/"

    def test_every_entry_is_a_public_name(self) -> None:
        """No entry documents a private or removed name."""
        public = {f"{module}.{name}" for module, name in public_names()}
        stale = [path for path in directives() if path not in public | set(PRESENT_MODULES)]
        assert not stale

    @pytest.mark.parametrize("path", sorted(directives()))
    def test_every_entry_has_a_docstring(self, path: str) -> None:
        """What the reference shows for a name is its docstring; it must have one."""
        obj = (
            package() if path == "cloudkit_trio" else package()[path.removeprefix("cloudkit_trio.")]
        )
        target = obj.final_target if obj.is_alias else obj
        assert target.docstring is not None and target.docstring.value.strip(), (
            f"{path} (defined in {target.filepath}) has no docstring"
        )


def read_inventory(path: Path) -> set[str]:
    data = path.read_bytes()
    header_end = 0
    for _ in range(4):
        header_end = data.index(b"\n", header_end) + 1
    lines = zlib.decompress(data[header_end:]).decode().splitlines()
    return {line.split(" ", 1)[0] for line in lines if " py:" in line}


class TestBuild:
    def test_the_build_renders_every_entry(self, tmp_path: Path) -> None:
        """A strict build succeeds and its objects.inv holds every documented name."""
        site = tmp_path / "site"
        result = subprocess.run(
            [sys.executable, "-m", "mkdocs", "build", "--strict", "--quiet", "--site-dir", str(site)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={"PATH": "", "NO_MKDOCS_2_WARNING": "1", "HOME": str(tmp_path)},
        )  # fmt: skip
        assert result.returncode == 0, result.stdout + result.stderr
        inventory = read_inventory(site / "objects.inv")
        missing = sorted(set(directives()) - inventory)
        assert not missing


class TestGuides:
    def test_configuration_lists_every_field(self) -> None:
        """docs/configuration.md has a row for each CloudConfig field."""
        import attrs

        import cloudkit_trio as ck

        page = (ROOT / "docs" / "configuration.md").read_text(encoding="utf-8")
        rows = set(re.findall(r"^\| `(\w+)` \|", page, re.M))
        assert set(attrs.fields_dict(ck.CloudConfig)) <= rows
