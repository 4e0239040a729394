"""Restart backoff: wait longer between consecutive restarts of a child that keeps failing.

:func:`exponential_delay` is the package's one "exponential, capped" formula; the retry
policies and the credential refresher use it too.
"""

from __future__ import annotations

import math
import random
from typing import Protocol

import attrs

from ._spec import check_duration

__all__ = ["RandomSource", "RestartBackoff", "exponential_delay"]


def exponential_delay(n: int, *, initial: float, multiplier: float, maximum: float) -> float:
    """``min(maximum, initial * multiplier ** n)``: the delay after ``n`` growth steps.

    ``n`` counts from 0 (``initial`` itself). For any ``n`` the result is that minimum
    (to within a rounding where the two meet): the power is not computed once it would
    pass the cap, so a huge ``n`` neither overflows nor takes time. ``initial`` above
    ``maximum`` gives ``maximum``; ``initial == 0`` gives 0; ``maximum`` may be ``inf``.

    Raises:
        ValueError: ``n < 0``, ``multiplier < 1`` or not finite, or ``initial`` or
            ``maximum`` negative (or NaN).
    """
    if n < 0:
        raise ValueError(f"n counts growth steps from 0, got {n}")
    if not 1.0 <= multiplier < math.inf:
        raise ValueError(f"multiplier must be finite and >= 1, got {multiplier!r}")
    if not (initial >= 0.0 and maximum >= 0.0):
        raise ValueError(f"initial and maximum must be >= 0, got {initial!r}, {maximum!r}")
    if initial >= maximum:
        return float(maximum)
    if n == 0 or initial == 0.0 or multiplier == 1.0:
        return float(initial)
    # initial * multiplier**n >= maximum exactly when n >= log(maximum/initial)/log(multiplier);
    # taking the logs apart keeps a tiny initial from overflowing the ratio.
    if n >= (math.log(maximum) - math.log(initial)) / math.log(multiplier):
        return float(maximum)
    try:
        return float(min(initial * multiplier**n, maximum))
    except OverflowError:
        pass
    # The power alone overflows although the product stays below the cap (a tiny initial,
    # or no cap at all): go through the logarithms.
    try:
        return min(math.exp(math.log(initial) + n * math.log(multiplier)), maximum)
    except OverflowError:
        return float(maximum)


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

    Should ``random`` raise, the supervisor restarts without jitter (and counts it in
    :attr:`SupervisorSnapshot.hook_failures`); a value outside ``[0, jitter]`` is clamped.

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

    def base_delay(self, consecutive: int) -> float:
        """Seconds before restart number ``consecutive`` (0 for the first), before jitter."""
        if consecutive < 0:
            raise ValueError(f"consecutive counts restarts from 0, got {consecutive}")
        return exponential_delay(
            consecutive, initial=self.initial, multiplier=self.multiplier, maximum=self.max_delay
        )

    def delay(self, consecutive: int) -> float:
        """Seconds to wait before restart number ``consecutive`` (0 for the first)."""
        base = self.base_delay(consecutive)
        if not self.jitter:
            return base
        extra = self.random.uniform(0.0, self.jitter)
        if not 0.0 <= extra <= self.jitter:  # a random source gone wrong; NaN lands on 0
            extra = self.jitter if extra > self.jitter else 0.0
        return base * (1.0 + extra)
