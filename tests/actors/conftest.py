"""Test doubles for supervision tests: children the test drives, a capturing logger."""

from __future__ import annotations

from collections import Counter
from typing import Any

import attrs
import pytest
import trio

from cloudkit_trio.actors import ChildSpec, Restart
from cloudkit_trio.spi import LogEntry, Logger, LogLevel


class Boom(Exception):
    """The crash the tests inject."""


@attrs.define(eq=False)
class Incarnation:
    """One run of a puppet child: the test tells it what to do next."""

    child_id: str
    ignore_stop: bool
    command: trio.Event = attrs.field(factory=trio.Event)
    action: str = ""
    error: BaseException | None = None

    def request_stop(self) -> None:
        if not self.ignore_stop:
            self.tell("return")

    def tell(self, action: str, error: BaseException | None = None) -> None:
        self.action = action
        self.error = error
        self.command.set()


@attrs.define(eq=False)
class Puppets:
    """Children whose every incarnation waits for the test to make it crash or return.

    ``log`` records ``("start", id, time)`` and ``("stop", id, time)`` in order, so tests can
    check start and stop orders and when they happened.
    """

    log: list[tuple[str, str, float]] = attrs.field(factory=list)
    live: dict[str, Incarnation] = attrs.field(factory=dict)
    starts: Counter[str] = attrs.field(factory=Counter)

    def spec(
        self,
        child_id: str,
        *,
        restart: Restart = Restart.PERMANENT,
        shutdown: float | None = 5.0,
        graceful: bool = True,
        ignore_stop: bool = False,
        hang_after_cancel: float = 0.0,
        fail_start: BaseException | None = None,
    ) -> ChildSpec:
        async def target(*, task_status: trio.TaskStatus[Any] = trio.TASK_STATUS_IGNORED) -> None:
            incarnation = Incarnation(child_id, ignore_stop)
            self.starts[child_id] += 1
            self.log.append(("start", child_id, trio.current_time()))
            try:
                if fail_start is not None:
                    raise fail_start
                self.live[child_id] = incarnation
                task_status.started(incarnation if graceful else None)
                try:
                    await incarnation.command.wait()
                except trio.Cancelled:
                    if hang_after_cancel:
                        with trio.CancelScope(shield=True):
                            await trio.sleep(hang_after_cancel)
                    raise
                if incarnation.action == "raise":
                    assert incarnation.error is not None
                    raise incarnation.error
            finally:
                if self.live.get(child_id) is incarnation:
                    del self.live[child_id]
                self.log.append(("stop", child_id, trio.current_time()))

        return ChildSpec(child_id, target, restart=restart, shutdown=shutdown)

    def crash(self, child_id: str, error: BaseException | None = None) -> None:
        self.live[child_id].tell("raise", error if error is not None else Boom(child_id))

    def finish(self, child_id: str) -> None:
        self.live[child_id].tell("return")

    def events(self, kind: str) -> list[str]:
        return [child_id for event, child_id, _ in self.log if event == kind]

    def clear(self) -> None:
        self.log.clear()


class CapturingLogger(Logger):
    """Keeps every entry, at every level."""

    def __init__(self) -> None:
        self.entries: list[LogEntry] = []

    def is_enabled(self, level: LogLevel) -> bool:
        return True

    def log(self, entry: LogEntry) -> None:
        self.entries.append(entry)

    def messages(self) -> list[str]:
        return [entry.message for entry in self.entries]


@pytest.fixture
def puppets() -> Puppets:
    return Puppets()


@pytest.fixture
def capture() -> CapturingLogger:
    return CapturingLogger()
