"""Exception-group handling shared by the supervisor's entry points and its child tasks."""

from __future__ import annotations

from collections.abc import Generator
from typing import NoReturn

import trio

__all__ = ["collapse", "first_fatal", "flatten", "reraise"]


def flatten(error: BaseException) -> Generator[BaseException, None, None]:
    """The leaves of ``error``: itself, or every non-group exception nested in it."""
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            yield from flatten(inner)
    else:
        yield error


def first_fatal(error: BaseException | None) -> BaseException | None:
    """The first ``KeyboardInterrupt`` or ``SystemExit`` in ``error``, if any."""
    if error is None:
        return None
    for leaf in flatten(error):
        if isinstance(leaf, KeyboardInterrupt | SystemExit):
            return leaf
    return None


def collapse(group: BaseExceptionGroup[BaseException]) -> BaseException:
    """The one exception a public entry point raises for an internal nursery's group.

    ``KeyboardInterrupt``/``SystemExit`` first, then the first exception that is not a
    cancellation, else the first cancellation.
    """
    leaves = list(flatten(group))
    fatal = first_fatal(group)
    if fatal is not None:
        return fatal
    for leaf in leaves:
        if not isinstance(leaf, trio.Cancelled):
            return leaf
    return leaves[0]


def reraise(group: BaseExceptionGroup[BaseException]) -> NoReturn:
    """Raise :func:`collapse` of ``group``, keeping its own cause and hiding the group."""
    leaf = collapse(group)
    raise leaf from leaf.__cause__
