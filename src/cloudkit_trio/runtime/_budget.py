"""One endpoint's retry budget: first attempts and retries counted over a sliding window.

Finagle's ``RetryBudget``, in integers: each first attempt deposits ``ratio`` of a retry,
each retry withdraws a whole one, and ``min_per_second * window`` is a standing reserve.
A retry is allowed while the window's retries plus this one stay within
``ratio * first_attempts + reserve``, compared as exact fractions of the decimals the
user wrote (as the breaker compares its failure ratio), so ``ratio=0.2`` allows exactly
one retry per five first attempts, never one more because ``0.2 * 5`` rounds up.

The window is ten buckets of ``window / 10`` seconds, as the breaker's: old attempts fall
out a tenth at a time. Running totals are kept, and a bucket is emptied only when the
clock moves into it, so both calls are O(1) and touch a handful of attributes. The state
is synchronous: the runtime calls it on the operation's own task, without a lock (Trio
runs one task at a time) and without a message round trip.
"""

from __future__ import annotations

from fractions import Fraction
from typing import TYPE_CHECKING, Final

import attrs

if TYPE_CHECKING:
    from ..spi._admission import RetryBudget

__all__ = ["RetryBudgetSnapshot", "RetryBudgetState"]

_BUCKETS: Final = 10


@attrs.frozen
class RetryBudgetSnapshot:
    """An endpoint's retry budget at one instant.

    .. versionadded:: 0.2.0
    """

    endpoint: str
    #: First attempts counted in the current window.
    first_attempts: int
    #: Retries allowed (and so counted) in the current window.
    retries: int
    #: Retries the window still allows: ``ratio * first_attempts + reserve - retries``.
    balance: float
    #: Whether a retry scheduled now would be allowed (``balance >= 1``).
    allowed: bool
    #: Retries refused since the budget was created.
    suppressed: int
    #: When the budget was last used (``trio.current_time()``).
    last_used: float


def _fraction(value: float) -> Fraction:
    # The decimal the user wrote, not its binary approximation (0.2 is not 0.2000000000000000111).
    return Fraction(repr(value))


class RetryBudgetState:
    """The retry budget of one endpoint; see :class:`~cloudkit_trio.RetryBudget`.

    Call :meth:`deposit` once per first attempt and :meth:`try_withdraw` when a retry is
    about to be scheduled (before its backoff); a False answer means the retry must not
    be made.

    Args:
        endpoint: ``scheme://host:port``.
        settings: The validated budget settings.
        now: The current ``trio.current_time()``.
    """

    __slots__ = (
        "_epoch",
        "_first_total",
        "_firsts",
        "_per_first",
        "_reserve",
        "_retries",
        "_retry_total",
        "_unit",
        "_width",
        "endpoint",
        "last_used",
        "settings",
        "suppressed",
    )

    def __init__(self, endpoint: str, settings: RetryBudget, now: float) -> None:
        self.endpoint = endpoint
        self.settings = settings
        self.last_used = now
        #: Retries refused since creation.
        self.suppressed = 0
        ratio = _fraction(settings.ratio)
        reserve = _fraction(settings.min_per_second) * _fraction(settings.window)
        # retries * unit <= per_first * first_attempts + reserve, all integers:
        # both sides of "retries <= ratio * first + reserve" times both denominators.
        self._unit = ratio.denominator * reserve.denominator
        self._per_first = ratio.numerator * reserve.denominator
        self._reserve = reserve.numerator * ratio.denominator
        self._width = settings.window / _BUCKETS
        self._epoch = int(now // self._width)
        self._firsts = [0] * _BUCKETS
        self._retries = [0] * _BUCKETS
        self._first_total = 0
        self._retry_total = 0

    # -- the hot path ----------------------------------------------------------------------

    def deposit(self, now: float) -> None:
        """Count one first attempt (not a retry) made at ``now``."""
        self.last_used = now
        self._firsts[self._advance(now)] += 1
        self._first_total += 1

    def try_withdraw(self, now: float) -> bool:
        """Whether a retry may be scheduled at ``now``; True counts it against the window."""
        self.last_used = now
        index = self._advance(now)
        if (self._retry_total + 1) * self._unit > (
            self._per_first * self._first_total + self._reserve
        ):
            self.suppressed += 1
            return False
        self._retries[index] += 1
        self._retry_total += 1
        return True

    # -- for the registry and introspection -------------------------------------------------

    @property
    def idle_since(self) -> float:
        """When the budget comes to rest: its last use plus ``window``, when the window is
        empty and a fresh budget would decide exactly as this one."""
        return self.last_used + self.settings.window

    @property
    def evictable(self) -> bool:
        """Always True: nothing waits on a budget. Dropping one before :attr:`idle_since`
        forgets the window's retries (a fresh budget grants the full reserve again)."""
        return True

    def snapshot(self, now: float) -> RetryBudgetSnapshot:
        """The budget as of ``now``."""
        self._advance(now)
        balance = (
            self._per_first * self._first_total + self._reserve - self._retry_total * self._unit
        ) / self._unit
        return RetryBudgetSnapshot(
            endpoint=self.endpoint,
            first_attempts=self._first_total,
            retries=self._retry_total,
            balance=balance,
            allowed=balance >= 1,
            suppressed=self.suppressed,
            last_used=self.last_used,
        )

    # -- internals -------------------------------------------------------------------------

    def _advance(self, now: float) -> int:
        """The current bucket's index, after emptying the buckets the clock moved past."""
        epoch = int(now // self._width)
        last = self._epoch
        if epoch > last:
            firsts, retries = self._firsts, self._retries
            if epoch - last >= _BUCKETS:
                for index in range(_BUCKETS):
                    firsts[index] = retries[index] = 0
                self._first_total = self._retry_total = 0
            else:
                for stale in range(last + 1, epoch + 1):
                    index = stale % _BUCKETS
                    self._first_total -= firsts[index]
                    self._retry_total -= retries[index]
                    firsts[index] = retries[index] = 0
            self._epoch = epoch
        # A clock that reads earlier than the last call (never with trio's) counts in the
        # current bucket.
        return self._epoch % _BUCKETS
