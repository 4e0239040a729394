"""User code that is not a child (logger, on_event hook, random source) never stops a tree."""

from __future__ import annotations

import logging
import random
from typing import Any

import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    ChildState,
    EventKind,
    RestartBackoff,
    RestartIntensityExceeded,
    Strategy,
    Supervisor,
    SupervisorEvent,
    SupervisorLogger,
)
from cloudkit_trio.actors._contain import Containment, UserCode
from cloudkit_trio.spi import LogLevel, StdlibLogger
from cloudkit_trio.testing import CapturingLogger

SECRET = "hunter2-session-token"


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


class BrokenLogger:
    """A logger whose every method raises, like a StructuredLogger on a closed stream."""

    def __init__(self) -> None:
        self.calls = 0

    def _fail(self, *args: object, **fields: object) -> None:
        self.calls += 1
        raise ValueError(f"I/O operation on closed file ({SECRET})")

    debug = info = warn = error = log = is_enabled = _fail


def broken_hook(event: SupervisorEvent) -> None:
    raise RuntimeError(f"metrics backend down ({SECRET})")


class FailingRandom:
    def uniform(self, a: float, b: float) -> float:
        raise OSError(f"entropy gone ({SECRET})")


class TestBrokenLogger:
    async def test_children_start_restart_and_stop_despite_it(
        self, autojump_clock: Any, puppets: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Every supervisor duty is done although every log call raises; failures are counted."""
        logger = BrokenLogger()
        specs = [puppets.spec("a"), puppets.spec("b"), puppets.spec("c")]
        async with Supervisor(specs, strategy=Strategy.REST_FOR_ONE, logger=logger) as sup:
            assert sorted(puppets.live) == ["a", "b", "c"]
            puppets.clear()
            puppets.crash("b")
            await settle()
            assert puppets.events("stop") == ["b", "c"]
            assert puppets.events("start") == ["b", "c"]
            await sup.terminate_child("a")
            assert sup.which_children().by_id("a").state is ChildState.STOPPED
            await sup.restart_child("a")
            await sup.start_child(puppets.spec("d"))
            assert sup.running
            failures = sup.snapshot().logger_failures
            assert failures == logger.calls > 0
            assert sup.snapshot().hook_failures == 0
        assert puppets.events("stop")[-4:] == ["d", "c", "b", "a"]
        assert sup.snapshot().logger_failures > failures  # the shutdown's lines too
        err = capsys.readouterr().err
        assert err.count("cloudkit_trio.actors") == 1
        assert "supervisor 'supervisor': its logger raised ValueError" in err
        assert SECRET not in err

    async def test_intensity_is_still_exceeded_with_its_cause(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A broken logger changes nothing about giving up: the error and its cause stay."""
        last = KeyError("last")

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a")], max_restarts=1, logger=BrokenLogger()):
                puppets.crash("a")
                await settle()
                puppets.crash("a", last)
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert info.value.__cause__ is last

    async def test_standard_error_gone_too(
        self, autojump_clock: Any, puppets: Any, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """With no standard error to report on (pythonw), failures are only counted."""
        monkeypatch.setattr("sys.stderr", None)
        async with Supervisor([puppets.spec("a")], logger=BrokenLogger()) as sup:
            puppets.crash("a")
            await settle()
            assert sup.which_children().by_id("a").restarts == 1
            assert sup.snapshot().logger_failures > 0

    def test_a_logger_without_the_level_methods_is_refused(self) -> None:
        """An object that is no SupervisorLogger is a TypeError at construction."""

        class OnlyLog:
            def log(self, entry: object) -> None: ...

        with pytest.raises(TypeError, match="debug/info/warn/error"):
            Supervisor(logger=OnlyLog())  # type: ignore[arg-type]


class TestBrokenHook:
    async def test_supervision_carries_on_and_failures_are_counted(
        self,
        autojump_clock: Any,
        puppets: Any,
        capture: Any,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A raising hook is counted, logged by type only and reported once; restarts go on."""
        async with Supervisor(
            [puppets.spec("a"), puppets.spec("b")],
            strategy=Strategy.ONE_FOR_ALL,
            on_event=broken_hook,
            logger=capture,
        ) as sup:
            puppets.clear()
            puppets.crash("a")
            await settle()
            assert puppets.events("start") == ["a", "b"]
            assert sup.which_children().by_id("b").restarts == 1
            hook_failures = sup.snapshot().hook_failures
        assert hook_failures > 2
        assert sup.snapshot().logger_failures == 0
        failed = [e for e in capture.entries if e.message == "supervisor event hook failed"]
        assert len(failed) == sup.snapshot().hook_failures
        assert failed[0].fields["error_type"] == "RuntimeError"
        assert all(SECRET not in str(e.fields) for e in failed)
        err = capsys.readouterr().err
        assert err.count("cloudkit_trio.actors") == 1
        assert "its on_event hook raised RuntimeError" in err
        assert SECRET not in err

    async def test_intensity_is_still_exceeded(self, autojump_clock: Any, puppets: Any) -> None:
        """A raising hook and a raising logger together still let the supervisor give up."""

        async def scenario() -> None:
            async with Supervisor(
                [puppets.spec("a")], max_restarts=0, on_event=broken_hook, logger=BrokenLogger()
            ):
                puppets.crash("a")
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded) as info:
            await scenario()
        assert isinstance(info.value.__cause__, Exception)

    async def test_an_async_hook_is_a_failure_not_a_warning(
        self, autojump_clock: Any, puppets: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """An ``async def`` hook never runs: it is counted, and no coroutine is left unawaited."""
        seen: list[SupervisorEvent] = []

        async def hook(event: SupervisorEvent) -> None:
            seen.append(event)  # pragma: no cover - never awaited

        async with Supervisor([puppets.spec("a")], on_event=hook) as sup:  # type: ignore[arg-type]
            puppets.crash("a")
            await settle()
            assert sup.snapshot().hook_failures > 0
        assert seen == []
        assert "its on_event hook returned a coroutine" in capsys.readouterr().err

    async def test_keyboard_interrupt_from_the_hook_is_not_contained(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """Only Exception is contained: a KeyboardInterrupt propagates and the tree stops."""

        def hook(event: SupervisorEvent) -> None:
            if event.kind is EventKind.CHILD_FAILED:
                raise KeyboardInterrupt

        async def scenario() -> None:
            async with Supervisor([puppets.spec("a"), puppets.spec("b")], on_event=hook):
                puppets.crash("b")
                await trio.sleep_forever()

        with pytest.raises(KeyboardInterrupt):
            await scenario()
        assert "a" not in puppets.live


class TestContainment:
    def test_base_exceptions_pass_through(self) -> None:
        """KeyboardInterrupt and SystemExit are never counted or swallowed."""
        containment = Containment("sup")
        for error in (KeyboardInterrupt(), SystemExit(1)):

            def fail(error: BaseException = error) -> None:
                raise error

            with pytest.raises(type(error)):
                containment.call(UserCode.LOGGER, fail)
        assert containment.failures(UserCode.LOGGER) == 0

    def test_results_pass_through(self) -> None:
        """A call that works returns its result and counts nothing."""
        containment = Containment("sup")
        assert containment.call(UserCode.RANDOM, max, 1, 2) == 2
        assert containment.failures(*UserCode) == 0

    def test_a_broken_stream_is_survived(self) -> None:
        """A standard error that raises on write leaves only the count."""

        def stream() -> Any:
            raise OSError("closed")

        containment = Containment("sup", stream=stream)
        containment.call(UserCode.ON_EVENT, broken_hook, None)  # type: ignore[arg-type]
        assert containment.failures(UserCode.ON_EVENT) == 1


class TestRandomSource:
    async def test_a_failing_random_source_restarts_without_jitter(
        self, autojump_clock: Any, puppets: Any, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """The restart waits the plain exponential delay; the failure is counted once."""
        backoff = RestartBackoff(initial=1.0, max_delay=8.0, jitter=0.5, random=FailingRandom())
        events: list[SupervisorEvent] = []
        async with Supervisor([puppets.spec("a")], backoff=backoff, on_event=events.append) as sup:
            puppets.crash("a")
            await settle()
            assert sup.which_children().by_id("a").state is ChildState.RESTARTING
            await trio.sleep(1.0)
            await settle()
            assert sup.which_children().by_id("a").state is ChildState.RUNNING
            assert sup.snapshot().hook_failures == 1
        delays = [e.delay for e in events if e.kind is EventKind.CHILD_RESTARTING]
        assert delays == [1.0]
        assert "its restart backoff's random source raised OSError" in capsys.readouterr().err

    def test_out_of_range_jitter_is_clamped(self) -> None:
        """A random source returning NaN, negatives or too much is clamped into [0, jitter]."""

        class Garbage:
            def __init__(self, value: float) -> None:
                self.value = value

            def uniform(self, a: float, b: float) -> float:
                return self.value

        for value, expected in ((float("nan"), 1.0), (-3.0, 1.0), (7.0, 1.5), (0.25, 1.25)):
            backoff = RestartBackoff(initial=1.0, jitter=0.5, random=Garbage(value))
            assert backoff.delay(0) == expected, value

    def test_a_seeded_random_source_still_gives_repeatable_jitter(self) -> None:
        """A working random source is used as it is."""
        first = RestartBackoff(jitter=0.5, random=random.Random(7))
        second = RestartBackoff(jitter=0.5, random=random.Random(7))
        assert [first.delay(n) for n in range(5)] == [second.delay(n) for n in range(5)]
        assert first.delay(0) != first.base_delay(0)


class TestLoggers:
    async def test_spi_loggers_fit(self, autojump_clock: Any, puppets: Any) -> None:
        """cloudkit_trio.testing.CapturingLogger (a spi.Logger) gets entries at spi levels."""
        logger = CapturingLogger()
        assert isinstance(logger, SupervisorLogger)
        async with Supervisor([puppets.spec("a")], name="root", logger=logger):
            puppets.crash("a", ValueError("bad"))
            await settle()
        failed = next(e for e in logger.entries if e.message == "child failed")
        assert failed.level is LogLevel.ERROR
        assert failed.fields["child"] == "a"
        assert failed.fields["error"] == "bad"
        assert "child restarting" in logger.messages(LogLevel.WARN)
        assert "child started" in logger.messages(LogLevel.DEBUG)
        assert "child exited" not in logger.messages()

    async def test_spi_stdlib_logger_fits(
        self, autojump_clock: Any, puppets: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """cloudkit_trio.spi.StdlibLogger writes the supervisor's lines with their fields."""
        caplog.set_level(logging.DEBUG, logger="ck.test")
        async with Supervisor([puppets.spec("a")], logger=StdlibLogger("ck.test")):
            puppets.crash("a", ValueError("bad"))
            await settle()
        records = [r for r in caplog.records if r.name == "ck.test"]
        failed = next(r for r in records if r.getMessage().startswith("child failed"))
        assert failed.levelno == logging.ERROR
        assert failed.fields["error_type"] == "ValueError"  # type: ignore[attr-defined]
        assert not any(r.levelno < logging.INFO for r in records)  # its min_level is INFO

    async def test_default_logger_is_stdlib_cloudkit_trio_actors(
        self, autojump_clock: Any, puppets: Any, caplog: pytest.LogCaptureFixture
    ) -> None:
        """Without a logger, lines at INFO and above go to logging's cloudkit_trio.actors."""
        caplog.set_level(logging.DEBUG, logger="cloudkit_trio.actors")
        async with Supervisor([puppets.spec("a")], name="root"):
            puppets.crash("a", ValueError("bad"))
            await settle()
        records = [r for r in caplog.records if r.name == "cloudkit_trio.actors"]
        failed = next(r for r in records if r.getMessage().startswith("child failed"))
        assert failed.levelno == logging.ERROR
        assert "supervisor=root" in failed.getMessage()
        assert "error=bad" in failed.getMessage()
        assert failed.fields["child"] == "a"  # type: ignore[attr-defined]
        restarting = next(r for r in records if r.getMessage().startswith("child restarting"))
        assert restarting.levelno == logging.WARNING
        assert not any(r.levelno < logging.INFO for r in records)


class TestUnprintableFailure:
    async def test_an_exception_whose_str_raises_is_still_a_failure(
        self, autojump_clock: Any, puppets: Any
    ) -> None:
        """A child's exception with a broken __str__ is recorded and restarted like any."""

        class Unprintable(Exception):
            def __str__(self) -> str:
                raise RuntimeError("no")

        async with Supervisor([puppets.spec("a")]) as sup:
            puppets.crash("a", Unprintable())
            await settle()
            info = sup.which_children().by_id("a")
            assert info.restarts == 1
            assert info.last_failure is not None
            assert info.last_failure.type_name == "Unprintable"
            assert info.last_failure.message == "<unprintable message>"
