"""The chaos scenario: seeded faults, cancellation, faulty SPIs, shutdowns; public API only.

One call, :func:`run_chaos`, runs a reproducible plan of operations against real loopback
HTTP servers (trio sockets and h11, written here so that every fault is ours to choose)
and returns a :class:`ChaosFigures` record; every figure in
:meth:`ChaosFigures.violations` must be zero. ``tests/runtime/test_chaos.py`` runs it for a
few thousand operations, ``benchmarks/chaos.py`` for a hundred thousand. This module is
loaded by file path from the benchmark, so it imports nothing relative.

What is planned from the seed (``random.Random(seed)``), per operation: the entry point
(``execute``, ``stream``, a ``submit_channel()`` clone's ``send``, ``submit_nowait``,
``submit``), the endpoint (three servers with different fault mixes, and a port nobody
listens on), the fault of each attempt (encoded in the path ``/f/<fault>,<fault>,.../<id>``;
the server counts the requests per id), the method, ``timeout=`` and ``Operation.timeout``,
the caller's own cancellation (a ``move_on_after`` budget, or a nursery cancelled by a
"storm" at a random moment), how a stream's body is read; per phase, how the context is
stopped while work is in flight (``async with`` exit, ``await cloud.aclose()``, the host
nursery cancelled) and when. One context is run once per phase. The SPIs (auth provider,
retry policy, metrics collector, logger, signer) fail from their own seeded sources; their
calls interleave with I/O, so only the plan, not every fault of an SPI, is reproducible.

The rules the figures apply ("the context says" means ``cloud.state``, or failing that
``cloud.snapshot()``, read synchronously right before the call):

- **Replies.** A submission is accepted when ``send`` or ``submit_nowait`` returned. Every
  accepted one gets exactly one :class:`~cloudkit_trio.Reply` (``missing``, ``duplicate``);
  a refused or cancelled send gets none (``phantom``).
- **Escapes.** ``execute``/``stream``/``submit`` end with a result, a
  :class:`~cloudkit_trio.CloudError`, or the caller's own cancellation (a group of
  ``Cancelled`` counts as that); a refusal is :class:`~cloudkit_trio.ContextClosed` (or
  :class:`~cloudkit_trio.Overloaded` for a full queue while running). Anything else is
  ``escaped``; another ``CloudError`` as a refusal is ``wrong_refusal``. A call made while
  the context says it is closing must be refused (``accepted_while_closing``); a refusal as
  closed while it still says running, after the call, means the state lags behind the
  entry points (``refused_while_running``). The context itself must never raise out of
  ``async with`` or ``serve`` (``context_crashes``), nor take more than its grace period
  and a margin to close (``close_hung``).
- **Time.** An operation's deadline is the earliest of ``start + timeout``,
  ``start + Operation.timeout`` (for a submission: acceptance plus its timeout), the
  caller's enclosing deadline, and the moment the caller's nursery was cancelled. If the
  context began closing before the operation ended, it must also end by ``close + grace``
  (``shutdown_grace`` for a graceful close, 0 for a hard stop); a send blocked on a full
  queue likewise. Under ``MockClock`` these bounds are exact: the clock only jumps to the
  next deadline, and nothing legitimately runs past it, so ``slack`` only absorbs float
  rounding (raise it for a real clock). Past the bound (``past_deadline``, the worst in
  ``worst_overrun``) and a margin beyond, the scenario cancels the call itself: ``hung``.
- **Leaks.** After each run of the context: no task alive that was not alive before
  (the servers' own connection tasks are counted and subtracted; tasks running the
  library's code are named), no file descriptor open that the servers do not own (each
  named by where it connects), nothing in flight in the snapshot (operations, queued
  submissions, breaker permits), and the snapshot says closed (``lifecycle_wrong``).
- **Metrics** (``RecordingMetrics`` is a collector next to the faulty one). An operation
  the runtime accepted and ran produces exactly one ``SUCCESS`` or ``FAILURE`` record;
  a refusal at the door produces none. Records are reconciled per operation name,
  ``<entry>-<cancel>-<stop>`` (so callers who never cancel are held to exact counts).
  Seen from outside, a call owes a *definite success* (a response; a stream block left
  without a body error; a reply with a response), a *definite failure* (a ``CloudError``
  from a call accepted while running, a body error handled inside the block, a reply with
  an error other than ``ContextClosed``), 0 or 1 failure (a ``ContextClosed`` reply:
  refused from the queue, or cancelled while running; ``Overloaded`` from ``execute``),
  or 0 or 1 record of either kind (cancelled by its caller, hung, escaped, never replied,
  accepted while closing). ``metrics_mismatch`` counts records outside those ranges
  (where, in ``metrics_outside``); events the aggregator dropped are ``metrics_dropped``.
"""

from __future__ import annotations

import datetime as dt
import enum
import math
import os
import random
import socket
import struct
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Hashable
from typing import Any, ClassVar, Final

import attrs
import h11
import trio
import trio.lowlevel

import cloudkit_trio as ck
from cloudkit_trio.testing import RecordingMetrics

__all__ = [
    "ChaosFigures",
    "ChaosServer",
    "Entry",
    "FAULTS",
    "SPIS",
    "Shutdown",
    "Step",
    "plan_operations",
    "run_chaos",
]

SERVICE: Final = "chaos"
# The waits an OperationTimeout may name (DESIGN.md §6.7), and "admission": refused
# before sending because the deadline left is shorter than the endpoint's latency.
WAITS: Final = frozenset(
    {
        "queue",
        "credentials",
        "capacity",
        "permit",
        "backoff",
        "attempt",
        "body",
        "rate_limit",
        "admission",
    }
)
#: Every fault the server can serve (see :class:`ChaosServer`).
FAULTS: Final = (
    "ok",
    "e401x",
    "big",
    "slow",
    "drip",
    "e500",
    "e503",
    "e503r",
    "e429",
    "reset",
    "trunc",
    "hang",
)
_PACKAGE_DIR: Final = os.path.dirname(ck.__file__)
_READ: Final = 65536
_BIG_CHUNK: Final = b"b" * 8192
_EXPIRED: Final = b"<Error><Code>ExpiredToken</Code><Message>token expired</Message></Error>"
_DEAD: Final = 3
# Seconds past the grace period a close may take (the runtime's own shutdown budgets).
_CLOSE_MARGIN: Final = 15.0
_FD_DIR: Final = "/proc/self/fd"
#: The extension points the scenario can make misbehave.
SPIS: Final = frozenset({"auth", "logger", "metrics", "retry", "signer"})


class Entry(enum.Enum):
    """How an operation enters the runtime."""

    EXECUTE = "execute"
    STREAM = "stream"
    CHANNEL = "channel"
    NOWAIT = "nowait"
    SUBMIT = "submit"


class Cancel(enum.Enum):
    """How the caller cancels its own call, if it does."""

    NONE = "none"
    BUDGET = "budget"
    GROUP = "group"


class Read(enum.Enum):
    """How a stream's body is read inside the block."""

    ALL = "all"
    EARLY = "early"
    CATCH = "catch"
    NONE = "none"


class Shutdown(enum.Enum):
    """How a phase stops the context while work is in flight."""

    ASYNC_WITH = "async_with"
    ACLOSE = "aclose"
    HARD = "hard"


# -- the plan ------------------------------------------------------------------------------


@attrs.frozen
class Step:
    """One planned operation."""

    index: int
    entry: Entry
    endpoint: int
    faults: tuple[str, ...]
    method: str
    timeout: float | None
    op_timeout: float | None
    cancel: Cancel
    budget: float
    read: Read


@attrs.frozen
class PhasePlan:
    """One run of the context: which steps, how it is stopped, after how many were issued."""

    index: int
    mode: Shutdown
    start: int
    stop: int
    trip_at: int


# Where operations go: the config's endpoint (by path), a flaky one, a bad one (its breaker
# opens), and a port nobody listens on (connection refused).
_ENDPOINTS: Final = ((0, 55), (1, 30), (2, 12), (_DEAD, 3))
_PROFILES: Final[dict[int, dict[str, int]]] = {
    0: {
        "ok": 78,
        "slow": 5,
        "e503": 3,
        "e503r": 1,
        "e500": 2,
        "e429": 2,
        "e401x": 3,
        "reset": 2,
        "trunc": 3,
        "hang": 1,
        "drip": 3,
    },
    1: {
        "ok": 45,
        "slow": 10,
        "e503": 8,
        "e503r": 3,
        "e500": 8,
        "e429": 6,
        "e401x": 3,
        "reset": 8,
        "trunc": 6,
        "hang": 3,
        "drip": 3,
    },
    2: {"ok": 10, "slow": 10, "e503": 20, "e500": 15, "reset": 20, "hang": 15, "trunc": 10},
    _DEAD: {"ok": 1},
}
# A stream's successful answer is more often a body worth reading.
_STREAM_OK: Final = (("big", 55), ("drip", 15), ("trunc", 15), ("ok", 15))
_ENTRIES: Final = (
    (Entry.EXECUTE, 32),
    (Entry.STREAM, 16),
    (Entry.CHANNEL, 30),
    (Entry.NOWAIT, 12),
    (Entry.SUBMIT, 10),
)
_READS: Final = ((Read.ALL, 40), (Read.EARLY, 20), (Read.CATCH, 30), (Read.NONE, 10))
_METHODS: Final = (("GET", 70), ("PUT", 20), ("POST", 10))
_ATTEMPTS: Final = 3


def _pick(rng: random.Random, table: Any) -> Any:
    items = [item for item, _ in table]
    return rng.choices(items, weights=[weight for _, weight in table])[0]


def _fault(rng: random.Random, endpoint: int, entry: Entry) -> str:
    profile = _PROFILES[endpoint]
    kind = rng.choices(list(profile), weights=list(profile.values()))[0]
    if kind == "ok" and entry is Entry.STREAM:
        kind = _pick(rng, _STREAM_OK)
    if kind == "slow":
        return f"slow-{rng.randint(1, 15) * 100}"
    if kind == "drip":
        return f"drip-{rng.randint(1, 4) * 100}"
    return kind


def _tenths(rng: random.Random, low: int, high: int) -> float:
    # Durations on a grid of 0.1 s: timers that coincide cost a MockClock one jump, not many.
    return rng.randint(low, high) / 10


def _step(rng: random.Random, index: int) -> Step:
    entry = _pick(rng, _ENTRIES)
    endpoint = _pick(rng, _ENDPOINTS)
    faults = tuple(_fault(rng, endpoint, entry) for _ in range(_ATTEMPTS))
    timeout: float | None = None
    op_timeout: float | None = None
    if entry in (Entry.EXECUTE, Entry.STREAM):
        if rng.random() < 0.8:
            timeout = _tenths(rng, 2, 30)
        if rng.random() < 0.5 or timeout is None:
            op_timeout = _tenths(rng, 3, 40)
    else:
        op_timeout = _tenths(rng, 3, 40)
    cancel = Cancel.NONE
    if entry is not Entry.NOWAIT:
        roll = rng.random()
        cancel = Cancel.BUDGET if roll < 0.10 else Cancel.GROUP if roll < 0.18 else Cancel.NONE
    return Step(
        index=index,
        entry=entry,
        endpoint=endpoint,
        faults=faults,
        method=_pick(rng, _METHODS),
        timeout=timeout,
        op_timeout=op_timeout,
        cancel=cancel,
        budget=_tenths(rng, 1, 10) / 2,
        read=_pick(rng, _READS),
    )


def plan_operations(
    seed: int, operations: int, phases: int
) -> tuple[tuple[Step, ...], tuple[PhasePlan, ...]]:
    """The steps and phases a seed stands for; the same seed always gives the same plan."""
    if operations < phases or phases < 1:
        raise ValueError("need at least one operation per phase and one phase")
    rng = random.Random(seed)
    steps = tuple(_step(rng, index) for index in range(operations))
    modes = [list(Shutdown)[i % len(Shutdown)] for i in range(phases)]
    rng.shuffle(modes)
    weights = [rng.uniform(0.5, 1.5) for _ in range(phases)]
    total, reached = sum(weights), 0.0
    bounds = [0]
    for weight in weights[:-1]:
        reached += weight
        bounds.append(round(operations * reached / total))
    bounds.append(operations)
    # Every phase gets at least one operation.
    for i in range(1, phases):
        bounds[i] = max(bounds[i], bounds[i - 1] + 1)
    for i in range(phases - 1, 0, -1):
        bounds[i] = min(bounds[i], bounds[i + 1] - 1)
    plans = []
    for index, mode in enumerate(modes):
        start, stop = bounds[index], bounds[index + 1]
        trip = start + max(1, round((stop - start) * rng.uniform(0.5, 0.9)))
        plans.append(PhasePlan(index=index, mode=mode, start=start, stop=stop, trip_at=trip))
    return steps, tuple(plans)


# -- the server ----------------------------------------------------------------------------


class ChaosServer:
    """A loopback HTTP/1.1 server (trio sockets and h11) that fails each request as told.

    A request for ``/f/<plan>/<id>`` is answered with the fault of ``plan`` (a
    comma-separated list, one per attempt, the last one repeating) at the position of the
    number of requests this server has seen for ``id``. Faults: ``ok``; ``big`` (48 KiB in
    chunks); ``slow-<ms>``; ``drip-<ms>`` (a body in four chunks, ``ms`` apart);
    ``e500``; ``e503``; ``e503r`` (with ``Retry-After: 1``); ``e429`` (``Retry-After: 1``);
    ``e401x`` (401 ``ExpiredToken``: the runtime must refresh the credentials and retry);
    ``reset`` (RST before any response); ``trunc`` (``Content-Length`` larger than the body,
    then close); ``hang`` (no answer until the client closes, at most ``hang_cap`` seconds).

    It counts its own sockets and connection tasks, so the scenario can tell them from
    leaks, and the faults it served.
    """

    def __init__(self, *, hang_cap: float = 120.0) -> None:
        self.port = 0
        self.hang_cap = hang_cap
        #: File descriptors of the server's own sockets (listener and connections).
        self.fds: set[int] = set()
        self.handlers = 0
        self.served: Counter[str] = Counter()
        self.hang_capped = 0
        self.own_bugs = 0
        self._attempts: dict[str, int] = {}

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def run(
        self, *, task_status: trio.TaskStatus[ChaosServer] = trio.TASK_STATUS_IGNORED
    ) -> None:
        listeners = await trio.open_tcp_listeners(0, host="127.0.0.1", backlog=512)
        self.fds.update(each.socket.fileno() for each in listeners)
        listener = listeners[0]
        try:
            self.port = listener.socket.getsockname()[1]
            async with trio.open_nursery() as nursery:
                task_status.started(self)
                while True:
                    stream = await listener.accept()
                    self.fds.add(stream.socket.fileno())
                    self.handlers += 1
                    nursery.start_soon(self._connection, stream)
        finally:
            for each in listeners:
                self.fds.discard(each.socket.fileno())
                each.socket.close()

    async def _connection(self, stream: trio.SocketStream) -> None:
        try:
            connection = h11.Connection(h11.SERVER)
            while await self._exchange(connection, stream):
                connection.start_next_cycle()
        except h11.LocalProtocolError:
            self.own_bugs += 1
        except (
            trio.BrokenResourceError,
            trio.ClosedResourceError,
            h11.RemoteProtocolError,
            OSError,
        ):
            pass  # the client went away, or gave up half-way: drop the connection
        finally:
            self.fds.discard(stream.socket.fileno())
            stream.socket.close()
            self.handlers -= 1

    async def _exchange(self, connection: h11.Connection, stream: trio.SocketStream) -> bool:
        request = await _receive_request(connection, stream)
        if request is None:
            return False
        fault = self._fault_for(request.target.decode("ascii", "replace"))
        self.served[fault.split("-")[0]] += 1
        keep = await self._answer(connection, stream, fault)
        return keep and connection.our_state is h11.DONE and connection.their_state is h11.DONE

    def _fault_for(self, target: str) -> str:
        parts = target.split("?")[0].split("/")
        if len(parts) != 4 or parts[1] != "f":
            return "ok"
        faults, key = parts[2].split(","), parts[3]
        seen = self._attempts.get(key, 0)
        self._attempts[key] = seen + 1
        return faults[min(seen, len(faults) - 1)]

    async def _answer(
        self, connection: h11.Connection, stream: trio.SocketStream, fault: str
    ) -> bool:
        kind, _, argument = fault.partition("-")
        if kind == "slow":
            await trio.sleep(int(argument) / 1000)
            kind = "ok"
        if kind == "ok":
            await _respond(connection, stream, 200, [b"ok " * 10])
        elif kind == "big":
            await _respond(connection, stream, 200, [_BIG_CHUNK] * 6)
        elif kind == "drip":
            await _drip(connection, stream, int(argument) / 1000)
        elif kind in ("e500", "e503"):
            await _respond(connection, stream, int(kind[1:]), [b"injected"])
        elif kind == "e401x":
            await _respond(
                connection, stream, 401, [_EXPIRED], [(b"content-type", b"application/xml")]
            )
        elif kind in ("e503r", "e429"):
            status = 503 if kind == "e503r" else 429
            await _respond(connection, stream, status, [b"injected"], [(b"retry-after", b"1")])
        elif kind == "reset":
            stream.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            return False
        elif kind == "trunc":
            headers = [(b"content-length", b"4096"), (b"content-type", b"application/octet-stream")]
            await _send(connection, stream, h11.Response(status_code=200, headers=headers))
            await _send(connection, stream, h11.Data(data=b"t" * 1000))
            return False
        elif kind == "hang":
            with trio.move_on_after(self.hang_cap) as cap:
                while await stream.receive_some(_READ):
                    pass
            self.hang_capped += cap.cancelled_caught
            return False
        else:
            await _respond(connection, stream, 400, [b"unknown fault"])
        return True


async def _receive_request(
    connection: h11.Connection, stream: trio.SocketStream
) -> h11.Request | None:
    request: h11.Request | None = None
    while True:
        event = connection.next_event()
        if event is h11.NEED_DATA:
            connection.receive_data(await stream.receive_some(_READ))
        elif isinstance(event, h11.Request):
            request = event
        elif isinstance(event, h11.EndOfMessage):
            return request
        elif isinstance(event, h11.ConnectionClosed) or event is h11.PAUSED:
            return None


async def _send(connection: h11.Connection, stream: trio.SocketStream, event: Any) -> None:
    data = connection.send(event)
    if data:
        await stream.send_all(data)


async def _respond(
    connection: h11.Connection,
    stream: trio.SocketStream,
    status: int,
    chunks: list[bytes],
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    length = str(sum(map(len, chunks))).encode()
    headers = [(b"content-length", length), (b"content-type", b"application/octet-stream")]
    await _send(
        connection, stream, h11.Response(status_code=status, headers=headers + (extra or []))
    )
    for chunk in chunks:
        await _send(connection, stream, h11.Data(data=chunk))
    await _send(connection, stream, h11.EndOfMessage())


async def _drip(connection: h11.Connection, stream: trio.SocketStream, pause: float) -> None:
    headers = [(b"content-length", str(4 * len(_BIG_CHUNK)).encode())]
    await _send(connection, stream, h11.Response(status_code=200, headers=headers))
    for _ in range(4):
        await _send(connection, stream, h11.Data(data=_BIG_CHUNK))
        await trio.sleep(pause)
    await _send(connection, stream, h11.EndOfMessage())


# -- faulty SPIs ---------------------------------------------------------------------------


class FlakyAuth(ck.AuthProvider):
    """Short-lived credentials from a provider that is sometimes slow, hangs, fails or lies.

    It also checks the refresher from its side: two calls at once (``overlaps``) and a call
    sooner than ``min_gap`` after a failed one in the same run of the context
    (``too_soon``: the failure backoff is 1 s doubling, jittered, and it holds for every
    call, the forced refresh after an ``ExpiredToken`` included, or a storm of 401s would
    hammer a provider that is down). A call that comes too soon is held for ``min_gap``,
    so a refresher that loops on failures cannot spin a ``MockClock`` that never jumps.
    """

    def __init__(
        self,
        rng: random.Random,
        *,
        faulty: bool = True,
        lifetime: float = 1.0,
        min_gap: float = 0.1,
    ) -> None:
        self._rng = rng
        self.faulty = faulty
        self.lifetime = lifetime
        self.min_gap = min_gap
        self.calls = 0
        self.failures = 0
        self.too_soon = 0
        self.overlaps = 0
        self._active = 0
        self._failed_at: float | None = None

    def new_run(self) -> None:
        """A new run of the context: its refresher starts from scratch."""
        self._failed_at = None

    async def get_credentials(self) -> ck.Credentials:
        self.calls += 1
        self.overlaps += self._active > 0
        self._active += 1
        failed = True
        try:
            await trio.lowlevel.checkpoint()
            if self._failed_at is not None and trio.current_time() - self._failed_at < self.min_gap:
                self.too_soon += 1
                await trio.sleep(self.min_gap)
            roll = self._roll()
            if roll < 0.10:
                await trio.sleep(self._rng.randint(1, 15) / 10)
            elif roll < 0.13:
                await trio.sleep(20.0)  # a hang, as far as any operation can tell
            roll = self._roll()
            if roll < 0.08:
                raise ck.TokenRefreshFailed("chaos: the token service said no")
            if roll < 0.12:
                raise RuntimeError("chaos: a bug in the auth provider")
            if roll < 0.15:
                return "not credentials"  # type: ignore[return-value]
            expires = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=self.lifetime)
            credentials = ck.Credentials(f"AKID{self.calls}", "SECRET", expires_at=expires)
            failed = False
            return credentials
        finally:
            self._active -= 1
            if failed:
                self.failures += 1
                self._failed_at = trio.current_time()
            else:
                self._failed_at = None

    def _roll(self) -> float:
        return self._rng.random() if self.faulty else 1.0


class FlakyRetry:
    """Exponential backoff whose ``should_retry`` sometimes raises or returns garbage."""

    def __init__(self, rng: random.Random, *, faulty: bool = True) -> None:
        self._rng = rng
        self.faulty = faulty
        self._inner = ck.ExponentialBackoff(
            initial_delay=0.05, max_delay=1.0, max_attempts=_ATTEMPTS
        )
        self.calls = 0

    @property
    def max_attempts(self) -> int:
        return self._inner.max_attempts

    def should_retry(self, error: ck.CloudError, attempt: int) -> ck.RetryDecision:
        self.calls += 1
        roll = self._rng.random() if self.faulty else 1.0
        if roll < 0.03:
            raise RuntimeError("chaos: a bug in the retry policy")
        if roll < 0.04:
            raise ValueError("chaos: the retry policy could not decide")
        if roll < 0.05:
            return "later"  # type: ignore[return-value]
        return self._inner.should_retry(error, attempt)


class FlakyMetrics(ck.MetricsCollector):
    """A collector that sometimes raises, and now and then takes its time."""

    def __init__(self, rng: random.Random, *, faulty: bool = True) -> None:
        self._rng = rng
        self.faulty = faulty
        self.calls = 0

    async def _maybe_fail(self) -> None:
        self.calls += 1
        roll = self._rng.random() if self.faulty else 1.0
        if roll < 0.05:
            raise RuntimeError("chaos: the metrics backend is down")
        if roll < 0.06:
            await trio.sleep(0.05)

    async def record(self, metrics: ck.OperationMetrics) -> None:
        await self._maybe_fail()

    async def increment_counter(self, name: str, value: float = 1.0, tags: Any = None) -> None:
        await self._maybe_fail()

    async def record_gauge(self, name: str, value: float, tags: Any = None) -> None:
        await self._maybe_fail()

    async def record_histogram(self, name: str, value: float, tags: Any = None) -> None:
        await self._maybe_fail()


class FlakyLogger(ck.Logger):
    """A logger whose methods sometimes raise (as a sink on a closed stream would)."""

    def __init__(self, rng: random.Random, *, faulty: bool = True) -> None:
        self._rng = rng
        self.faulty = faulty
        self.entries = 0

    def is_enabled(self, level: ck.LogLevel) -> bool:
        if self.faulty and self._rng.random() < 0.01:
            raise RuntimeError("chaos: the logger's level lookup failed")
        return True

    def log(self, entry: ck.LogEntry) -> None:
        self.entries += 1
        roll = self._rng.random() if self.faulty else 1.0
        if roll < 0.06:
            raise RuntimeError("chaos: the log sink is broken")
        if roll < 0.10:
            raise ValueError("I/O operation on closed file.")


class ChaosSigner:
    """Needs credentials (so the auth provider is exercised); sometimes fails to sign."""

    needs_credentials = True

    def __init__(
        self, rng: random.Random, *, faulty: bool = True, fault_rate: float = 0.003
    ) -> None:
        self._rng = rng
        self.fault_rate = fault_rate if faulty else 0.0
        self.garbage = 0

    def sign(self, request: Any, credentials: ck.Credentials | None) -> None:
        if not isinstance(credentials, ck.Credentials):
            self.garbage += 1  # the runtime handed over something no real signer can use
        if self._rng.random() < self.fault_rate:
            raise RuntimeError("chaos: the signer failed")
        request.headers["x-key"] = credentials.access_key  # type: ignore[union-attr]


# -- the figures ---------------------------------------------------------------------------


def _counts(counter: Counter[str]) -> str:
    return ",".join(f"{key}:{value}" for key, value in sorted(counter.items())) or "-"


@attrs.frozen(kw_only=True)
class ChaosFigures:
    """What one scenario measured. :meth:`violations` lists the figures that must be zero."""

    seed: int
    operations: int
    concurrency: int
    phases: int
    #: execute/stream/submit calls, and channel/submit_nowait submissions attempted.
    calls: int
    submissions: int
    #: Submissions accepted (send or submit_nowait returned), and those that got a reply.
    submitted: int
    replied: int
    refused: int
    missing: int
    duplicate: int
    phantom: int
    escaped: int
    wrong_refusal: int
    accepted_while_closing: int
    refused_while_running: int
    hung: int
    past_deadline: int
    max_overrun: float
    worst_overrun: str
    caller_cancelled: int
    leaked_tasks: int
    leaked_fds: int
    leaked_permits: int
    lifecycle_wrong: int
    context_crashes: int
    close_hung: int
    expected_success: int
    expected_failure: int
    ambiguous_failure: int
    ambiguous: int
    recorded_success: int
    recorded_failure: int
    metrics_mismatch: int
    metrics_dropped: int
    timeouts_unlabelled: int
    auth_calls: int
    auth_too_soon: int
    auth_overlaps: int
    signer_garbage: int
    server_bugs: int
    aborted: bool
    elapsed: float
    trio_elapsed: float
    modes: str
    errors: str
    escapes: str
    waits: str
    late: str
    faults: str
    #: Where ``metrics_mismatch`` comes from: ``<name>.<bound>`` (``success<``: fewer
    #: success records than definite successes; ``total>``: more records than calls).
    metrics_outside: str
    #: Recorded minus definite records, by ``<name>.<error code>`` (and in all).
    metrics_diff: str
    leaked_task_names: str
    leaked_fd_kinds: str
    #: Where the first escape (and unlabelled timeout) of each kind was raised.
    escape_samples: str

    MUST_BE_ZERO: ClassVar[tuple[str, ...]] = (
        "missing",
        "duplicate",
        "phantom",
        "escaped",
        "wrong_refusal",
        "accepted_while_closing",
        "refused_while_running",
        "hung",
        "past_deadline",
        "leaked_tasks",
        "leaked_fds",
        "leaked_permits",
        "lifecycle_wrong",
        "context_crashes",
        "close_hung",
        "metrics_mismatch",
        "metrics_dropped",
        "timeouts_unlabelled",
        "auth_too_soon",
        "auth_overlaps",
        "signer_garbage",
        "server_bugs",
        "aborted",
    )

    def violations(self) -> dict[str, int]:
        """The invariant figures that are not zero."""
        found = {name: int(getattr(self, name)) for name in self.MUST_BE_ZERO}
        return {name: value for name, value in found.items() if value}

    def lines(self) -> list[str]:
        """Every figure as ``key=value``, in declaration order."""
        shown = []
        for field in attrs.fields(type(self)):
            value = getattr(self, field.name)
            if isinstance(value, float):
                value = f"{value:.3f}"
            elif isinstance(value, bool):
                value = str(value).lower()
            shown.append(f"{field.name}={value}")
        return shown


# -- the scenario --------------------------------------------------------------------------


class _Phase:
    """One run of the context, as the driver sees it."""

    def __init__(self, plan: PhasePlan, steps: tuple[Step, ...], storm_every: int) -> None:
        self.plan = plan
        self._steps = iter(steps[plan.start : plan.stop])
        self.issued = 0
        self.tripped = trio.Event()
        self.storm = trio.Event()
        self.storm_every = storm_every
        self.close_started: float | None = None
        self.context_ended = False
        self.grace = 0.0

    def next_step(self) -> Step | None:
        step = next(self._steps, None)
        if step is not None:
            self.issued += 1
            if self.plan.start + self.issued >= self.plan.trip_at:
                self.tripped.set()
            if self.issued % self.storm_every == 0:
                storm, self.storm = self.storm, trio.Event()
                storm.set()
        else:
            self.tripped.set()
        return step

    def begin_close(self, grace: float) -> None:
        self.grace = grace
        self.close_started = trio.current_time()

    def bound(self, start: float, end: float, deadline: float) -> float:
        """The latest an operation started at ``start`` may end (see the module's rules)."""
        close = self.close_started
        if close is not None and end >= close:
            return min(deadline, max(start, close) + self.grace)
        return deadline


class _Call:
    """What one call came to."""

    __slots__ = ("body_error", "deadline", "error", "escaped", "fired", "ok", "reply")

    def __init__(self, deadline: float) -> None:
        self.deadline = deadline
        self.ok = False
        self.error: ck.CloudError | None = None
        self.escaped: BaseException | None = None
        self.body_error: ck.CloudError | None = None
        self.reply: ck.Reply | None = None
        self.fired: float | None = None

    @property
    def pending(self) -> bool:
        return not self.ok and self.error is None and self.escaped is None

    @property
    def outcome(self) -> str:
        for failure in (self.escaped, self.error, self.body_error):
            if failure is not None:
                return type(failure).__name__
        return "ok" if self.ok else "pending"

    @property
    def due(self) -> float:
        """When the call had to end: its deadline, or the caller's nursery cancel."""
        return self.deadline if self.fired is None else min(self.deadline, self.fired)


class _Sub(enum.Enum):
    SENDING = "sending"
    ACCEPTED = "accepted"
    REFUSED = "refused"
    UNKNOWN = "unknown"


class _Submission:
    __slots__ = ("accepted_at", "phase", "replied_at", "replies", "reply", "state", "step")

    def __init__(self, step: Step, phase: _Phase) -> None:
        self.step = step
        self.phase = phase
        self.state = _Sub.SENDING
        self.accepted_at = math.inf
        self.replies = 0
        self.reply: ck.Reply | None = None
        self.replied_at = math.inf


async def _cancel_on(event: trio.Event, scope: trio.CancelScope, call: _Call) -> None:
    await event.wait()
    call.fired = trio.current_time()
    scope.cancel()


def _leaf_names(exc: BaseException) -> str:
    """The exception's type, or its group's leaves' types (``ExceptionGroup[A+B]``)."""
    if not isinstance(exc, BaseExceptionGroup):
        return type(exc).__name__
    leaves = sorted({_leaf_names(inner) for inner in exc.exceptions})
    return f"{type(exc).__name__}[{'+'.join(leaves)}]"


def _where(exc: BaseException) -> str:
    """``Type('message') at file:line in function`` for the innermost frame of the first leaf."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    frames = traceback.extract_tb(exc.__traceback__)
    ours = [frame for frame in frames if frame.filename.startswith(_PACKAGE_DIR)]
    place = ""
    if ours or frames:
        frame = (ours or frames)[-1]
        place = f" at {os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}"
    message = str(exc).splitlines()[0][:120] if str(exc) else ""
    return f"{type(exc).__name__}({message!r}){place}"


def _open_fds() -> set[int] | None:
    """The process's open file descriptors, where ``/proc`` tells (else None)."""
    try:
        listed = {int(name) for name in os.listdir(_FD_DIR)}
    except OSError:
        return None
    alive = set()
    for fd in listed:  # the listing's own descriptor is closed again by now
        try:
            os.fstat(fd)
        except OSError:
            continue
        alive.add(fd)
    return alive


def _describe_fd(fd: int, ports: dict[int, str]) -> str:
    """What a leaked descriptor is: ``tcp:<local>-><peer>`` (ports, or the servers' names),
    or what it links to."""
    try:
        with socket.fromfd(fd, socket.AF_INET, socket.SOCK_STREAM) as dup:
            here = dup.getsockname()[1]
            try:
                there = dup.getpeername()[1]
            except OSError:
                return f"tcp:{ports.get(here, here)}->unconnected"
            return f"tcp:{ports.get(here, here)}->{ports.get(there, there)}"
    except OSError:
        pass
    try:
        return os.readlink(f"{_FD_DIR}/{fd}")
    except OSError:
        return "?"


def _runtime_tasks() -> list[str]:
    """Names of living tasks whose coroutine is the library's own code."""
    found = []
    stack = [trio.lowlevel.current_root_task()]
    while stack:
        task = stack.pop()
        if task is None:
            continue
        code = getattr(task.coro, "cr_code", None)
        if code is not None and code.co_filename.startswith(_PACKAGE_DIR):
            found.append(task.name.rsplit(".", 1)[-1])
        for nursery in task.child_nurseries:
            stack.extend(nursery.child_tasks)
    return found


class _Expected:
    """The metrics records due, per operation name (``<entry>-<cancel>-<stop>``, so that
    callers who may cancel are reconciled apart from those who never do)."""

    def __init__(self) -> None:
        #: Records due for sure: ``<name>.success``, ``<name>.failure``, and for a
        #: diagnosis, ``<name>.<error code>``.
        self.definite: Counter[str] = Counter()
        #: Calls owing 0 or 1 record of either outcome, and 0 or 1 failure record.
        self.ambiguous: Counter[str] = Counter()
        self.ambiguous_failure: Counter[str] = Counter()

    def due(self, name: str, error: ck.CloudError | None) -> None:
        if error is None:
            self.definite[f"{name}.success"] += 1
        else:
            self.definite[f"{name}.failure"] += 1
            self.definite[f"{name}.{_error_code(error)}"] += 1

    def total(self, outcome: str) -> int:
        return sum(n for key, n in self.definite.items() if key.endswith(f".{outcome}"))

    def mismatch(self, recorded: Counter[str]) -> Counter[str]:
        """How far the recorded counts fall outside what is due: ``<name>.<bound>``."""
        names = {key.split(".")[0] for key in recorded.keys() | self.definite.keys()}
        names |= self.ambiguous.keys() | self.ambiguous_failure.keys()
        outside: Counter[str] = Counter()
        for name in names:
            success, failure = recorded[f"{name}.success"], recorded[f"{name}.failure"]
            due_s, due_f = self.definite[f"{name}.success"], self.definite[f"{name}.failure"]
            maybe, maybe_f = self.ambiguous[name], self.ambiguous_failure[name]
            low_s, high_s = due_s, due_s + maybe
            low_f, high_f = due_f, due_f + maybe_f + maybe
            outside[f"{name}.success<"] += max(low_s - success, 0)
            outside[f"{name}.success>"] += max(success - high_s, 0)
            outside[f"{name}.failure<"] += max(low_f - failure, 0)
            outside[f"{name}.failure>"] += max(failure - high_f, 0)
            # Each call owes at most one record: a surplus of both kinds together.
            surplus = success + failure - (due_s + due_f + maybe_f + maybe)
            surplus -= max(success - high_s, 0) + max(failure - high_f, 0)
            outside[f"{name}.total>"] += max(surplus, 0)
        return +outside


class _Scenario:
    def __init__(
        self,
        *,
        seed: int,
        operations: int,
        concurrency: int,
        phases: int,
        slack: float,
        max_real_seconds: float,
        spi_faults: frozenset[str],
    ) -> None:
        self.seed = seed
        self.operations = operations
        self.concurrency = concurrency
        self.slack = slack
        self.max_real_seconds = max_real_seconds
        self.steps, self.phase_plans = plan_operations(seed, operations, phases)
        self.stop_of = [""] * operations
        for plan in self.phase_plans:
            self.stop_of[plan.start : plan.stop] = [plan.mode.value] * (plan.stop - plan.start)
        self.rng = random.Random(f"{seed}-driver")
        unknown = spi_faults - SPIS
        if unknown:
            raise ValueError(f"unknown SPIs {sorted(unknown)}; choose from {sorted(SPIS)}")
        self.auth = FlakyAuth(random.Random(f"{seed}-auth"), faulty="auth" in spi_faults)
        self.retry = FlakyRetry(random.Random(f"{seed}-retry"), faulty="retry" in spi_faults)
        self.flaky_metrics = FlakyMetrics(
            random.Random(f"{seed}-metrics"), faulty="metrics" in spi_faults
        )
        self.recording = RecordingMetrics()
        self.logger = FlakyLogger(random.Random(f"{seed}-logger"), faulty="logger" in spi_faults)
        self.signer = ChaosSigner(random.Random(f"{seed}-signer"), faulty="signer" in spi_faults)
        self.servers = [ChaosServer() for _ in range(3)]
        self.dead_url = ""
        self.grace = 0.5
        self.reply_send, self.reply_receive = trio.open_memory_channel[ck.Reply](operations + 1)
        self._drained = trio.Event()
        self.subs: dict[Hashable, _Submission] = {}
        self.next_id = 0
        # tallies
        self.calls = 0
        self.refused = 0
        self.phantom = 0
        self.escapes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.waits: Counter[str] = Counter()
        self.late: Counter[str] = Counter()
        #: The first exception of each kind that escaped, and where it was raised.
        self.samples: dict[str, str] = {}
        self.expected = _Expected()
        self.wrong_refusal = 0
        self.accepted_while_closing = 0
        self.refused_while_running = 0
        self.hung = 0
        self.past_deadline = 0
        self.max_overrun = 0.0
        self.worst_overrun = "-"
        self.caller_cancelled = 0
        self.leaked_tasks = 0
        self.leaked_fds = 0
        self.leaked_fd_kinds: Counter[str] = Counter()
        self.leaked_permits = 0
        self.lifecycle_wrong = 0
        self.context_crashes = 0
        self.close_hung = 0
        self.metrics_dropped = 0
        self.timeouts_unlabelled = 0
        self.leaked_task_names: Counter[str] = Counter()
        self.aborted = False
        #: The first exception a run of the context raised, for the report.
        self.crash: BaseException | None = None

    # -- setup -----------------------------------------------------------------------------

    def _context(self) -> ck.CloudContext:
        config = ck.CloudConfig(
            endpoint=self.servers[0].url,
            timeout=1.0,
            connect_timeout=0.5,
            max_retries=_ATTEMPTS - 1,
            queue_size=32,
            max_concurrency=48,
            max_concurrency_per_endpoint=24,
            metrics_queue_size=4 * self.operations + 1000,
            shutdown_grace=self.grace,
        )
        return (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(config)
            .auth_provider(self.auth)
            .retry_policy(
                ck.CircuitBreaker(
                    inner=self.retry,
                    failure_ratio=0.5,
                    minimum_throughput=8,
                    sampling_window=5.0,
                    break_duration=1.0,
                    half_open_probes=2,
                )
            )
            .metrics_collector(self.flaky_metrics, self.recording)
            .logger(self.logger)
            .signer(self.signer)
            # Credentials live 1 s: refreshed in the background after 0.5 s; callers wait
            # for them in the last 0.25 s. Many refreshes in every run of the context.
            .credential_refresh(advisory=0.5, mandatory=0.25)
            .metrics_flush_interval(0.05)
            .build()
        )

    def _operation(self, step: Step) -> ck.Operation:
        path = f"/f/{','.join(step.faults)}/{step.index}"
        body = b"" if step.method == "GET" else b"p" * 256
        kw: dict[str, Any] = {"path": path} if step.endpoint == 0 else {}
        if step.endpoint == _DEAD:
            kw["url"] = self.dead_url + path
        elif step.endpoint:
            kw["url"] = self.servers[step.endpoint].url + path
        return ck.Operation(
            service=SERVICE,
            name=self._name(step),
            method=step.method,
            body=body,
            timeout=step.op_timeout,
            **kw,
        )

    def _name(self, step: Step) -> str:
        """The operation's name, which its metrics records carry: ``<entry>-<cancel>-<stop>``
        (how its caller may cancel it, how its phase stops the context); a bounded set."""
        return f"{step.entry.value}-{step.cancel.value}-{self.stop_of[step.index]}"

    def _new_id(self) -> int:
        self.next_id += 1
        return self.next_id

    def _check_fds(self, before: set[int] | None) -> None:
        now = _open_fds()
        if before is None or now is None:
            return
        leaked = now - before
        for server in self.servers:
            leaked -= server.fds
        if leaked and len(leaked) >= self.leaked_fds:  # describe the worst check
            ports = {server.port: f"server{i}" for i, server in enumerate(self.servers)}
            ports[int(self.dead_url.rsplit(":", 1)[-1] or 0)] = "dead"
            self.leaked_fd_kinds = Counter(_describe_fd(fd, ports) for fd in leaked)
        self.leaked_fds = max(self.leaked_fds, len(leaked))

    def _server_tasks(self) -> int:
        return sum(server.handlers for server in self.servers)

    # -- the run ---------------------------------------------------------------------------

    async def run(self) -> ChaosFigures:
        started, trio_started = time.perf_counter(), trio.current_time()
        fds_before = _open_fds()
        async with trio.open_nursery() as outer:
            for server in self.servers:
                await outer.start(server.run)
            with socket.socket() as probe:  # a port nobody listens on: connections refused
                probe.bind(("127.0.0.1", 0))
                self.dead_url = f"http://127.0.0.1:{probe.getsockname()[1]}"
            outer.start_soon(self._collect)
            outer.start_soon(self._watchdog, outer.cancel_scope)
            context = self._context()
            for plan in self.phase_plans:
                await self._phase(context, plan, fds_before)
                if outer.cancel_scope.cancel_called:
                    break
            await self.reply_send.aclose()
            await self._drained.wait()
            outer.cancel_scope.cancel()
        self._check_fds(fds_before)
        return self._figures(time.perf_counter() - started, trio.current_time() - trio_started)

    async def _watchdog(self, scope: trio.CancelScope) -> None:
        # Real time, so a runtime that spins without letting the MockClock jump still ends.
        limit = time.monotonic() + self.max_real_seconds
        while time.monotonic() < limit:
            await trio.to_thread.run_sync(time.sleep, 0.2)
        self.aborted = True
        scope.cancel()

    async def _collect(self) -> None:
        try:
            async for reply in self.reply_receive:
                self._on_reply(reply)
        finally:
            self._drained.set()

    def _on_reply(self, reply: object) -> None:
        now = trio.current_time()
        if not isinstance(reply, ck.Reply):
            self.escapes[f"reply:{type(reply).__name__}"] += 1
            return
        sub = self.subs.get(reply.correlation_id)
        if sub is None or sub.state is _Sub.REFUSED:
            self.phantom += 1
            return
        sub.replies += 1
        if sub.replies == 1:
            sub.reply, sub.replied_at = reply, now

    async def _phase(
        self, context: ck.CloudContext, plan: PhasePlan, fds_before: set[int] | None
    ) -> None:
        phase = _Phase(
            plan,
            self.steps,
            storm_every=self.rng.randint(max(2, self.concurrency // 4), self.concurrency),
        )
        self.auth.new_run()
        tasks_before = trio.lowlevel.current_statistics().tasks_living
        server_tasks_before = self._server_tasks()
        clouds: list[Any] = []
        async with trio.open_nursery() as producers:
            try:
                await self._run_context(context, phase, producers, clouds)
            except (Exception, BaseExceptionGroup) as exc:
                phase.context_ended = True
                self.context_crashes += 1
                self._escape(f"context:{_leaf_names(exc)}", exc)
                if self.crash is None:
                    self.crash = exc
            phase.context_ended = True
            # The workers go on against the stopped context: all of that must be refused.
        living = trio.lowlevel.current_statistics().tasks_living
        leaked = living - tasks_before - (self._server_tasks() - server_tasks_before)
        names = _runtime_tasks()
        if names:
            self.leaked_task_names = Counter(names)
        self.leaked_tasks = max(self.leaked_tasks, leaked, len(names))
        self._check_fds(fds_before)
        if clouds:
            self._check_stopped(clouds[0])

    def _check_stopped(self, cloud: Any) -> None:
        try:
            snapshot = cloud.snapshot()
        except Exception as exc:
            self._escape(f"snapshot:{type(exc).__name__}", exc)
            self.lifecycle_wrong += 1
            return
        state = getattr(snapshot, "state", None)
        if not snapshot.closing or (state is not None and getattr(state, "name", "") != "CLOSED"):
            self.lifecycle_wrong += 1
        self.metrics_dropped += snapshot.metrics_dropped
        self.leaked_permits += snapshot.inflight + snapshot.queued
        for breaker in snapshot.breakers:
            # calls_in_flight is newer than probes_in_flight (which it includes).
            held = getattr(breaker, "calls_in_flight", None)
            self.leaked_permits += breaker.probes_in_flight if held is None else held

    async def _run_context(
        self, context: ck.CloudContext, phase: _Phase, producers: trio.Nursery, clouds: list[Any]
    ) -> None:
        # Closing must end within the grace period (plus a margin for the shutdown budgets);
        # past that, cut it (which stops the context hard) and count it.
        with trio.CancelScope() as guard:
            await self._run_once(context, phase, producers, clouds, guard)
        if guard.cancelled_caught:
            self.close_hung += 1

    async def _run_once(
        self,
        context: ck.CloudContext,
        phase: _Phase,
        producers: trio.Nursery,
        clouds: list[Any],
        guard: trio.CancelScope,
    ) -> None:
        mode = phase.plan.mode
        margin = self.grace + _CLOSE_MARGIN
        if mode is Shutdown.ASYNC_WITH:
            async with context as cloud:
                clouds.append(cloud)
                self._start_workers(phase, producers, cloud)
                await phase.tripped.wait()
                phase.begin_close(self.grace)
                guard.deadline = trio.current_time() + margin
            return
        async with trio.open_nursery() as host:
            cloud = await host.start(context.serve)
            clouds.append(cloud)
            self._start_workers(phase, producers, cloud)
            await phase.tripped.wait()
            guard.deadline = trio.current_time() + margin
            if mode is Shutdown.ACLOSE:
                phase.begin_close(self.grace)
                await cloud.aclose()
            else:
                phase.begin_close(0.0)
                host.cancel_scope.cancel()

    def _start_workers(self, phase: _Phase, producers: trio.Nursery, cloud: Any) -> None:
        for number in range(self.concurrency):
            producers.start_soon(self._worker, phase, cloud, number)

    async def _worker(self, phase: _Phase, cloud: Any, number: int) -> None:
        channels: list[Any] = []
        try:
            while (step := phase.next_step()) is not None:
                if step.entry is Entry.CHANNEL:
                    await self._send(phase, cloud, step, channels, number)
                elif step.entry is Entry.NOWAIT:
                    self._nowait(phase, cloud, step)
                    await trio.lowlevel.checkpoint()
                else:
                    await self._call(phase, cloud, step)
        finally:
            for channel in channels:
                try:
                    await channel.aclose()
                except (Exception, BaseExceptionGroup) as exc:
                    self._escape(f"aclose:{type(exc).__name__}", exc)

    # -- callers ---------------------------------------------------------------------------

    async def _as_caller(
        self, phase: _Phase, step: Step, call: _Call, body: Callable[[], Awaitable[None]]
    ) -> None:
        """Run ``body`` the way the step's caller does, its own cancellation included."""
        if step.cancel is Cancel.BUDGET:
            with trio.move_on_after(step.budget):
                await body()
        elif step.cancel is Cancel.GROUP:
            async with trio.open_nursery() as group:
                group.start_soon(_cancel_on, phase.storm, group.cancel_scope, call)
                try:
                    await body()
                finally:
                    group.cancel_scope.cancel()
        else:
            await body()

    async def _guarded(
        self,
        phase: _Phase,
        step: Step,
        call: _Call,
        body: Callable[[], Awaitable[None]],
        guard_at: float,
    ) -> bool:
        """Run the call as its caller, cut off at ``guard_at``; whether it had to be (hung)."""
        try:
            with trio.move_on_at(guard_at) as guard:
                await self._as_caller(phase, step, call, body)
        except (trio.Cancelled, BaseExceptionGroup) as exc:
            if trio.current_effective_deadline() == -math.inf:
                raise  # a scope of ours further out is cancelled: this is ours
            # No scope of ours was cancelled, so this cancellation leaked out of the runtime.
            call.escaped = exc
            return False
        return guard.cancelled_caught

    def _deadline(self, step: Step, start: float, enclosing: float) -> float:
        deadline = enclosing
        if step.timeout is not None:
            deadline = min(deadline, start + step.timeout)
        if step.op_timeout is not None:
            deadline = min(deadline, start + step.op_timeout)
        return deadline

    def _guard(self, step: Step, start: float) -> float:
        return self._deadline(step, start, math.inf) + self.grace + 5.0

    def _closing(self, cloud: Any, phase: _Phase) -> bool:
        """Whether the context says it is closing (or closed): then every entry point refuses.

        ``cloud.state`` where it exists; else the snapshot, which costs more and is taken
        only once the phase has begun to close the context or seen it stop.
        """
        try:
            state = getattr(cloud, "state", None)
            if state is None:
                if phase.close_started is None and not phase.context_ended:
                    return False
                snapshot = cloud.snapshot()
                state = getattr(snapshot, "state", None)
                if state is None:
                    return bool(snapshot.closing)
        except Exception as exc:
            self._escape(f"snapshot:{type(exc).__name__}", exc)
            return False
        return getattr(state, "name", str(state)).upper() in ("CLOSING", "CLOSED")

    def _escape(self, key: str, exc: BaseException | None) -> None:
        self.escapes[key] += 1
        if exc is not None and key not in self.samples:
            self.samples[key] = _where(exc)

    def _note_error(self, where: str, error: BaseException) -> None:
        self.errors[f"{where}.{type(error).__name__}"] += 1
        if isinstance(error, ck.OperationTimeout):
            waiting = getattr(error, "waiting_for", None)
            self.waits[str(waiting)] += 1
            if waiting not in WAITS:
                self.timeouts_unlabelled += 1
                self.samples.setdefault(f"unlabelled:{where}", _where(error))

    def _check_time(
        self, phase: _Phase, start: float, end: float, deadline: float, what: str
    ) -> None:
        overrun = end - phase.bound(start, end, deadline)
        if overrun > self.slack:
            self.past_deadline += 1
            if overrun > self.max_overrun:
                self.max_overrun = overrun
                close = phase.close_started
                self.worst_overrun = (
                    f"{what} started={start:.3f} ended={end:.3f} deadline={deadline:.3f} "
                    f"close={'-' if close is None else f'{close:.3f}'}+{phase.grace:g}"
                )
            closing = "" if phase.close_started is None else f"@{phase.plan.mode.value}"
            self.late[f"{what}{closing}"] += 1

    async def _call(self, phase: _Phase, cloud: Any, step: Step) -> None:
        self.calls += 1
        op = self._operation(step)
        start = trio.current_time()
        call = _Call(math.inf)
        closing = self._closing(cloud, phase)
        cid = self._new_id()

        async def body() -> None:
            call.deadline = self._deadline(step, start, trio.current_effective_deadline())
            try:
                if step.entry is Entry.EXECUTE:
                    await cloud.execute(op, timeout=step.timeout)
                elif step.entry is Entry.STREAM:
                    await self._stream(cloud, op, step, call)
                else:
                    call.reply = await cloud.submit(op, correlation_id=cid)
                call.ok = True
            except ck.CloudError as error:
                call.error = error
            except BaseExceptionGroup as group:
                if group.split(trio.Cancelled)[1] is None:
                    raise  # a cancellation, grouped by a nursery on its way out
                call.escaped = group
            except Exception as exc:
                call.escaped = exc

        hung = await self._guarded(phase, step, call, body, self._guard(step, start))
        end = trio.current_time()
        self._settle(cloud, phase, step, call, closing, hung, start, end, cid)

    async def _stream(self, cloud: Any, op: ck.Operation, step: Step, call: _Call) -> None:
        async with cloud.stream(op, timeout=step.timeout) as response:
            if step.read is Read.ALL:
                async for _chunk in response.aiter_bytes():
                    pass
            elif step.read is Read.EARLY:
                async for _chunk in response.aiter_bytes(1024):
                    break
            elif step.read is Read.CATCH:
                try:
                    await response.aread()
                except ck.CloudError as error:
                    call.body_error = error

    def _settle(
        self,
        cloud: Any,
        phase: _Phase,
        step: Step,
        call: _Call,
        closing: bool,
        hung: bool,
        start: float,
        end: float,
        cid: int,
    ) -> None:
        where, name = step.entry.value, self._name(step)
        if call.pending:
            if hung:
                self.hung += 1
                self.late[f"{where}.hung@{phase.plan.mode.value}"] += 1
            else:
                self.caller_cancelled += 1
                self._check_time(phase, start, end, call.due, f"{where}.cancelled")
            self.expected.ambiguous[name] += 1
            return
        self._check_time(phase, start, end, call.due, f"{where}.{call.outcome}")
        if call.escaped is not None:
            self._escape(f"{where}:{_leaf_names(call.escaped)}", call.escaped)
            self.expected.ambiguous[name] += 1
            return
        error = call.error
        if error is not None:
            self._note_error(where, error)
        if closing:
            if isinstance(error, ck.ContextClosed):
                self.refused += 1
            else:
                self.accepted_while_closing += 1
                self.errors[f"{where}.accepted_while_closing"] += 1
                self.expected.ambiguous[name] += 1
            return
        if step.entry is Entry.SUBMIT:
            self._settle_submit(step, call, cid, self._closing(cloud, phase))
            return
        if error is None and call.body_error is not None:
            self._note_error(f"{where}.body", call.body_error)
            self.expected.due(name, call.body_error)
        elif isinstance(error, ck.Overloaded):
            self.expected.ambiguous_failure[name] += 1
        else:
            self.expected.due(name, error)

    def _settle_submit(self, step: Step, call: _Call, cid: int, closing_now: bool) -> None:
        error = call.error
        if isinstance(error, ck.ContextClosed):
            self.refused += 1
            if not closing_now:
                self.refused_while_running += 1
                self.errors["submit.refused_while_running"] += 1
        elif isinstance(error, ck.Overloaded):
            self.refused += 1
        elif error is not None:
            self.wrong_refusal += 1
            self.expected.ambiguous[self._name(step)] += 1
        else:
            reply = call.reply
            if not isinstance(reply, ck.Reply) or reply.correlation_id != cid:
                self.escapes[f"submit:reply:{type(reply).__name__}"] += 1
                self.expected.ambiguous[self._name(step)] += 1
            else:
                self._expect_reply(step, reply)

    def _expect_reply(self, step: Step, reply: ck.Reply) -> None:
        error, name = reply.error, self._name(step)
        where = f"{step.entry.value}.reply"
        if error is None:
            self.expected.due(name, None)
            return
        if not isinstance(error, ck.CloudError):
            self._escape(f"{where}:{type(error).__name__}", error)
            self.expected.ambiguous[name] += 1
            return
        self._note_error(where, error)
        if isinstance(error, ck.ContextClosed):
            self.expected.ambiguous_failure[name] += 1
        else:
            self.expected.due(name, error)

    # -- submissions -----------------------------------------------------------------------

    def _submission(self, phase: _Phase, step: Step) -> tuple[int, ck.Submission]:
        cid = self._new_id()
        self.subs[cid] = _Submission(step, phase)
        return cid, ck.Submission(self._operation(step), self.reply_send, cid)

    async def _send(
        self, phase: _Phase, cloud: Any, step: Step, channels: list[Any], number: int
    ) -> None:
        cid, submission = self._submission(phase, step)
        start = trio.current_time()
        closing = self._closing(cloud, phase)
        call = _Call(math.inf)

        async def body() -> None:
            call.deadline = trio.current_effective_deadline()
            try:
                if not channels:
                    channel = cloud.submit_channel()
                    if number % 4 == 0:  # a clone of a clone, its parent closed at once
                        channel, parent = channel.clone(), channel
                        await parent.aclose()
                    channels.append(channel)
                await channels[0].send(submission)
                call.ok = True
            except ck.CloudError as error:
                call.error = error
            except BaseExceptionGroup as group:
                if group.split(trio.Cancelled)[1] is None:
                    raise  # a cancellation, grouped by a nursery on its way out
                call.escaped = group
            except Exception as exc:
                call.escaped = exc

        hung = await self._guarded(phase, step, call, body, start + 30.0)
        end = trio.current_time()
        # A send that waited for room may be refused because closing began meanwhile.
        closing_now = closing or self._closing(cloud, phase)
        sub = self.subs[cid]
        if call.pending and hung:
            sub.state = _Sub.UNKNOWN
            self.hung += 1
            self.late[f"send.hung@{phase.plan.mode.value}"] += 1
            return
        # A send waits for room while running (backpressure), but not past its caller's
        # deadline, and not past the close: then it is refused.
        self._check_time(phase, start, end, call.due, f"send.{call.outcome}")
        if call.ok:
            sub.state, sub.accepted_at = _Sub.ACCEPTED, end
            if closing:
                self.accepted_while_closing += 1
                self.errors[f"{step.entry.value}.accepted_while_closing"] += 1
        elif call.pending:
            sub.state = _Sub.REFUSED  # a cancelled send sent nothing
            self.caller_cancelled += 1
        else:
            self._refusal(sub, call, closing_now, "channel")

    def _nowait(self, phase: _Phase, cloud: Any, step: Step) -> None:
        cid, submission = self._submission(phase, step)
        closing = self._closing(cloud, phase)
        call = _Call(math.inf)
        try:
            cloud.submit_nowait(submission)
            call.ok = True
        except ck.CloudError as error:
            call.error = error
        except Exception as exc:
            call.escaped = exc
        sub = self.subs[cid]
        if call.ok:
            sub.state, sub.accepted_at = _Sub.ACCEPTED, trio.current_time()
            if closing:
                self.accepted_while_closing += 1
                self.errors[f"{step.entry.value}.accepted_while_closing"] += 1
            return
        self._refusal(sub, call, closing, "nowait")

    def _refusal(self, sub: _Submission, call: _Call, closing: bool, where: str) -> None:
        error = call.error
        sub.state = _Sub.REFUSED
        if call.escaped is not None:
            sub.state = _Sub.UNKNOWN
            self._escape(f"{where}:{_leaf_names(call.escaped)}", call.escaped)
        elif isinstance(error, ck.ContextClosed):
            self.refused += 1
            if not closing:
                self.refused_while_running += 1
                self.errors[f"{where}.refused_while_running"] += 1
        elif isinstance(error, ck.Overloaded) and not closing:
            self.refused += 1
        else:
            sub.state = _Sub.UNKNOWN
            self.wrong_refusal += 1
            self.errors[f"{where}.refused.{type(error).__name__}"] += 1

    # -- the figures -----------------------------------------------------------------------

    def _figures(self, elapsed: float, trio_elapsed: float) -> ChaosFigures:
        submitted = replied = missing = duplicate = 0
        for sub in self.subs.values():
            if sub.state is _Sub.ACCEPTED:
                submitted += 1
                duplicate += max(sub.replies - 1, 0)
                if sub.reply is None:
                    missing += 1
                    self.expected.ambiguous[self._name(sub.step)] += 1
                    continue
                replied += 1
                self._expect_reply(sub.step, sub.reply)
                deadline = sub.accepted_at + (sub.step.op_timeout or math.inf)
                outcome = type(sub.reply.error).__name__ if sub.reply.error else "ok"
                what = f"{sub.step.entry.value}.reply.{outcome}"
                self._check_time(sub.phase, sub.accepted_at, sub.replied_at, deadline, what)
            elif sub.state is _Sub.REFUSED:
                self.phantom += sub.replies
        recorded: Counter[str] = Counter()
        for m in self.recording.operations:
            if m.service != SERVICE or m.outcome is ck.OperationOutcome.RETRY:
                continue
            if m.outcome is ck.OperationOutcome.SUCCESS:
                recorded[f"{m.operation}.success"] += 1
            else:
                recorded[f"{m.operation}.failure"] += 1
                recorded[f"{m.operation}.{m.error_code}"] += 1
        expected = self.expected
        # Only a hint where to look: ambiguous calls may add records anywhere.
        diff = Counter(
            {
                key: recorded[key] - expected.definite[key]
                for key in recorded.keys() | expected.definite.keys()
                if recorded[key] != expected.definite[key] and not key.endswith(".failure")
            }
        )
        mismatch = expected.mismatch(recorded)
        for outcome in ("success", "failure"):
            shortfall = sum(
                recorded[key] - expected.definite[key]
                for key in recorded.keys() | expected.definite.keys()
                if key.endswith(f".{outcome}")
            )
            if shortfall:
                diff[outcome] = shortfall
        faults: Counter[str] = Counter()
        for server in self.servers:
            faults.update(server.served)
        return ChaosFigures(
            seed=self.seed,
            operations=self.operations,
            concurrency=self.concurrency,
            phases=len(self.phase_plans),
            calls=self.calls,
            submissions=len(self.subs),
            submitted=submitted,
            replied=replied,
            refused=self.refused,
            missing=missing,
            duplicate=duplicate,
            phantom=self.phantom,
            escaped=sum(self.escapes.values()),
            wrong_refusal=self.wrong_refusal,
            accepted_while_closing=self.accepted_while_closing,
            refused_while_running=self.refused_while_running,
            hung=self.hung,
            past_deadline=self.past_deadline,
            max_overrun=self.max_overrun,
            worst_overrun=self.worst_overrun,
            caller_cancelled=self.caller_cancelled,
            leaked_tasks=max(self.leaked_tasks, 0),
            leaked_fds=max(self.leaked_fds, 0),
            leaked_permits=self.leaked_permits,
            lifecycle_wrong=self.lifecycle_wrong,
            context_crashes=self.context_crashes,
            close_hung=self.close_hung,
            expected_success=expected.total("success"),
            expected_failure=expected.total("failure"),
            ambiguous_failure=sum(expected.ambiguous_failure.values()),
            ambiguous=sum(expected.ambiguous.values()),
            recorded_success=sum(n for k, n in recorded.items() if k.endswith(".success")),
            recorded_failure=sum(n for k, n in recorded.items() if k.endswith(".failure")),
            metrics_mismatch=sum(mismatch.values()),
            metrics_dropped=self.metrics_dropped,
            timeouts_unlabelled=self.timeouts_unlabelled,
            auth_calls=self.auth.calls,
            auth_too_soon=self.auth.too_soon,
            auth_overlaps=self.auth.overlaps,
            signer_garbage=self.signer.garbage,
            server_bugs=sum(server.own_bugs for server in self.servers),
            aborted=self.aborted,
            elapsed=elapsed,
            trio_elapsed=trio_elapsed,
            modes=",".join(plan.mode.value for plan in self.phase_plans),
            errors=_counts(self.errors),
            escapes=_counts(self.escapes),
            waits=_counts(self.waits),
            late=_counts(self.late),
            faults=_counts(faults),
            metrics_outside=_counts(mismatch),
            metrics_diff=_counts(diff),
            leaked_task_names=_counts(self.leaked_task_names),
            leaked_fd_kinds=_counts(self.leaked_fd_kinds),
            escape_samples=" | ".join(f"{k}: {v}" for k, v in sorted(self.samples.items())) or "-",
        )


def _error_code(error: ck.CloudError) -> str:
    """The ``error_code`` a metrics record gives ``error``."""
    return getattr(error, "code", None) or type(error).__name__


def _outside(value: int, low: int, high: int) -> int:
    return max(low - value, 0, value - high)


async def run_chaos(
    seed: int,
    operations: int = 3000,
    concurrency: int = 64,
    *,
    phases: int | None = None,
    slack: float = 0.001,
    max_real_seconds: float = 120.0,
    spi_faults: Collection[str] = SPIS,
) -> ChaosFigures:
    """Run the scenario for ``seed`` inside the current Trio run and return its figures.

    ``phases`` (runs of the context) defaults to one per 500 operations, at least three
    and at most 200, so every way of stopping it comes up. Meant for a ``MockClock``
    (``slack`` assumes one); ``max_real_seconds`` of wall time aborts the run
    (``aborted``), so a runtime that spins cannot hang the caller. ``spi_faults`` names
    the SPIs that misbehave (all of :data:`SPIS` by default); the others behave, which
    helps to tell one failure from another.
    """
    if phases is None:
        phases = min(max(3, operations // 500), 200)
    scenario = _Scenario(
        seed=seed,
        operations=operations,
        concurrency=concurrency,
        phases=phases,
        slack=slack,
        max_real_seconds=max_real_seconds,
        spi_faults=frozenset(spi_faults),
    )
    return await scenario.run()
