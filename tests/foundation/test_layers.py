"""Layers only import downward (DESIGN.md §2): every import in src/ is checked, statically.

Each module under ``src/cloudkit_trio`` is parsed with :mod:`ast` (nothing is imported), and
every ``import``/``from ... import`` in it — inside functions and ``if TYPE_CHECKING:``
blocks too — is resolved to an absolute module name and checked against its layer's rules.

A module's layer comes from its package, so new modules are classified without editing
this file; only the top level is split by name: the facade modules are listed, every other
``cloudkit_trio._module`` is foundation.
"""

from __future__ import annotations

import ast
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Final

import attrs
import pytest

ROOT: Final = Path(__file__).resolve().parents[2]
SRC: Final = ROOT / "src"
PACKAGE: Final = "cloudkit_trio"

#: Top-level modules of the facade (and tooling); every other top-level module is foundation.
FACADE_TOP_LEVEL: Final = frozenset(
    {PACKAGE, f"{PACKAGE}.__main__", f"{PACKAGE}._context", f"{PACKAGE}._exposition"}
)

#: The layer of each subpackage (its modules and subpackages included).
PACKAGE_LAYERS: Final = {
    "actors": "actors",
    "spi": "spi",
    "transport": "transport",
    "runtime": "runtime",
    "aws": "aws",
    "redis": "redis",
    "tracing": "tracing",
    "testing": "facade",
    "demo": "facade",
}

LAYERS: Final = (
    "actors", "foundation", "spi", "transport", "redis", "runtime", "aws", "tracing", "facade"
)  # fmt: skip

#: Which layers of ours each layer may import (its own always included).
MAY_IMPORT: Final[dict[str, frozenset[str]]] = {
    # The generic actor runtime knows nothing of clouds: nothing of ours but itself.
    "actors": frozenset({"actors"}),
    "foundation": frozenset({"foundation"}),
    "spi": frozenset({"foundation", "spi"}),
    "transport": frozenset({"foundation", "spi", "transport"}),
    # A shared-state backend implements the SPI on a store's client, and nothing else.
    "redis": frozenset({"foundation", "spi", "redis"}),
    "runtime": frozenset({"foundation", "spi", "transport", "actors", "runtime"}),
    # The cloud-specific clients build on the facade's Cloud (see EXCEPTIONS), never on
    # the runtime's actors.
    "aws": frozenset({"foundation", "spi", "transport", "aws"}),
    # The OpenTelemetry tracer implements the runtime's tracing hooks; the runtime calls
    # it through them and never imports it (nor opentelemetry).
    "tracing": frozenset({"foundation", "spi", "runtime", "tracing"}),
    "facade": frozenset(LAYERS),
}

#: Leaf helpers of the actors package that every layer may use. They import nothing of
#: ours beyond the actors package (the actors rule checks that), so using them keeps every
#: layer above actors: ``publish`` for the thin public modules (foundation's ``_exports``
#: re-exports it), and the one "exponential, capped" delay formula for the retry policies
#: and the credential refresher.
SHARED_LEAVES: Final = frozenset({f"{PACKAGE}.actors._exports", f"{PACKAGE}.actors._backoff"})

#: Single imports across the rules, each with its reason.
EXCEPTIONS: Final[dict[tuple[str, str], str]] = {
    (f"{PACKAGE}.aws._s3", f"{PACKAGE}._context"): "S3(cloud) is a client of the facade's Cloud",
}

#: Third-party distributions each layer may import; None: anything installed.
THIRD_PARTY: Final[dict[str, frozenset[str] | None]] = {
    "actors": frozenset({"trio", "attrs"}),
    "foundation": frozenset({"trio", "attrs", "httpx"}),
    "spi": frozenset({"trio", "attrs", "prometheus_client"}),
    "transport": frozenset({"trio", "attrs", "httpx", "h11"}),
    # The optional extra's client, imported by this package alone.
    "redis": frozenset({"trio", "attrs", "coredis"}),
    "runtime": frozenset({"trio", "attrs", "httpx"}),
    "aws": frozenset({"trio", "attrs", "httpx"}),
    # The optional extra's API, imported by this package alone (and the builder, lazily).
    "tracing": frozenset({"trio", "attrs", "httpx", "opentelemetry"}),
    "facade": None,
}


def layer_of(module: str) -> str:
    """The layer of one of our modules, by its package; LookupError if it has none."""
    if module in FACADE_TOP_LEVEL:
        return "facade"
    parts = module.split(".")
    if parts[0] != PACKAGE or len(parts) < 2:
        raise LookupError(f"{module} is not a module of {PACKAGE}")
    if parts[1] in PACKAGE_LAYERS:
        return PACKAGE_LAYERS[parts[1]]
    if len(parts) == 2 and parts[1].startswith("_"):
        return "foundation"
    raise LookupError(f"{module} has no layer: add its package to PACKAGE_LAYERS")


@attrs.frozen
class Source:
    """One module of ours: its absolute name, whether it is a package, its text."""

    name: str
    is_package: bool
    text: str
    path: str


def sources() -> list[Source]:
    found = []
    for path in sorted((SRC / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(SRC).with_suffix("").parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        found.append(
            Source(".".join(parts), is_package, path.read_text(), str(path.relative_to(ROOT)))
        )
    return found


@attrs.frozen
class Import:
    target: str
    line: int


def imports_of(source: Source, known: frozenset[str]) -> Iterator[Import]:
    """Every module ``source`` imports, absolute; ``from pkg import sub`` names ``pkg.sub``."""
    package = source.name if source.is_package else source.name.rpartition(".")[0]
    for node in ast.walk(ast.parse(source.text, source.path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield Import(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                if node.level > 1:
                    base = base[: -(node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                assert node.module is not None
                stem = node.module
            for alias in node.names:
                submodule = f"{stem}.{alias.name}"
                yield Import(submodule if submodule in known else stem, node.lineno)


def violations(source: Source, known: frozenset[str]) -> list[str]:
    """What is wrong with the imports of ``source``: ``module:line → import (why)``."""
    try:
        layer = layer_of(source.name)
    except LookupError as exc:
        return [str(exc)]
    found = []
    for imp in imports_of(source, known):
        top = imp.target.partition(".")[0]
        where = f"{source.name}:{imp.line} ({layer}) → {imp.target}"
        if top in sys.stdlib_module_names:
            continue
        if top == PACKAGE:
            if (source.name, imp.target) in EXCEPTIONS or imp.target in SHARED_LEAVES:
                continue
            try:
                target_layer = layer_of(imp.target)
            except LookupError as exc:
                found.append(f"{where}: {exc}")
                continue
            if target_layer not in MAY_IMPORT[layer]:
                found.append(f"{where} ({target_layer}): {layer} may not import {target_layer}")
            continue
        allowed = THIRD_PARTY[layer]
        if allowed is not None and top not in allowed:
            found.append(f"{where}: third-party {top!r} is not among {sorted(allowed)}")
    return found


class TestLayers:
    def test_every_import_respects_its_layer(self) -> None:
        """No module imports a layer above its own, or a third-party package not its own."""
        all_sources = sources()
        known = frozenset(s.name for s in all_sources)
        problems = [v for source in all_sources for v in violations(source, known)]
        assert not problems, "imports that cross the layers:\n" + "\n".join(problems)

    def test_every_module_has_a_layer(self) -> None:
        """Each module is classified, and every layer named in the rules exists."""
        for source in sources():
            assert layer_of(source.name) in LAYERS, source.name
        assert set(MAY_IMPORT) == set(THIRD_PARTY) == set(LAYERS)
        assert set(PACKAGE_LAYERS.values()) <= set(LAYERS)

    def test_the_actors_package_is_self_contained(self) -> None:
        """actors imports nothing of ours but itself: its modules alone prove it."""
        all_sources = sources()
        known = frozenset(s.name for s in all_sources)
        for source in all_sources:
            if layer_of(source.name) != "actors":
                continue
            for imp in imports_of(source, known):
                if imp.target.startswith(f"{PACKAGE}."):
                    assert imp.target.startswith(f"{PACKAGE}.actors"), (source.name, imp)

    def test_exceptions_and_leaves_still_exist(self) -> None:
        """Every allowance names modules that exist, so none outlives its reason."""
        known = {s.name for s in sources()}
        assert known >= SHARED_LEAVES
        for module, target in EXCEPTIONS:
            assert {module, target} <= known


class TestChecker:
    """The checker itself: relative imports, TYPE_CHECKING blocks, submodules, third party."""

    KNOWN: Final = frozenset(
        {
            PACKAGE,
            f"{PACKAGE}._errors",
            f"{PACKAGE}._context",
            f"{PACKAGE}.actors",
            f"{PACKAGE}.actors._x",
            f"{PACKAGE}.actors._backoff",
            f"{PACKAGE}.spi",
            f"{PACKAGE}.spi._retry",
            f"{PACKAGE}.runtime",
            f"{PACKAGE}.runtime._new",
        }
    )

    def check(self, name: str, text: str, *, is_package: bool = False) -> list[str]:
        return violations(Source(name, is_package, text, name), self.KNOWN)

    def test_relative_and_type_checking_imports_are_caught(self) -> None:
        """A relative import and one under TYPE_CHECKING are both resolved and reported."""
        text = (
            "from typing import TYPE_CHECKING\n"
            "from ..spi import Logger\n"
            "if TYPE_CHECKING:\n"
            "    from cloudkit_trio import _errors\n"
        )
        problems = self.check(f"{PACKAGE}.actors._x", text)
        assert len(problems) == 2
        assert f"{PACKAGE}.spi (spi): actors may not import spi" in problems[0]
        assert f"{PACKAGE}._errors (foundation)" in problems[1]

    def test_imports_inside_functions_and_third_party_are_caught(self) -> None:
        """A function-local import counts; a third-party package outside the list is named."""
        text = "def f():\n    import httpx\n    from .. import _context\n"
        problems = self.check(f"{PACKAGE}.spi._retry", text)
        assert any("third-party 'httpx'" in p for p in problems)
        assert any("spi may not import facade" in p for p in problems)

    def test_allowed_imports_pass(self) -> None:
        """Downward imports, shared leaves and the stdlib are fine; a package's own level too."""
        assert self.check(f"{PACKAGE}.spi._retry", "from ..actors._backoff import f\n") == []
        assert self.check(f"{PACKAGE}.runtime", "from . import _new\n", is_package=True) == []
        assert (
            self.check(f"{PACKAGE}.runtime._new", "import math, trio\nfrom ..actors import S\n")
            == []
        )

    @pytest.mark.parametrize(
        ("module", "layer"),
        [
            (PACKAGE, "facade"),
            (f"{PACKAGE}._context", "facade"),
            (f"{PACKAGE}._validation", "foundation"),
            (f"{PACKAGE}.runtime._assembly", "runtime"),
            (f"{PACKAGE}.demo._cli", "facade"),
        ],
    )
    def test_new_modules_are_classified_by_package(self, module: str, layer: str) -> None:
        """Modules not yet written get their layer from where they live."""
        assert layer_of(module) == layer

    def test_an_unknown_package_is_reported(self) -> None:
        """A new subpackage must be given a layer before its imports can pass."""
        with pytest.raises(LookupError, match="PACKAGE_LAYERS"):
            layer_of(f"{PACKAGE}.gcp._storage")
