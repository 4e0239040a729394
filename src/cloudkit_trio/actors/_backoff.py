"""Restart backoff: wait longer between consecutive restarts of a child that keeps failing."""

from __future__ import annotations

import random
from typing import Protocol

import attrs

from ._spec import check_duration

__all__ = ["RandomSource", "RestartBackoff"]


class RandomSource(Protocol):
    """The part of :class:`random.Random` that jitter needs; inject a seeded one in tests.

    .. versionadded:: 0.1.0
    """

    def uniform(self, a: float, b: float) -> float: ...


@attrs.frozen(kw_only=True)
class RestartBackoff:
    """Exponential restart delays with jitter and a reset, measured on Trio's clock.

    The ``n``-th consecutive restart of a child (``n`` from 0) waits
    ``min(max_delay, initial * multiplier ** n) * (1 + uniform(0, jitter))`` seconds, so
    with jitter a delay may exceed ``max_delay`` by up to that fraction. A child that ran
    for ``reset_after`` seconds (default: ``max_delay``) before it failed starts again at
    ``n = 0``. While a child waits it is ``RESTARTING``; its mailbox, if it is an actor,
    keeps queueing. Restart intensity is counted when a restart is decided, not when it
    happens.

    Args:
        initial: Delay before the first restart.
        multiplier: Growth factor per consecutive restart (at least 1).
        max_delay: Cap on the delay before jitter.
        jitter: Fraction of random extra delay, in ``[0, 1]``.
        reset_after: Uptime after which the failure count starts over.
        random: Source of jitter; a seeded :class:`random.Random` makes delays repeatable.

    .. versionadded:: 0.1.0
    """

    initial: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 10.0
    jitter: float = 0.1
    reset_after: float | None = None
    random: RandomSource = attrs.field(factory=random.Random, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        check_duration("RestartBackoff", "initial", self.initial, allow_none=False)
        check_duration("RestartBackoff", "max_delay", self.max_delay, allow_none=False)
        check_duration("RestartBackoff", "reset_after", self.reset_after, allow_none=True)
        check_duration("RestartBackoff", "jitter", self.jitter, allow_none=False)
        check_duration("RestartBackoff", "multiplier", self.multiplier, allow_none=False)
        if self.multiplier < 1:
            raise ValueError(f"RestartBackoff.multiplier must be >= 1, got {self.multiplier!r}")
        if self.jitter > 1:
            raise ValueError(f"RestartBackoff.jitter must be in [0, 1], got {self.jitter!r}")
        if self.initial > self.max_delay:
            raise ValueError(
                f"RestartBackoff.initial ({self.initial!r}) must not exceed "
                f"max_delay ({self.max_delay!r})"
            )

    @property
    def effective_reset_after(self) -> float:
        """The uptime that resets the failure count (``reset_after`` or ``max_delay``)."""
        return self.max_delay if self.reset_after is None else self.reset_after

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restart number ``consecutive`` (0 for the first)."""
        if consecutive < 0:
            raise ValueError(f"consecutive counts restarts from 0, got {consecutive}")
        # Stop multiplying once past the cap: huge exponents would overflow a float.
        base = self.initial
        for _ in range(consecutive):
            base *= self.multiplier
            if base >= self.max_delay:
                break
        base = min(base, self.max_delay)
        if self.jitter:
            base *= 1.0 + self.random.uniform(0.0, self.jitter)
        return base
