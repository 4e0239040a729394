"""One call for users' test suites: every retry at once, and no more attempts than asked.

A suite that exercises code calling cloud APIs through the runtime wants the retries to
happen (the code under test must cope with them) but not the backoff between them, which
is seconds of real time per failing call. :func:`set_fast_retries` turns that off for the
whole process; :func:`fast_retries` does it for a ``with`` block and restores what was
before. Nothing else changes: the breaker, the retry budget, rate limits, deadlines and
``Retry-After`` handling still decide *whether* a retry is made, only not *when*.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from .._validation import check_count
from ..runtime._fast_retries import FAST_RETRIES

__all__ = ["fast_retries", "fast_retries_enabled", "set_fast_retries"]


def set_fast_retries(enabled: bool, *, attempts: int | None = None) -> None:
    """Turn the testing switch on or off, for every context in the process.

    While it is on, every retry of an operation is made at once: the retry policy's
    backoff and a server's ``Retry-After`` are not waited for. With ``attempts``, no
    operation makes more than that many attempts (the first included), whatever its
    policy allows; ``attempts=1`` turns retrying off. Retries still count against the
    retry budget and still never start past an operation's deadline.

    Like stamina's ``set_testing``, it is process-wide, so it also reaches operations
    submitted through the channel, which run on the runtime's own tasks. Call it from a
    session fixture, or use :func:`fast_retries` around one test.

    Raises:
        ConfigError: ``attempts`` is not a whole number >= 1 or None.

    .. versionadded:: 0.2.0
    """
    if not isinstance(enabled, bool):
        raise TypeError(f"enabled must be a bool, got {type(enabled).__name__}")
    if attempts is not None:
        attempts = check_count("fast_retries attempts", attempts, field="attempts")
    FAST_RETRIES.enabled = enabled
    FAST_RETRIES.attempts = attempts if enabled else None


def fast_retries_enabled() -> bool:
    """Whether :func:`set_fast_retries` (or :func:`fast_retries`) is in force.

    .. versionadded:: 0.2.0
    """
    return FAST_RETRIES.enabled


@contextmanager
def fast_retries(*, attempts: int | None = None) -> Iterator[None]:
    """Retries without backoff (and at most ``attempts`` attempts) inside the block.

    See :func:`set_fast_retries`. The setting in force before the block is restored when
    it exits, however it exits::

        with cloudkit_trio.testing.fast_retries(attempts=2):
            ...

    .. versionadded:: 0.2.0
    """
    before = (FAST_RETRIES.enabled, FAST_RETRIES.attempts)
    set_fast_retries(True, attempts=attempts)
    try:
        yield
    finally:
        FAST_RETRIES.enabled, FAST_RETRIES.attempts = before
