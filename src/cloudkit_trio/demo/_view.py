"""How a run is shown: the View protocol, plain lines for pipes and logs, JSON for machines.

The live terminal view (rich) is in ``_live``; :func:`choose_view` picks it only when stdout
is a terminal.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import TYPE_CHECKING, Final, Protocol, TextIO

if TYPE_CHECKING:
    from ._progress import Header, Progress
    from ._summary import Summary
    from ._target import Check

__all__ = [
    "JsonView",
    "PlainView",
    "View",
    "check_line",
    "choose_view",
    "figures",
    "invariant_line",
]

#: Seconds between two progress lines in plain mode.
PLAIN_INTERVAL: Final = 1.0


class View(Protocol):
    """Receives the run's header, its progress at every tick, and its summary."""

    def start(self, header: Header) -> None: ...

    def update(self, progress: Progress) -> None: ...

    def finish(self, summary: Summary) -> None: ...


def choose_view(stream: TextIO, *, json_output: bool) -> View:
    """JSON when asked; a live view on a terminal; plain lines otherwise."""
    if json_output:
        return JsonView(stream)
    if stream.isatty():
        from ._live import LiveView

        return LiveView(stream)
    return PlainView(stream)


def _counts(items: Mapping[str, int]) -> str:
    ranked = sorted(items.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count}" for name, count in ranked)


def figures(summary: Summary) -> list[tuple[str, str, str]]:
    """The summary as (figure, value, detail) rows, shared by the plain and live views."""
    s = summary
    rows = [
        ("elapsed", f"{s.elapsed:.1f} s", f"planned {s.planned_duration:.1f} s"),
        ("submitted", str(s.submitted), f"{s.via_execute} execute, {s.via_channel} channel"),
        ("replied", str(s.replied), ""),
        ("succeeded", str(s.succeeded), ""),
        ("failed", str(s.failed), _counts(s.failures)),
        ("retries", str(s.retries), _counts(s.retries_by_error)),
        ("retried operations", str(s.retried_operations), "needed more than one attempt"),
        ("rejected by breaker", str(s.rejected_by_breaker), "CircuitOpenError, no request sent"),
        (
            "credential refreshes",
            str(s.credential_refreshes),
            f"{s.credential_fetches} fetches, {s.credential_refresh_failures} failed",
        ),
    ]
    if s.injected:
        rows.append(("injected faults", str(sum(s.injected.values())), _counts(s.injected)))
    if s.report is not None:
        rows.extend(s.report.rows)
    return rows


def invariant_line(summary: Summary) -> str:
    if summary.cancelled:
        verdict = "not checked: a second Ctrl-C abandoned the answers still on their way"
    else:
        verdict = "holds" if summary.invariant_holds else "VIOLATED"
    return f"invariant submitted == replied: {summary.submitted} == {summary.replied}: {verdict}"


def check_line(check: Check) -> str:
    """One of the target's checks, as the last lines of the summary show it."""
    if check.holds:
        verdict = "holds"
    elif check.binding:
        verdict = "VIOLATED"
    else:
        verdict = "differs (reported only: the bucket is yours, others may write to it)"
    return f"check {check.statement}: {verdict}"


def _breakers(progress: Progress) -> str:
    return "  ".join(f"{e.name} {e.state}" for e in progress.endpoints)


class PlainView:
    """One line per second, one line per breaker transition, then the summary as text."""

    def __init__(self, stream: TextIO, *, interval: float = PLAIN_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self._next_line = 0.0
        self._transitions_shown = 0
        self._stopping_shown = False

    def _print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def start(self, header: Header) -> None:
        s = header.settings
        self._print(
            f"cloudkit-trio demo: {header.title}; {s.operations} operations at {s.rate:g}/s, "
            f"concurrency {s.concurrency}, fault rate {s.fault_rate:g}, seed {s.seed}"
        )
        for name, url, role in header.endpoints:
            self._print(f"  endpoint {name}: {url} ({role})")
        for note in header.notes:
            self._print(f"  {note}")
        if header.metrics_url is not None:
            self._print(f"  metrics: {header.metrics_url}")

    def update(self, progress: Progress) -> None:
        p = progress
        for transition in p.transitions[self._transitions_shown :]:
            name = next((e.name for e in p.endpoints if e.key == transition.endpoint), "")
            self._print(
                f"[{transition.at:6.1f}s] breaker {name or transition.endpoint}: "
                f"{transition.from_state} -> {transition.to_state}"
            )
        self._transitions_shown = len(p.transitions)
        if p.stopping and not self._stopping_shown:
            self._stopping_shown = True
            self._print(f"[{p.elapsed:6.1f}s] interrupted: stopping, answering what is running")
        if p.elapsed < self._next_line:
            return
        self._next_line = p.elapsed + self.interval
        self._print(
            f"[{p.elapsed:6.1f}s] {p.replied}/{p.planned} replied  ok {p.succeeded}  "
            f"failed {p.failed}  retries {p.retries}  rejected {p.rejected_by_breaker}  "
            f"refreshes {p.credential_refreshes}  in flight {p.inflight}  | {_breakers(p)}"
        )

    def finish(self, summary: Summary) -> None:
        self._print()
        self._print(f"summary ({summary.mode}, seed {summary.seed})")
        for figure, value, detail in figures(summary):
            self._print(f"  {figure:<22}{value:>8}  {detail}".rstrip())
        self._print("endpoints")
        for e in summary.endpoints:
            requests = "" if e.requests is None else f"  requests {e.requests}"
            self._print(
                f"  {e.name:<8}{e.url}  {e.role}{requests}  breaker {e.breaker_state}, "
                f"opened {e.opened}, closed {e.closed}, rejected {e.rejected_by_breaker}"
            )
        self._print(invariant_line(summary))
        for check in summary.checks:
            self._print(check_line(check))


class JsonView:
    """Nothing while running; the summary as one JSON document at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def start(self, header: Header) -> None:
        return None

    def update(self, progress: Progress) -> None:
        return None

    def finish(self, summary: Summary) -> None:
        json.dump(summary.to_json(), self.stream, indent=2)
        self.stream.write("\n")
        self.stream.flush()
