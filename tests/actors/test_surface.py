"""The public surface of cloudkit_trio.actors, its independence, and the runnable example."""

from __future__ import annotations

import ast
import inspect
import subprocess
import sys
from pathlib import Path

import attrs

import cloudkit_trio.actors as actors

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "src" / "cloudkit_trio" / "actors"

EXPECTED = {
    "Actor", "ActorContext", "ActorRef", "ActorSpec", "ActorStopped", "AutoShutdown",
    "CallTimeout", "ChildCounts", "ChildInfo", "ChildKind", "ChildNotFound", "ChildRunning",
    "ChildSpec", "ChildStartError", "ChildState", "ChildTarget", "Children", "DuplicateChild",
    "DynamicSupervisor", "DynamicSupervisorHandle", "EventHook", "EventKind", "FailureInfo",
    "IGNORE", "InvalidChildSpec", "MailboxFull", "MailboxStatistics", "Overflow",
    "RandomSource", "Restart", "RestartBackoff", "RestartIntensityExceeded", "StopSignal",
    "Stoppable", "Strategy", "SupervisionError", "Supervisor", "SupervisorEvent",
    "SupervisorHandle", "SupervisorLogger", "SupervisorNotRunning", "SupervisorSnapshot",
    "TooManyChildren", "actor_child", "worker_pool",
}  # fmt: skip


class TestSurface:
    def test_exported_names_are_pinned_and_sorted(self) -> None:
        """__all__ is exactly the documented names, in plain sorted order."""
        assert set(actors.__all__) == EXPECTED
        assert actors.__all__ == sorted(actors.__all__)

    def test_contract_names_and_members(self) -> None:
        """DESIGN.md §4 names exist with their members."""
        assert {s.name for s in actors.Strategy} == {"ONE_FOR_ONE", "ONE_FOR_ALL", "REST_FOR_ONE"}
        assert {r.name for r in actors.Restart} == {"PERMANENT", "TRANSIENT", "TEMPORARY"}
        params = inspect.signature(actors.Supervisor).parameters
        assert params["strategy"].default is actors.Strategy.ONE_FOR_ONE
        assert params["max_restarts"].default == 3
        assert params["within"].default == 5.0
        for method in ("start_child", "terminate_child", "which_children", "stop"):
            assert callable(getattr(actors.SupervisorHandle, method))
        # DESIGN.md §4.2, the second release.
        assert {a.name for a in actors.AutoShutdown} == {
            "NEVER",
            "ANY_SIGNIFICANT",
            "ALL_SIGNIFICANT",
        }
        assert params["auto_shutdown"].default is actors.AutoShutdown.NEVER
        spec_params = inspect.signature(actors.ChildSpec).parameters
        assert spec_params["significant"].default is False
        for method in ("count_children", "get_childspec"):
            assert callable(getattr(actors.SupervisorHandle, method))
        assert {f.name for f in attrs.fields(actors.ChildCounts)} == {
            "specs",
            "active",
            "supervisors",
            "workers",
        }
        for method in ("call", "cast"):
            assert inspect.iscoroutinefunction(getattr(actors.ActorRef, method))
        assert issubclass(actors.DuplicateChild, ValueError)

    def test_classes_report_the_public_module(self) -> None:
        """Re-exported classes and functions say cloudkit_trio.actors, not a private module."""
        for name in actors.__all__:
            obj = getattr(actors, name)
            if inspect.isclass(obj) or inspect.isfunction(obj):
                assert obj.__module__ == "cloudkit_trio.actors", name

    def test_runtime_imports_nothing_cloud_specific(self) -> None:
        """The package imports nothing of cloudkit_trio but itself (see test_layers too)."""
        for path in PACKAGE.glob("*.py"):
            tree = ast.parse(path.read_text())
            for node in ast.walk(tree):
                if isinstance(node, ast.ImportFrom):
                    assert node.level <= 1, (path.name, node.module)
                    if node.level == 0 and node.module:
                        assert not node.module.startswith("cloudkit_trio"), (path.name, node.module)
                if isinstance(node, ast.Import):
                    for alias in node.names:
                        assert not alias.name.startswith("cloudkit_trio"), (path.name, alias.name)

    def test_importing_it_alone_loads_no_cloud_layer(self) -> None:
        """In a fresh interpreter, the actors modules load without spi, transport or httpx.

        The parent package's ``__init__`` is kept out of the way, so what is measured is
        what ``cloudkit_trio.actors`` itself pulls in.
        """
        code = (
            "import importlib.util, sys, types\n"
            f"root = types.ModuleType('cloudkit_trio'); root.__path__ = [{str(PACKAGE.parent)!r}]\n"
            "sys.modules['cloudkit_trio'] = root\n"
            "import cloudkit_trio.actors\n"
            "loaded = sorted(m for m in sys.modules if m.startswith('cloudkit_trio'))\n"
            "print(' '.join(loaded)); print('httpx' in sys.modules)\n"
        )
        result = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
        )
        modules, httpx_loaded = result.stdout.splitlines()
        assert all(
            m == "cloudkit_trio" or m.startswith("cloudkit_trio.actors") for m in modules.split()
        ), modules
        assert httpx_loaded == "False"


class TestExample:
    def test_supervision_example_runs(self) -> None:
        """examples/supervision.py runs and shows restarts, the tree and the ordered stop."""
        result = subprocess.run(
            [sys.executable, str(ROOT / "examples" / "supervision.py")],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        out = result.stdout
        assert "store says: blue" in out
        assert "flaky worker restarted 2 times" in out
        assert "the caller sees the crash: KeyError('empty key')" in out
        assert "same ref, new incarnation: None" in out
        assert "jobs/job-2" in out
        assert "stopped in reverse start order: last, job-2, job-1, flaky" in out
