"""Admission under a capacity drop: goodput, tail latency and retries, per configuration.

Run it with ``python benchmarks/admission.py`` (about three minutes; ``--quick``
takes about 30 s; ``--help`` lists the knobs). It starts its own server on 127.0.0.1, this
file run with ``--serve 0`` in a subprocess, which models a service of limited capacity:

* it works on at most ``--capacity`` requests at once, each for ``--service-ms`` (a sleep,
  not CPU), queues at most ``--queue`` more in arrival order, and answers the rest at once
  with 503 ``SlowDown`` in S3's XML (``--reject 503`` sends a bare 503, ``--reject 429``
  a 429);
* each measured run is started by the client (``POST /start``): at one third of the run
  the server halves its capacity, at two thirds it restores it. Its phases are timed by
  the server itself, which counts the requests it received, served and rejected.

It prints one line on stdout, ``ready PORT``, and exits when its stdin closes, so it ends
with the benchmark however that ends (Ctrl-C, an exception, a kill).

First the server's healthy capacity is measured: as many closed-loop clients as it works
on plus as many as it may queue, straight through a ``PooledTransport``, for a second. The
offered rate is ``--load`` times that (by default 0.75: 1.5 times the halved capacity).
Then, for each configuration, a context of its own drives that load through
``cloud.execute``: open loop (one operation due every ``1 / rate`` seconds, whatever
became of the others), each with ``timeout=--deadline``, ``rate * --duration`` operations,
after an unmeasured warm-up of ``--warmup`` seconds. The configurations differ only in
admission:

* ``no admission``: ``.retry_budget(None)``, no rate limit, no adaptive concurrency
  (deadline-aware shedding has no switch: it is on in every configuration);
* ``budget``: the default, ``RetryBudget()``;
* ``budget+concurrency``: ``.adaptive_concurrency(AdaptiveConcurrency())`` on top;
* ``budget+adaptive rate``: ``.rate_limit(RateLimit(rate, adaptive=True))`` on top, starting
  at the offered rate;
* ``budget+adaptive rate fail-fast``: the same with ``wait=False`` and a ``burst`` of 20 ms
  of the rate.

Everything else is the default (``ExponentialBackoff`` with four attempts, the bulkhead of
64) except the circuit breaker, which is off (``--breaker`` keeps it on): it would open in
the halved phase and the figures would measure it rather than admission. Configurations run
interleaved, their order rotating each repetition, ``--reps`` times; every figure printed
is the median over the repetitions, ratios taken within a repetition first. The figures:

* ``goodput/s``: operations that succeeded, per second, counted in the phase they ended in;
  ``goodput %`` is that over what the phase could serve at best, the smaller of the offered
  rate and the capacity (above 100 when a backlog from the phase before drains into it).
* ``p50 ms``, ``p99 ms``: latency of the successful operations that started in the phase,
  from the instant each was due (so the client's own lag counts); ``p99/healthy`` divides
  the phase's p99 by the healthy (first) phase's.
* ``failed %``: share of the phase's operations that raised; the errors are counted by class
  (``OperationTimeout`` with the wait its deadline ran out in: ``admission`` is shedding).
* ``rejected %``: share of the requests the server received that it answered 503/429.
* ``attempts/op``: requests the server received over operations started: 1.00 is one
  attempt each, 4.00 all four; below 1 when attempts were refused before being sent.
* ``suppressed``, ``throttled``, ``shed``, ``overloaded``: ``cloud.snapshot()``'s totals at
  the end of the run (retries the budget refused, attempts the rate limit refused, attempts
  shed, operations the adaptive concurrency limit refused);
  ``final limit`` and ``final rate/s``: the endpoint's concurrency limit (the bulkhead's
  size) and its rate limit then.

The last lines sum each configuration up in the halved phase against the issue's goal:
with admission, the p99 stays within twice the healthy p99 and the goodput at 90 % of
capacity or more. Nothing is asserted: the figures are whatever this machine measured.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import select
import statistics
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from typing import Final

import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.transport import NoAuthSigner, PooledTransport

# -- the server ---------------------------------------------------------------------------

_OK: Final = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 3\r\n\r\nok\n"
_SLOWDOWN_BODY: Final = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>SlowDown</Code>'
    b"<Message>Please reduce your request rate.</Message></Error>"
)
_PHASES: Final = ("healthy", "halved", "restored")


def _response(status: str, body: bytes, content_type: str) -> bytes:
    head = (
        f"HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("ascii") + body


_REJECTIONS: Final = {
    "slowdown": _response("503 Slow Down", _SLOWDOWN_BODY, "application/xml"),
    "503": _response("503 Service Unavailable", b"busy\n", "text/plain"),
    "429": _response("429 Too Many Requests", b"slow down\n", "text/plain"),
}
_NOT_FOUND: Final = _response("404 Not Found", b"no such path\n", "text/plain")


@dataclass
class PhaseCounts:
    """What the server saw in one phase of a run (or outside every phase)."""

    received: int = 0
    served: int = 0
    rejected: int = 0


class CapacityModel:
    """The server's state: its workers, its queue, the phase clock and the counters."""

    def __init__(self, capacity: int, service_time: float, queue: int, rejection: bytes) -> None:
        self.capacity = capacity
        self.service_time = service_time
        self.queue = queue
        self.rejection = rejection
        self.limiter = trio.CapacityLimiter(capacity)
        self.started_at = math.inf
        self.duration = 0.0
        # Index 0 counts requests before the run, 1 to 3 its phases, 4 those after it
        # (retries of operations started late in the run).
        self.counts = [PhaseCounts() for _ in range(len(_PHASES) + 2)]
        self._schedule = trio.CancelScope()

    def phase(self, now: float) -> int:
        elapsed = now - self.started_at
        if elapsed < 0.0:
            return 0
        return 1 + min(int(elapsed * len(_PHASES) / self.duration), len(_PHASES))

    async def work(self) -> bytes:
        """One request: served within capacity, queued, or rejected when the queue is full."""
        counts = self.counts[self.phase(trio.current_time())]
        counts.received += 1
        limiter = self.limiter
        try:
            limiter.acquire_nowait()
        except trio.WouldBlock:
            if limiter.statistics().tasks_waiting >= self.queue:
                counts.rejected += 1
                return self.rejection
            await limiter.acquire()
        try:
            await trio.sleep(self.service_time)
        finally:
            limiter.release()
        counts.served += 1
        return _OK

    def start(self, nursery: trio.Nursery, duration: float) -> bytes:
        """Begin a run now: counters reset, capacity halved at 1/3, restored at 2/3."""
        self._schedule.cancel()
        self._schedule = trio.CancelScope()
        self.counts = [PhaseCounts() for _ in self.counts]
        self.limiter.total_tokens = self.capacity
        self.started_at = trio.current_time()
        self.duration = duration
        nursery.start_soon(self._run_schedule, self._schedule, self.started_at, duration)
        return self._json({"started": True})

    async def _run_schedule(self, scope: trio.CancelScope, started: float, duration: float) -> None:
        with scope:
            await trio.sleep_until(started + duration / 3)
            self.limiter.total_tokens = max(1, self.capacity // 2)
            await trio.sleep_until(started + 2 * duration / 3)
            self.limiter.total_tokens = self.capacity

    def stats(self) -> bytes:
        before, *phases, after = self.counts
        return self._json(
            {
                "before": vars(before),
                "phases": [vars(counts) for counts in phases],
                "after": vars(after),
                "in_service": self.limiter.borrowed_tokens,
            }
        )

    @staticmethod
    def _json(document: object) -> bytes:
        return _response("200 OK", json.dumps(document).encode(), "application/json")


async def _handle(model: CapacityModel, nursery: trio.Nursery, stream: trio.SocketStream) -> None:
    """One connection: requests one after another (the client does not pipeline)."""
    buffer = bytearray()
    try:
        while True:
            while (end := buffer.find(b"\r\n\r\n")) < 0:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            head = bytes(buffer[:end]).decode("latin-1")
            del buffer[: end + 4]
            line, _, header_text = head.partition("\r\n")
            length = 0
            for header in header_text.split("\r\n"):
                name, _, value = header.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            while len(buffer) < length:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
            del buffer[:length]
            target = line.split(" ")[1] if line.count(" ") >= 2 else ""
            path, _, query = target.partition("?")
            if path == "/work":
                answer = await model.work()
            elif path == "/start":
                duration = float(
                    dict(p.split("=", 1) for p in query.split("&") if "=" in p)["duration"]
                )
                answer = model.start(nursery, duration)
            elif path == "/stats":
                answer = model.stats()
            else:
                answer = _NOT_FOUND
            await stream.send_all(answer)
    except (trio.BrokenResourceError, trio.ClosedResourceError):
        return  # the client gave up on this connection (a deadline, the context closing)


async def _exit_with_parent(scope: trio.CancelScope) -> None:
    # The parent holds our stdin open: end of file means it is gone, however it ended.
    stdin = trio.lowlevel.FdStream(os.dup(sys.stdin.fileno()))
    async with stdin:
        while await stdin.receive_some(4096):
            pass
    scope.cancel()


async def serve(port: int, capacity: int, service_time: float, queue: int, reject: str) -> None:
    """The capacity-limited service, until the parent closes our stdin."""
    model = CapacityModel(capacity, service_time, queue, _REJECTIONS[reject])
    async with trio.open_nursery() as nursery:
        handler = partial(_handle, model, nursery)
        listeners = await nursery.start(
            partial(trio.serve_tcp, handler, port, host="127.0.0.1", backlog=4096)
        )
        bound: int = listeners[0].socket.getsockname()[1]
        print(f"ready {bound}", flush=True)  # the one line on stdout: readiness and the port
        nursery.start_soon(_exit_with_parent, nursery.cancel_scope)


@contextmanager
def loopback_server(args: argparse.Namespace) -> Iterator[str]:
    """Start the server in a subprocess; yield its URL; stop it however the block ends."""
    command = [
        sys.executable,
        __file__,
        "--serve",
        "0",
        "--capacity",
        str(args.capacity),
        "--service-ms",
        str(args.service_ms),
        "--queue",
        str(args.queue),
        "--reject",
        args.reject,
    ]
    process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 10.0)
        line = process.stdout.readline() if ready else ""
        if not line.startswith("ready "):
            raise RuntimeError(f"the server did not start (status {process.poll()}, said {line!r})")
        yield f"http://127.0.0.1:{int(line.split()[1])}"
    finally:
        if process.stdin is not None:
            process.stdin.close()
        try:
            process.wait(timeout=2)
        except subprocess.TimeoutExpired:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout is not None:
            process.stdout.close()


# -- the load -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Scenario:
    """What every configuration is measured against."""

    url: str
    rate: float
    duration: float
    warmup: float
    deadline: float
    capacity: float
    breaker: bool

    @property
    def operations(self) -> int:
        return round(self.rate * self.duration)


@dataclass(frozen=True)
class Outcome:
    """One operation: when it was due (seconds into the run), how long it took, how it ended."""

    due: float
    latency: float
    error: str | None


@dataclass(frozen=True)
class PhaseFigures:
    goodput: float
    goodput_share: float
    p50: float
    p99: float
    failed: float
    rejected: float
    errors: dict[str, int]


@dataclass(frozen=True)
class RunFigures:
    phases: tuple[PhaseFigures, ...]
    goodput_share: float
    p99: float
    attempts_per_op: float
    failed: float
    errors: dict[str, int]
    admission: dict[str, float] = field(default_factory=dict)


Configure = Callable[[ck.CloudContextBuilder, Scenario], ck.CloudContextBuilder]


def _no_admission(builder: ck.CloudContextBuilder, scenario: Scenario) -> ck.CloudContextBuilder:
    return builder.retry_budget(None)


def _budget(builder: ck.CloudContextBuilder, scenario: Scenario) -> ck.CloudContextBuilder:
    return builder  # the default: RetryBudget()


def _concurrency(builder: ck.CloudContextBuilder, scenario: Scenario) -> ck.CloudContextBuilder:
    return builder.adaptive_concurrency(ck.AdaptiveConcurrency())


def _adaptive_rate(builder: ck.CloudContextBuilder, scenario: Scenario) -> ck.CloudContextBuilder:
    return builder.rate_limit(ck.RateLimit(scenario.rate, adaptive=True))


def _adaptive_rate_fail_fast(
    builder: ck.CloudContextBuilder, scenario: Scenario
) -> ck.CloudContextBuilder:
    # Failing fast, a bucket of one token refuses every attempt that comes early by a
    # hair (the client's own jitter): it holds 20 ms of the rate instead.
    burst = max(1, round(scenario.rate / 50))
    return builder.rate_limit(ck.RateLimit(scenario.rate, burst=burst, adaptive=True, wait=False))


CONFIGURATIONS: Final[dict[str, Configure]] = {
    "no admission": _no_admission,
    "budget": _budget,
    "budget+concurrency": _concurrency,
    "budget+adaptive rate": _adaptive_rate,
    "budget+adaptive rate fail-fast": _adaptive_rate_fail_fast,
}


def _label(error: ck.CloudError) -> str:
    if isinstance(error, ck.OperationTimeout) and error.waiting_for is not None:
        return f"OperationTimeout({error.waiting_for})"
    return type(error).__name__


def _admission_totals(snapshot: ck.CloudSnapshot) -> dict[str, float]:
    """The run's admission figures: totals, and the (one) endpoint's limit and rate."""
    totals = {
        "suppressed": float(snapshot.retries_suppressed),
        "throttled": float(snapshot.throttled),
        "shed": float(snapshot.shed),
        "overloaded": float(snapshot.overloaded),
    }
    for record in snapshot.admission:
        totals["limit"] = float(record.concurrency_limit)
        if record.rate_limit is not None:
            totals["rate"] = record.rate_limit.rate
    return totals


async def _drive(
    cloud: ck.Cloud, operation: ck.Operation, scenario: Scenario, count: int, record: bool
) -> list[Outcome]:
    """Start ``count`` operations at ``scenario.rate`` a second, whatever became of the others."""
    outcomes: list[Outcome] = []
    start = trio.current_time()
    interval = 1.0 / scenario.rate

    async def one(due: float) -> None:
        try:
            await cloud.execute(operation, timeout=scenario.deadline)
        except ck.CloudError as error:
            label: str | None = _label(error)
        else:
            label = None
        if record:
            outcomes.append(Outcome(due - start, trio.current_time() - due, label))

    async with trio.open_nursery() as nursery:
        for index in range(count):
            due = start + index * interval
            await trio.sleep_until(due)
            nursery.start_soon(one, due)
    return outcomes


def _percentile(values: list[float], share: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(len(ordered) * share) - 1))]


def _figures(
    scenario: Scenario,
    outcomes: list[Outcome],
    server: dict[str, object],
    admission: dict[str, float],
) -> RunFigures:
    third = scenario.duration / len(_PHASES)
    capacities = (scenario.capacity, scenario.capacity / 2, scenario.capacity)
    phases_counts = server["phases"]
    assert isinstance(phases_counts, list)
    after = server["after"]
    assert isinstance(after, dict)
    received = sum(int(counts["received"]) for counts in phases_counts) + int(after["received"])
    phases: list[PhaseFigures] = []
    for index, capacity in enumerate(capacities):
        low, high = index * third, (index + 1) * third
        started = [o for o in outcomes if low <= o.due < high]
        ended_ok = [o for o in outcomes if o.error is None and low <= o.due + o.latency < high]
        latencies = [o.latency for o in started if o.error is None]
        errors = Counter(o.error for o in started if o.error is not None)
        counts = phases_counts[index]
        goodput = len(ended_ok) / third
        phases.append(
            PhaseFigures(
                goodput=goodput,
                goodput_share=goodput / min(scenario.rate, capacity),
                p50=_percentile(latencies, 0.50),
                p99=_percentile(latencies, 0.99),
                failed=sum(errors.values()) / max(1, len(started)),
                rejected=int(counts["rejected"]) / max(1, int(counts["received"])),
                errors=dict(errors),
            )
        )
    successes = [o.latency for o in outcomes if o.error is None]
    errors = Counter(o.error for o in outcomes if o.error is not None)
    servable = sum(min(scenario.rate, c) for c in capacities) / len(capacities)
    return RunFigures(
        phases=tuple(phases),
        goodput_share=len(successes) / scenario.duration / servable,
        p99=_percentile(successes, 0.99),
        attempts_per_op=received / max(1, len(outcomes)),
        failed=sum(errors.values()) / max(1, len(outcomes)),
        errors=dict(errors),
        admission=admission,
    )


async def measure(name: str, scenario: Scenario, control: httpx.AsyncClient) -> RunFigures:
    """One run of one configuration, on a context of its own."""
    builder = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint=scenario.url))
        .signer(NoAuthSigner())
        .logger(ck.NoopLogger())
    )
    if not scenario.breaker:
        builder = builder.circuit_breaker(None)
    context = CONFIGURATIONS[name](builder, scenario).build()
    operation = ck.Operation(service="bench", name="work", path="/work")
    async with context as cloud:
        await _drive(cloud, operation, scenario, round(scenario.rate * scenario.warmup), False)
        (await control.post("/start", params={"duration": scenario.duration})).raise_for_status()
        outcomes = await _drive(cloud, operation, scenario, scenario.operations, True)
        server = (await control.get("/stats")).json()
        admission = _admission_totals(cloud.snapshot())
    return _figures(scenario, outcomes, server, admission)


async def calibrate(url: str, args: argparse.Namespace) -> float:
    """The server's healthy capacity, requests a second: closed loop, never rejected.

    As many clients as the server works on plus as many as it may queue (at most as many
    again), each sending one request after another straight through a
    :class:`PooledTransport`: the cheapest client there is, so the figure is the server's.
    """
    workers = args.capacity + min(args.capacity, args.queue)
    seconds = 0.5 if args.quick else 1.0
    target = httpx.URL(url + "/work")
    done = 0
    async with PooledTransport() as transport:

        async def worker(until: float) -> None:
            nonlocal done
            while trio.current_time() < until:
                response = await transport.handle_async_request(httpx.Request("GET", target))
                await response.aread()
                if response.status_code != 200:
                    raise RuntimeError(f"calibration got {response.status_code}: lower --capacity")
                done += 1

        rate = 0.0
        for _ in range(2):  # the first pass opens the connections
            done = 0
            begin = trio.current_time()
            async with trio.open_nursery() as nursery:
                for _ in range(workers):
                    nursery.start_soon(worker, begin + seconds)
            rate = done / (trio.current_time() - begin)
        return rate


async def run(args: argparse.Namespace, url: str) -> tuple[Scenario, dict[str, list[RunFigures]]]:
    capacity = await calibrate(url, args)
    nominal = args.capacity / (args.service_ms / 1000)
    scenario = Scenario(
        url=url,
        rate=args.load * capacity,
        duration=args.duration,
        warmup=args.warmup,
        deadline=args.deadline,
        capacity=capacity,
        breaker=args.breaker,
    )
    print(
        f"server: {args.capacity} at once, {args.service_ms:g} ms each, {args.queue} queued, "
        f"rejects with {args.reject}; capacity {capacity:,.0f}/s measured ({nominal:,.0f}/s "
        f"nominal), halved from {args.duration / 3:g} s to {2 * args.duration / 3:g} s\n"
        f"load: {scenario.rate:,.0f} operations/s ({scenario.rate / capacity:.2f}x healthy, "
        f"{2 * scenario.rate / capacity:.2f}x halved capacity), {scenario.operations} per run, "
        f"deadline {args.deadline:g} s; {args.reps} repetitions; circuit breaker "
        f"{'on' if args.breaker else 'off'}; Python {sys.version.split()[0]}, "
        f"trio {trio.__version__}, {os.cpu_count()} CPUs",
        flush=True,
    )
    names = [n for n in CONFIGURATIONS if not args.configs or n in args.configs]
    results: dict[str, list[RunFigures]] = {name: [] for name in names}
    async with httpx.AsyncClient(base_url=url) as control:
        for repetition in range(args.reps):
            shift = repetition % len(names)
            for name in names[shift:] + names[:shift]:
                results[name].append(await measure(name, scenario, control))
            print(f"  repetition {repetition + 1}/{args.reps} done", file=sys.stderr, flush=True)
    return scenario, results


# -- the report ---------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else math.nan


def _ratio(runs: list[RunFigures], phase: int) -> float:
    return _median([r.phases[phase].p99 / r.phases[0].p99 for r in runs])


def _errors(counts: list[dict[str, int]]) -> str:
    """Each error's median count over the repetitions, those whose median is 0 left out."""
    names = sorted({name for run in counts for name in run})
    medians = [(name, _median([float(run.get(name, 0)) for run in counts])) for name in names]
    return ", ".join(f"{name} {count:g}" for name, count in medians if count) or "-"


def report(scenario: Scenario, results: dict[str, list[RunFigures]]) -> None:
    print()
    print(
        "| configuration | phase | goodput/s | goodput % | p50 ms | p99 ms | p99/healthy "
        "| failed % | rejected % | errors (median count) |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        for index, phase in enumerate(_PHASES):
            figures = [r.phases[index] for r in runs]
            print(
                f"| {name} | {phase} "
                f"| {_median([f.goodput for f in figures]):,.0f} "
                f"| {100 * _median([f.goodput_share for f in figures]):.0f} "
                f"| {1000 * _median([f.p50 for f in figures]):.1f} "
                f"| {1000 * _median([f.p99 for f in figures]):.1f} "
                f"| {_ratio(runs, index):.2f} "
                f"| {100 * _median([f.failed for f in figures]):.1f} "
                f"| {100 * _median([f.rejected for f in figures]):.1f} "
                f"| {_errors([f.errors for f in figures])} |"
            )
    print()
    print(
        "| configuration | goodput % | p99 ms | attempts/op | failed % | suppressed | throttled "
        "| shed | overloaded | final limit | final rate/s |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, runs in results.items():
        admission = {
            key: _median([r.admission.get(key, math.nan) for r in runs])
            for key in ("suppressed", "throttled", "shed", "overloaded", "limit", "rate")
        }
        print(
            f"| {name} | {100 * _median([r.goodput_share for r in runs]):.0f} "
            f"| {1000 * _median([r.p99 for r in runs]):.1f} "
            f"| {_median([r.attempts_per_op for r in runs]):.2f} "
            f"| {100 * _median([r.failed for r in runs]):.1f} "
            + " ".join(
                f"| {value:,.0f}" if not math.isnan(value) else "| -"
                for value in admission.values()
            )
            + " |"
        )
    print()
    for name, runs in results.items():
        goodput = _median([r.phases[1].goodput_share for r in runs])
        ratio = _ratio(runs, 1)
        attempts = _median([r.attempts_per_op for r in runs])
        met = goodput >= 0.9 and ratio <= 2.0
        print(
            f"admission {name.replace(' ', '_')} goodput={100 * goodput:.0f}% "
            f"p99_halved/p99_healthy={ratio:.2f} attempts_per_op={attempts:.2f} "
            f"goal={'met' if met else 'missed'}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="one short repetition (about 30 s)")
    parser.add_argument("--reps", type=int, default=None, help="repetitions (default 3, quick 1)")
    parser.add_argument("--duration", type=float, default=None, help="measured seconds per run")
    parser.add_argument("--warmup", type=float, default=None, help="unmeasured seconds first")
    parser.add_argument("--load", type=float, default=0.75, help="offered rate / healthy capacity")
    parser.add_argument("--deadline", type=float, default=0.5, help="timeout= of each operation")
    parser.add_argument(
        "--capacity", type=int, default=16, help="requests the server works on at once"
    )
    parser.add_argument("--service-ms", type=float, default=20.0, help="service time per request")
    parser.add_argument("--queue", type=int, default=32, help="requests queued beyond capacity")
    parser.add_argument("--reject", choices=sorted(_REJECTIONS), default="slowdown")
    parser.add_argument("--breaker", action="store_true", help="keep the default circuit breaker")
    parser.add_argument("--configs", nargs="+", choices=list(CONFIGURATIONS), help="only these")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        try:
            trio.run(
                serve, args.serve, args.capacity, args.service_ms / 1000, args.queue, args.reject
            )
        except* KeyboardInterrupt:
            pass  # Ctrl-C reaches the whole process group: the parent reports it
        return
    args.reps = args.reps or (1 if args.quick else 3)
    args.duration = args.duration or (4.5 if args.quick else 10.5)
    args.warmup = args.warmup if args.warmup is not None else (0.5 if args.quick else 1.0)
    began = time.monotonic()
    try:
        with loopback_server(args) as url:
            scenario, results = trio.run(run, args, url)
    except* KeyboardInterrupt:
        print("interrupted; the server is stopped", file=sys.stderr)
        sys.exit(130)
    report(scenario, results)
    print(f"total {time.monotonic() - began:.0f} s")


if __name__ == "__main__":
    main()
