"""The RetryPolicy SPI: decide, synchronously, whether and when to try again."""

from __future__ import annotations

import enum
import math
import random as _random
from typing import Final, Literal, Protocol, TypeAlias, runtime_checkable

import attrs

from .._errors import CircuitOpenError, CloudError, ConfigError, RateLimited, ServiceUnavailable
from .._validation import check_count, check_number, check_seconds
from ..actors._backoff import exponential_delay

__all__ = [
    "DO_NOT_RETRY",
    "ExponentialBackoff",
    "FixedDelay",
    "Jitter",
    "NoRetry",
    "RandomSource",
    "Retry",
    "RetryDecision",
    "RetryPolicy",
    "check_attempt",
    "server_hint",
]


@attrs.frozen
class Retry:
    """Try again after ``delay`` seconds.

    .. versionadded:: 0.1.0
    """

    delay: float

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.delay, int | float) and math.isfinite(self.delay)):
            raise ConfigError(
                f"Retry.delay must be finite seconds, got {self.delay!r}",
                field="delay",
                value=self.delay,
            )
        if self.delay < 0:
            raise ConfigError(
                f"Retry.delay must be >= 0, got {self.delay!r}", field="delay", value=self.delay
            )


#: The longest any built-in policy waits, a server's ``Retry-After`` included, by default.
_DEFAULT_MAX_DELAY: Final = 30.0


class _DoNotRetry(enum.Enum):
    # An enum member is the idiomatic typed singleton: ``decision is DO_NOT_RETRY`` narrows.
    DO_NOT_RETRY = "DO_NOT_RETRY"

    def __repr__(self) -> str:
        return "DO_NOT_RETRY"


#: Give up: the error is final.
DO_NOT_RETRY: Final = _DoNotRetry.DO_NOT_RETRY

#: What :meth:`RetryPolicy.should_retry` returns.
RetryDecision: TypeAlias = Retry | Literal[_DoNotRetry.DO_NOT_RETRY]


@runtime_checkable
class RetryPolicy(Protocol):
    """Decides whether a failed attempt is retried, and after how long.

    ``should_retry`` is synchronous and must be cheap: the runtime calls it on the
    operation's own task. ``attempt`` counts the attempts made so far (1 after the first
    failure); ``max_attempts`` counts all attempts, the first included. The runtime never
    retries past ``max_attempts`` or past the operation's deadline, whatever the policy
    says.

    .. versionadded:: 0.1.0
    """

    @property
    def max_attempts(self) -> int:
        """All attempts allowed, the first included (at least 1)."""
        ...

    def should_retry(self, error: CloudError, attempt: int) -> RetryDecision:
        """Return :class:`Retry` with a delay, or :data:`DO_NOT_RETRY`."""
        ...


class RandomSource(Protocol):
    """The part of :class:`random.Random` that jitter needs; inject a seeded one in tests."""

    def uniform(self, a: float, b: float) -> float: ...


class Jitter(enum.Enum):
    """How :class:`ExponentialBackoff` randomises its delays.

    - ``NONE``: the exact table (100 ms, 200 ms, 400 ms, ...).
    - ``FULL``: uniform in ``[0, d]``; spreads retries the most.
    - ``EQUAL``: uniform in ``[d/2, d]``; keeps at least half the wait.
    - ``DECORRELATED``: uniform in ``[initial, 3 * previous d]``, capped; computed from the
      attempt number alone, so a policy object can be shared by concurrent operations.

    .. versionadded:: 0.1.0
    """

    NONE = "none"
    FULL = "full"
    EQUAL = "equal"
    DECORRELATED = "decorrelated"


def check_attempt(attempt: int) -> None:
    """Reject an ``attempt`` argument that is not a positive int."""
    if isinstance(attempt, bool) or not isinstance(attempt, int):
        raise TypeError(f"attempt must be an int, got {type(attempt).__name__}")
    if attempt < 1:
        raise ValueError(f"attempt counts attempts made so far and starts at 1, got {attempt}")


def server_hint(error: CloudError) -> float | None:
    """The server's ``Retry-After`` carried by ``error``, if any."""
    if isinstance(error, RateLimited | ServiceUnavailable):
        return error.retry_after
    return None


def _retryable(error: CloudError) -> bool:
    # An open breaker is never retried by the inner policy: its rejection is the point.
    return error.retryable and not isinstance(error, CircuitOpenError)


class ExponentialBackoff:
    """Retry retryable errors with exponentially growing delays.

    With the defaults the first retry waits 100 ms, then 200 ms, 400 ms, 800 ms, ..., never
    more than ``max_delay``; three attempts are made in all. A server's ``Retry-After``
    (on :class:`~cloudkit_trio.RateLimited` or :class:`~cloudkit_trio.ServiceUnavailable`)
    is honoured: the delay is never shorter than the hint, but still capped at
    ``max_delay``. Non-retryable errors are never retried.

    The object holds no per-operation state, so one instance can serve every concurrent
    operation of a context.

    Args:
        initial_delay: Delay before the first retry, in seconds.
        multiplier: Growth factor per retry (>= 1).
        max_delay: Upper bound on any delay.
        max_attempts: All attempts, the first included.
        jitter: How to randomise delays; see :class:`Jitter`.
        random: Source of randomness for jitter (seed one in tests).

    .. versionadded:: 0.1.0
    """

    __slots__ = ("_random", "initial_delay", "jitter", "max_attempts", "max_delay", "multiplier")

    def __init__(
        self,
        *,
        initial_delay: float = 0.1,
        multiplier: float = 2.0,
        max_delay: float = _DEFAULT_MAX_DELAY,
        max_attempts: int = 3,
        jitter: Jitter = Jitter.NONE,
        random: RandomSource | None = None,
    ) -> None:
        name = "ExponentialBackoff"
        self.initial_delay = check_seconds(f"{name}.initial_delay", initial_delay, allow_zero=True)
        self.max_delay = check_seconds(f"{name}.max_delay", max_delay, allow_zero=True)
        if self.max_delay < self.initial_delay:
            raise ConfigError(
                f"ExponentialBackoff.max_delay ({max_delay!r}) must be >= initial_delay "
                f"({initial_delay!r})",
                field="max_delay",
                value=max_delay,
            )
        self.multiplier = check_number("ExponentialBackoff.multiplier", multiplier, minimum=1.0)
        self.max_attempts = check_count(f"{name}.max_attempts", max_attempts)
        if not isinstance(jitter, Jitter):
            raise ConfigError(
                f"ExponentialBackoff.jitter must be a Jitter member, got {jitter!r}",
                field="jitter",
                value=jitter,
            )
        self.jitter = jitter
        self._random: RandomSource = random if random is not None else _random.Random()

    def base_delay(self, attempt: int) -> float:
        """The delay after ``attempt`` attempts before jitter: ``initial * multiplier**(n-1)``."""
        check_attempt(attempt)
        return exponential_delay(
            attempt - 1,
            initial=self.initial_delay,
            multiplier=self.multiplier,
            maximum=self.max_delay,
        )

    def delay(self, attempt: int) -> float:
        """The delay before the retry that follows ``attempt`` attempts, jitter applied."""
        base = self.base_delay(attempt)
        match self.jitter:
            case Jitter.NONE:
                return base
            case Jitter.FULL:
                return self._random.uniform(0.0, base)
            case Jitter.EQUAL:
                return self._random.uniform(base / 2, base)
            case Jitter.DECORRELATED:
                previous = self.base_delay(attempt - 1) if attempt > 1 else self.initial_delay
                upper = min(max(previous * 3, self.initial_delay), self.max_delay)
                return min(self._random.uniform(self.initial_delay, upper), self.max_delay)

    def should_retry(self, error: CloudError, attempt: int) -> RetryDecision:
        check_attempt(attempt)
        if attempt >= self.max_attempts or not _retryable(error):
            return DO_NOT_RETRY
        delay = self.delay(attempt)
        hint = server_hint(error)
        if hint is not None:
            delay = max(delay, hint)
        return Retry(min(delay, self.max_delay))

    def __repr__(self) -> str:
        return (
            f"ExponentialBackoff(initial_delay={self.initial_delay!r}, "
            f"multiplier={self.multiplier!r}, max_delay={self.max_delay!r}, "
            f"max_attempts={self.max_attempts!r}, jitter=Jitter.{self.jitter.name})"
        )


class FixedDelay:
    """Retry retryable errors after the same delay each time (or the server's hint, if longer).

    A server's ``Retry-After`` is honoured up to ``max_delay``, as by
    :class:`ExponentialBackoff`: a hostile or broken server cannot park an operation that
    has no deadline, and the concurrency slots it holds, for longer than that.

    Args:
        delay: Delay before every retry, in seconds.
        max_attempts: All attempts, the first included.
        max_delay: Upper bound on a delay stretched by the server's hint (at least
            ``delay``); by default 30 s, or ``delay`` when that is longer.

    .. versionadded:: 0.1.0
    """

    __slots__ = ("delay", "max_attempts", "max_delay")

    def __init__(
        self, delay: float = 1.0, max_attempts: int = 3, *, max_delay: float | None = None
    ) -> None:
        self.delay = check_seconds("FixedDelay.delay", delay, allow_zero=True)
        self.max_attempts = check_count("FixedDelay.max_attempts", max_attempts)
        self.max_delay = (
            max(_DEFAULT_MAX_DELAY, self.delay)
            if max_delay is None
            else check_seconds("FixedDelay.max_delay", max_delay, allow_zero=True)
        )
        if self.max_delay < self.delay:
            raise ConfigError(
                f"FixedDelay.max_delay ({max_delay!r}) must be >= delay ({delay!r})",
                field="max_delay",
                value=max_delay,
            )

    def should_retry(self, error: CloudError, attempt: int) -> RetryDecision:
        check_attempt(attempt)
        if attempt >= self.max_attempts or not _retryable(error):
            return DO_NOT_RETRY
        hint = server_hint(error)
        delay = self.delay if hint is None else max(self.delay, hint)
        return Retry(min(delay, self.max_delay))

    def __repr__(self) -> str:
        return (
            f"FixedDelay(delay={self.delay!r}, max_attempts={self.max_attempts!r}, "
            f"max_delay={self.max_delay!r})"
        )


class NoRetry:
    """Never retry: one attempt. (An expired-credentials refresh-and-retry still happens.)

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    @property
    def max_attempts(self) -> int:
        return 1

    def should_retry(self, error: CloudError, attempt: int) -> RetryDecision:
        check_attempt(attempt)
        return DO_NOT_RETRY

    def __repr__(self) -> str:
        return "NoRetry()"
