"""Admission settings: a retry budget, a rate limit and an adaptive concurrency limit.

Three validated, frozen records. Each says what the runtime keeps per endpoint (scheme,
host, port) and how it decides; the state itself lives in ``cloudkit_trio.runtime``
(``_budget``, ``_ratelimit``, ``_concurrency``). Every bad value raises
:class:`~cloudkit_trio.ConfigError` naming the field, when the record is built.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Final, Literal, TypeAlias

import attrs

from .._errors import ConfigError
from .._validation import check_count, check_number, check_seconds

__all__ = [
    "AdaptiveConcurrency",
    "ConcurrencyAlgorithm",
    "RateLimit",
    "RetryBudget",
]

#: How :class:`AdaptiveConcurrency` learns its limit.
ConcurrencyAlgorithm: TypeAlias = Literal["vegas", "aimd"]
_ALGORITHMS: Final = ("vegas", "aimd")

_Validator: TypeAlias = Callable[[Any, Any, Any], None]


# attrs validators that name the field as ``Record.field``, so a message read in a
# traceback far from the constructor still says which setting was wrong.
def _number(*, above: bool = False, maximum: float = math.inf) -> _Validator:
    def validate(instance: object, attribute: Any, value: object) -> None:
        name = f"{type(instance).__name__}.{attribute.name}"
        check_number(name, value, minimum=0.0, above=above, maximum=maximum)

    return validate


_positive = _number(above=True)


def _seconds(instance: object, attribute: Any, value: object) -> None:
    check_seconds(f"{type(instance).__name__}.{attribute.name}", value)


def _count(instance: object, attribute: Any, value: object) -> None:
    check_count(f"{type(instance).__name__}.{attribute.name}", value)


def _flag(instance: object, attribute: Any, value: object) -> None:
    if not isinstance(value, bool):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be True or False, got {value!r}",
            field=attribute.name,
            value=value,
        )


def _optional_rate(instance: object, attribute: Any, value: object) -> None:
    if value is not None:
        _positive(instance, attribute, value)


def _optional_wait(instance: object, attribute: Any, value: object) -> None:
    if value is not None:
        check_seconds(f"{type(instance).__name__}.{attribute.name}", value, allow_zero=True)


def _optional_key(instance: object, attribute: Any, value: object) -> None:
    if value is not None and (not isinstance(value, str) or not value or value != value.strip()):
        raise ConfigError(
            f"{type(instance).__name__}.{attribute.name} must be a non-empty name, got {value!r}",
            field=attribute.name,
            value=value,
        )


def _algorithm(_instance: object, _attribute: Any, value: object) -> None:
    if value not in _ALGORITHMS:
        raise ConfigError(
            f"AdaptiveConcurrency.algorithm must be 'vegas' or 'aimd', got {value!r}",
            field="algorithm",
            value=value,
        )


@attrs.frozen(kw_only=True)
class RetryBudget:
    """Caps retries per endpoint to a share of first attempts, so retries cannot snowball.

    Over the last ``window`` seconds the runtime counts the endpoint's first attempts and
    the retries it scheduled, and a retry is allowed only while::

        retries + 1 <= ratio * first_attempts + min_per_second * window

    so the retries in any window never exceed that allowance (Finagle's ``RetryBudget``
    semantics: each first attempt deposits ``ratio`` of a retry, each retry withdraws a
    whole one, and ``min_per_second * window`` is a reserve for endpoints with little
    traffic). A retry is counted when it is *scheduled*, before its backoff, so callers
    sleeping before their retry already hold their share. A retry the budget refuses is
    not made: the operation fails with the error of its last attempt. When an endpoint
    fails every call, the load it sees is therefore at most ``1 + ratio`` times the first
    attempts plus the reserve, instead of ``max_attempts`` times.

    Defaults (Finagle's): ``ratio=0.2`` (retries add at most 20 % at high traffic),
    ``min_per_second=10.0``, ``window=10.0`` seconds (counted in ten buckets of a second).
    Tuning: lower ``ratio`` to protect a fragile service harder; raise ``min_per_second``
    for endpoints that see few calls yet need their retries (at 5 calls a second the
    default reserve allows every retry); a longer ``window`` smooths bursts but remembers
    an outage for longer. ``ratio=0`` with ``min_per_second=0`` allows no retry at all.

    .. versionadded:: 0.2.0
    """

    #: Retries allowed per first attempt in the window.
    ratio: float = attrs.field(default=0.2, validator=_number())
    #: Retries allowed per second of the window regardless of traffic.
    min_per_second: float = attrs.field(default=10.0, validator=_number())
    #: Seconds over which attempts and retries are counted.
    window: float = attrs.field(default=10.0, validator=_seconds)


@attrs.frozen
class RateLimit:
    """A token bucket per endpoint: at most ``rate`` attempts a second, ``burst`` at once.

    Every attempt, retries included, takes a token; tokens refill continuously at ``rate``
    a second up to ``burst``. With ``wait=True`` a caller that finds none reserves the
    next one and waits for it, so waiting callers are served first come, first served at
    exactly ``rate`` (200 attempts at ``rate=50`` with ``burst=1`` take 3.98 s). A caller
    whose token would come after its deadline is refused at once, without taking one,
    and a caller cancelled while waiting hands its token to the next. With ``wait=False``
    an attempt that finds no token fails at once with :class:`~cloudkit_trio.Throttled`.

    ``adaptive=True`` learns the rate the server accepts: ``rate`` is only the start.
    Every answer is reported; a throttling one (429, 503 ``SlowDown``, ``Throttling*``
    codes) cuts the rate to 70 % of what the client was measured sending, and the rate
    then grows back along a cubic curve (CUBIC, as botocore's adaptive retry mode),
    slowly near the rate that was throttled and faster beyond it, never above twice the
    measured sending rate, never below ``min_rate`` and never above ``max_rate``.

    ``shared=True`` makes it one limit for every process that shares state
    (:meth:`~cloudkit_trio.CloudContextBuilder.shared_state`): a token bucket in the
    store, named by ``key`` (a quota several endpoints draw on) or the endpoint. Each
    process leases its tokens from it every tenth of a second, as many as it recently
    asked for, and spends them at the rate they came; so its operations never wait on
    the store, and the processes together keep to ``rate``. While the store is away a
    process keeps the rate it last got (``rate`` before the first lease).

    Defaults: ``burst=1`` (evenly spaced attempts; raise it to let idle time be spent in
    a burst), ``wait=True``, ``min_rate=0.5`` a second (botocore's floor: a throttled
    client still probes every two seconds), ``max_rate=None`` (no ceiling). Tuning: set
    ``rate`` a little under the provider's documented limit (S3: 3,500 writes and 5,500
    reads a second per prefix); use ``adaptive`` when the limit is unknown or shared with
    other clients.

    .. versionadded:: 0.2.0
    """

    #: Tokens a second (the starting rate when ``adaptive``).
    rate: float = attrs.field(validator=_positive)
    #: Most tokens the bucket holds: attempts that may start at once after idle time.
    burst: int = attrs.field(default=1, validator=_count)
    #: Wait for a token (True) or fail at once with ``Throttled`` (False).
    wait: bool = attrs.field(default=True, validator=_flag)
    #: Learn the server's rate from its throttling answers.
    adaptive: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    #: The adaptive rate's floor, tokens a second.
    min_rate: float = attrs.field(default=0.5, kw_only=True, validator=_positive)
    #: The adaptive rate's ceiling, tokens a second, or None for none.
    max_rate: float | None = attrs.field(default=None, kw_only=True, validator=_optional_rate)
    #: One bucket for every process sharing state (``.shared_state(...)``), not one each.
    shared: bool = attrs.field(default=False, kw_only=True, validator=_flag)
    #: The shared bucket's name (a quota several endpoints draw on); None: the endpoint.
    key: str | None = attrs.field(default=None, kw_only=True, validator=_optional_key)

    def __attrs_post_init__(self) -> None:
        if self.key is not None and not self.shared:
            raise ConfigError(
                "RateLimit.key names a shared bucket: give shared=True too",
                field="key",
                value=self.key,
            )
        if self.shared and self.adaptive:
            raise ConfigError(
                "RateLimit cannot be shared and adaptive at once: the shared bucket sets "
                "each process's rate",
                field="adaptive",
                value=self.adaptive,
            )
        if not self.adaptive:
            return
        if self.min_rate > self.rate:
            raise ConfigError(
                f"RateLimit.min_rate ({self.min_rate!r}) must not exceed the starting rate "
                f"({self.rate!r}); lower min_rate or start higher",
                field="min_rate",
                value=self.min_rate,
            )
        if self.max_rate is not None and self.max_rate < self.rate:
            raise ConfigError(
                f"RateLimit.max_rate ({self.max_rate!r}) must be at least the starting rate "
                f"({self.rate!r})",
                field="max_rate",
                value=self.max_rate,
            )


@attrs.frozen(kw_only=True)
class AdaptiveConcurrency:
    """Learns, per endpoint, how many attempts may be in flight at once.

    Each endpoint starts at ``initial_limit`` operations in flight; one beyond the limit
    is not started (see ``max_wait``). Every attempt's outcome and round-trip time adjust the limit,
    once per round trip, between ``min_limit`` and ``max_limit``:

    - ``"vegas"`` (the default) watches latency, as TCP Vegas and Netflix's
      concurrency-limits do: the shortest round trip seen is the endpoint's latency
      without a queue, and ``limit * (1 - no_load_rtt / rtt)`` estimates how many
      attempts are queued at the server. The limit grows while that queue is short
      (under about ``3 * log10(limit)``, at most 10 % of the limit) and three quarters
      of the limit are in use, and shrinks while it is long (over about
      ``6 * log10(limit)``, at most 20 % of the limit), straight to what was being
      served plus a short queue; so it settles a little above the concurrency the
      endpoint serves without queueing. Every ``probe_multiplier`` round trips (that many times
      the limit of attempts) it halves the limit for one round trip to measure the
      no-load latency afresh, so an endpoint that became slower for good is not
      mistaken for a congested one.
    - ``"aimd"`` watches only drops: +1 per round trip while three quarters of the limit
      are in use, times ``backoff`` on a drop. Choose it for endpoints whose latency varies
      for reasons other than load (large objects, cold caches).

    A *drop* is an attempt that timed out or was answered 503 or throttled: both
    algorithms then multiply the limit by ``backoff``, at most once per round trip.

    An operation that finds every slot taken waits at most ``max_wait`` seconds for one
    (and never past its deadline), then fails with :class:`~cloudkit_trio.Overloaded`,
    nothing sent. The default, ``0.0``, refuses at once, as Netflix's and Envoy's
    limiters do: the limit is the endpoint's capacity, and a queue in front of it would
    only add its wait to every answer. A positive ``max_wait`` absorbs bursts shorter
    than that; ``None`` waits up to the deadline (a batch job that would rather queue).

    Defaults: ``initial_limit=20``, ``min_limit=1``, ``max_limit=1000`` (Netflix's),
    ``backoff=0.9``, ``probe_multiplier=30``, ``max_wait=0.0``. The endpoint's bulkhead
    (``CloudConfig.max_concurrency_per_endpoint``) still applies: set ``max_limit`` no
    higher. Tuning: raise ``min_limit`` if a burst of errors must not starve an endpoint;
    lower ``backoff`` (0.5 is TCP's) to back off harder. Vegas tolerates a queue of at least
    three to six attempts at the server, whatever its size: an endpoint that serves only a few
    attempts at once then answers two or three times slower than unloaded; prefer
    ``"aimd"`` or a low ``max_limit`` there.

    .. versionadded:: 0.2.0
    """

    algorithm: ConcurrencyAlgorithm = attrs.field(default="vegas", validator=_algorithm)
    #: The limit before anything has been learned.
    initial_limit: int = attrs.field(default=20, validator=_count)
    min_limit: int = attrs.field(default=1, validator=_count)
    max_limit: int = attrs.field(default=1000, validator=_count)
    #: What a drop multiplies the limit by: above 0, below 1.
    backoff: float = attrs.field(default=0.9, validator=_number(above=True, maximum=0.99))
    #: Vegas re-measures the no-load latency after this many times the limit of attempts.
    probe_multiplier: int = attrs.field(default=30, validator=_count)
    #: Seconds an operation may wait for a slot, 0 for none, None up to its deadline.
    max_wait: float | None = attrs.field(default=0.0, validator=_optional_wait)

    def __attrs_post_init__(self) -> None:
        if self.min_limit > self.max_limit:
            raise ConfigError(
                f"AdaptiveConcurrency.min_limit ({self.min_limit}) must not exceed max_limit "
                f"({self.max_limit})",
                field="min_limit",
                value=self.min_limit,
            )
        if not self.min_limit <= self.initial_limit <= self.max_limit:
            raise ConfigError(
                f"AdaptiveConcurrency.initial_limit ({self.initial_limit}) must lie between "
                f"min_limit ({self.min_limit}) and max_limit ({self.max_limit})",
                field="initial_limit",
                value=self.initial_limit,
            )
