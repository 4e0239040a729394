"""The one place where a supervisor calls user code that is not a child, and contains it.

A supervisor calls three kinds of user code besides its children: its logger, its
``on_event`` hook and its restart backoff's random source. Whatever they do — raise, or
return a coroutine because the hook was written ``async`` — the supervisor carries on
(DESIGN.md §6, invariant 8): the failure is counted (:class:`SupervisorSnapshot` shows
the counts) and the first failure of each kind is reported once on standard error. A
broken logger cannot report its own failures, and a line per failure would flood the
terminal of a program that is already in trouble. The report names the supervisor, the
kind of code and the exception's type, never its message, which is user text and may
hold a secret.

Only ``Exception`` is contained: ``trio.Cancelled``, ``KeyboardInterrupt`` and
``SystemExit`` propagate as they would from the supervisor's own code.
"""

from __future__ import annotations

import enum
import inspect
import sys
from collections.abc import Callable
from typing import ParamSpec, TextIO, TypeVar

import attrs

__all__ = ["Containment", "Failure", "UserCode"]

P = ParamSpec("P")
T = TypeVar("T")


class UserCode(enum.Enum):
    """The user code a supervisor calls outside its children, as named in reports."""

    LOGGER = "logger"
    ON_EVENT = "on_event hook"
    RANDOM = "restart backoff's random source"


@attrs.frozen
class Failure:
    """What a contained call gives back instead of a result: the type of what went wrong."""

    code: UserCode
    type_name: str


def _stderr() -> TextIO | None:
    # Looked up at report time, so whoever swapped sys.stderr (pytest, the application)
    # is the one written to; None under pythonw and similar.
    return sys.stderr


@attrs.define(eq=False)
class Containment:
    """Calls user code for one supervisor; counts and reports what goes wrong.

    It belongs to the :class:`Supervisor`, not to one run: a nested supervisor that its
    parent restarts keeps its counts and reports each kind of failure once.
    """

    owner: str
    stream: Callable[[], TextIO | None] = _stderr
    _counts: dict[UserCode, int] = attrs.field(factory=dict, init=False)

    def call(
        self, code: UserCode, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs
    ) -> T | Failure:
        """``fn(*args, **kwargs)``, or a :class:`Failure` if it raised or returned a coroutine."""
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:
            return self._failed(code, type(exc).__qualname__)
        if inspect.iscoroutine(result):
            # An ``async def`` where a plain function was due: it never ran. Closing it
            # spares the "never awaited" warning, which would name no culprit.
            result.close()
            return self._failed(code, "coroutine")
        return result

    def failures(self, *codes: UserCode) -> int:
        """How many calls of ``codes`` failed so far."""
        return sum(self._counts.get(code, 0) for code in codes)

    def _failed(self, code: UserCode, type_name: str) -> Failure:
        count = self._counts.get(code, 0) + 1
        self._counts[code] = count
        if count == 1:
            outcome = "returned a coroutine" if type_name == "coroutine" else f"raised {type_name}"
            self._report(
                f"cloudkit_trio.actors: supervisor {self.owner!r}: its {code.value} {outcome}; "
                "the supervisor carried on. Further failures of its "
                f"{code.value} are counted (SupervisorSnapshot), not printed.\n"
            )
        return Failure(code, type_name)

    def _report(self, text: str) -> None:
        try:
            stream = self.stream()
            if stream is not None:
                stream.write(text)
        except Exception:  # standard error itself is gone: nobody is left to tell
            pass
