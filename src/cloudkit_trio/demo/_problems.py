"""Failures the command reports in one line instead of a traceback."""

from __future__ import annotations

from typing import TypeVar

__all__ = ["DemoError", "sole"]

_E = TypeVar("_E", bound=BaseException)


class DemoError(Exception):
    """A run could not start; the message says why and what to do."""


def sole(error: BaseException, kind: type[_E]) -> _E | None:
    """``error`` if it is a ``kind``, or the first leaf of a group made only of them.

    Nurseries wrap what their tasks raise in exception groups, however deep; a group that
    holds anything else (a cancellation, a bug) is not ours to summarise.
    """
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        matched, rest = error.split(kind)
        if matched is not None and rest is None:
            leaf: BaseException = matched
            while isinstance(leaf, BaseExceptionGroup):
                leaf = leaf.exceptions[0]
            assert isinstance(leaf, kind)
            return leaf
    return None
