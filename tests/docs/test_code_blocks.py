"""Every Python code block of the docs is executed by the tests.

A block either includes (``--8<-- "path[:section]"``) a file the tests run, or is a
self-contained program that this module runs. The files under ``docs/snippets/`` are run
here: each is imported and its ``main()``, when it has one, is run on Trio's mock clock
(``# docs-test: real-clock`` asks for the real one, ``# docs-test: moto`` for a local S3).
"""

from __future__ import annotations

import ast
import importlib.util
import os
import re
import runpy
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio
import trio.testing

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"
SNIPPETS = DOCS / "snippets"
TESTS = ROOT / "tests"

_FENCE = re.compile(
    r"^(?P<indent>[ \t]*)```python[^\n]*\n(?P<body>.*?)^(?P=indent)```[ \t]*$", re.S | re.M
)
_INCLUDE = re.compile(r'^\s*--8<--\s+"(?P<path>[^":]+)(?::(?P<section>[\w-]+))?"\s*$')
_MARKER = re.compile(r"#\s*--8<--\s*\[(?P<edge>start|end):(?P<name>[\w-]+)\]")
_NEEDS = re.compile(r"^# docs-test: (?P<need>[\w-]+)\s*$", re.M)


@attrs.frozen
class Block:
    page: Path
    line: int
    body: str

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(DOCS)}:{self.line}"

    @property
    def includes(self) -> list[re.Match[str]]:
        return [m for line in self.body.splitlines() if (m := _INCLUDE.match(line))]

    @property
    def code_lines(self) -> list[str]:
        return [
            line for line in self.body.splitlines() if line.strip() and not _INCLUDE.match(line)
        ]


def blocks() -> list[Block]:
    found = []
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        for match in _FENCE.finditer(text):
            indent = len(match.group("indent"))
            body = "\n".join(line[indent:] for line in match.group("body").splitlines())
            found.append(Block(page, text.count("\n", 0, match.start()) + 1, body))
    return found


BLOCKS = blocks()
INCLUDED = [block for block in BLOCKS if block.includes]
SELF_CONTAINED = [block for block in BLOCKS if not block.includes]
SNIPPET_FILES = sorted(path for path in SNIPPETS.glob("*.py") if path.name != "__init__.py")


def sections(path: Path) -> set[str]:
    """The named sections of a file: a start marker, then an end marker, once each (the
    include shows only the first of two sections of one name)."""
    starts: list[str] = []
    closed: set[str] = set()
    for match in _MARKER.finditer(path.read_text(encoding="utf-8")):
        if match.group("edge") == "start":
            starts.append(match.group("name"))
        elif match.group("name") in starts:
            closed.add(match.group("name"))
    return {name for name in closed if starts.count(name) == 1}


def executed_elsewhere(path: Path) -> bool:
    """An examples/ file counts as executed when a test names it."""
    return any(path.name in test.read_text(encoding="utf-8") for test in TESTS.rglob("test_*.py"))


class TestBlocks:
    def test_there_are_blocks(self) -> None:
        """The scan finds the docs' code blocks (a broken pattern would pass vacuously)."""
        assert len(BLOCKS) > 40 and INCLUDED and SELF_CONTAINED

    @pytest.mark.parametrize("block", INCLUDED, ids=lambda block: block.id)
    def test_included_blocks_come_from_executed_files(self, block: Block) -> None:
        """An including block includes only files the tests run, and nothing else."""
        assert not block.code_lines, f"{block.id} mixes an include with inline code"
        for include in block.includes:
            path = ROOT / include.group("path")
            assert path.is_file(), f"{block.id}: {path} does not exist"
            if path.is_relative_to(SNIPPETS):
                pass  # run by TestSnippets below
            elif path.is_relative_to(ROOT / "examples"):
                assert executed_elsewhere(path), f"no test runs {path.name}"
            else:
                pytest.fail(f"{block.id}: include from docs/snippets/ or examples/, not {path}")
            if include.group("section"):
                assert include.group("section") in sections(path), (
                    f"{block.id}: {path.name} has no section {include.group('section')!r}"
                )

    @pytest.mark.parametrize("block", SELF_CONTAINED, ids=lambda block: block.id)
    def test_self_contained_blocks_run(self, block: Block) -> None:
        """A block that includes nothing is a whole program, and it runs (doing something:
        a block of definitions only would pass without running them)."""
        tree = ast.parse(block.body, block.id)
        definitions = (
            ast.FunctionDef,
            ast.AsyncFunctionDef,
            ast.ClassDef,
            ast.Import,
            ast.ImportFrom,
        )
        assert not all(isinstance(node, definitions) for node in tree.body), (
            f"{block.id} only defines things: move it into a docs/snippets/ file that uses them"
        )
        code = compile(tree, block.id, "exec")
        exec(code, {"__name__": "__main__"})


@pytest.fixture(scope="session")
def moto_server() -> Iterator[Any]:
    pytest.importorskip("moto.server", reason="moto[server] is not installed")
    spec = importlib.util.spec_from_file_location("_docs_moto", TESTS / "aws" / "_moto.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with module.run_moto_server() as server:
        yield server


class TestSnippets:
    @pytest.mark.parametrize("path", SNIPPET_FILES, ids=lambda path: path.name)
    def test_snippet_is_shown(self, path: Path) -> None:
        """Each snippet file is included by a page (a file no page shows is dead weight)."""
        needle = f"docs/snippets/{path.name}"
        assert any(needle in block.body for block in INCLUDED), f"no page includes {path.name}"

    @pytest.mark.parametrize("path", SNIPPET_FILES, ids=lambda path: path.name)
    def test_snippet_runs(
        self, path: Path, request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """The snippet runs to completion (its own asserts check what it shows)."""
        needs = set(_NEEDS.findall(path.read_text(encoding="utf-8")))
        monkeypatch.setenv("METRICS_PORT", "0")  # a free port, never a fixed one
        if "moto" in needs:
            server = request.getfixturevalue("moto_server")
            for name in list(os.environ):
                if name.startswith("AWS_"):
                    monkeypatch.delenv(name)
            monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
            monkeypatch.setenv("AWS_ACCESS_KEY_ID", server.access_key)
            monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", server.secret_key)
            monkeypatch.setenv("AWS_REGION", "us-east-1")
        namespace = runpy.run_path(str(path), run_name="docs_snippet")
        main = namespace.get("main")
        if main is None:
            return

        async def bounded() -> None:
            with trio.fail_after(60 if needs else 3600):
                await main()

        if needs & {"moto", "real-clock"}:
            trio.run(bounded)
        else:
            trio.run(bounded, clock=trio.testing.MockClock(autojump_threshold=0))
