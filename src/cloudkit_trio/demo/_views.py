"""How a run is shown in text: the words every view shares, plain lines, and JSON.

The live terminal view (rich) is in ``_live``; both draw frames with these words, and end
with the same summary.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Final, TextIO

from ._report import Check, Frame, Summary, Transition, Verdict, counts, share

if TYPE_CHECKING:
    from ._scenario import Settings, Target

__all__ = [
    "JsonView",
    "PlainView",
    "endpoint_rows",
    "figure_rows",
    "header_lines",
    "status_line",
    "transition_text",
    "verdict_lines",
]

#: Seconds between two progress lines in plain mode.
PLAIN_INTERVAL: Final = 1.0


def header_lines(target: Target, settings: Settings, metrics_url: str | None) -> list[str]:
    s = settings
    lines = [
        f"cloudkit-trio demo: {target.title}",
        f"  {s.operations} operations at {s.rate:g}/s, concurrency {s.concurrency}, "
        f"fault rate {s.fault_rate:g}, seed {s.seed}",
    ]
    lines += [f"  endpoint {e.name}: {e.url}" for e in target.endpoints]
    lines += [f"  {note}" for note in target.notes]
    if metrics_url is not None:
        lines.append(f"  metrics: {metrics_url}")
    return lines


def figure_rows(f: Frame) -> list[tuple[str, str, str]]:
    """(figure, value, detail) rows; every percentage says what it is a share of."""
    failures = f"{share(f.failed, f.replied)} of operations answered"
    rows = [
        ("elapsed", f"{f.elapsed:.1f} s", f"planned {f.planned_duration:.1f} s"),
        (
            "operations",
            str(f.submitted),
            f"{f.via_execute} awaited, {f.via_channel} through the channel",
        ),
        ("answered", str(f.replied), f"{f.duplicates} answered twice"),
        ("succeeded", str(f.succeeded), f"{share(f.succeeded, f.replied)} of operations answered"),
        ("failed", str(f.failed), f"{failures}: {counts(f.failures)}" if f.failures else failures),
        (
            "fast rejections",
            str(f.fast_rejections),
            f"{share(f.fast_rejections, f.failed)} of failures: refused by a breaker, "
            "a rate limit or load shedding, nothing sent",
        ),
        ("attempts", str(f.attempts), "one per operation, plus each retry"),
        (
            "retries",
            str(f.retries),
            f"{share(f.retries, f.attempts)} of attempts"
            + (f": {counts(f.retries_by_error)}" if f.retries_by_error else ""),
        ),
        (
            "rejected by breaker",
            str(f.rejected),
            f"{share(f.rejected, f.attempts)} of attempts, nothing sent",
        ),
        ("refused by budget", str(f.retries_suppressed), "retries the retry budget did not allow"),
        (
            "credential refreshes",
            str(f.credential_refreshes),
            f"{f.credential_fetches} fetches, {f.credential_failures} failed",
        ),
    ]
    if f.injected:
        rows.append(("injected faults", str(sum(f.injected.values())), counts(f.injected)))
    return rows


def endpoint_rows(f: Frame) -> list[tuple[str, str, str, str, str, str]]:
    """(endpoint, now, breaker, failures of calls in window, requests, rejected) rows."""
    return [
        (
            e.name,
            e.doing,
            e.breaker.replace("_", "-")
            + ("" if e.half_open_in is None else f" (probe in {max(e.half_open_in, 0):.1f} s)"),
            f"{e.failure_ratio:.0%}",
            "" if e.requests is None else str(e.requests),
            str(e.rejected),
        )
        for e in f.endpoints
    ]


def transition_text(f: Frame, t: Transition) -> str:
    """``[   6.8s] breaker gamma: closed -> open``."""
    return f"[{t.at:6.1f}s] breaker {f.name_of(t.endpoint)}: {t.from_state} -> {t.to_state}"


def status_line(f: Frame) -> str:
    endpoints = "  ".join(f"{e.name} {e.doing}/{e.breaker}" for e in f.endpoints)
    return (
        f"[{f.elapsed:6.1f}s] {f.replied}/{f.planned} answered  ok {f.succeeded}  "
        f"failed {f.failed} ({share(f.failed, f.replied)} of operations)  "
        f"retries {f.retries} ({share(f.retries, f.attempts)} of attempts)  "
        f"rejected {f.rejected}  refreshes {f.credential_refreshes}  | {endpoints}"
    )


def _mark(check: Check) -> str:
    if check.holds:
        return "✓"
    return "✗" if check.binding else "·"


def verdict_lines(verdict: Verdict) -> list[str]:
    lines = [f"verdict: {verdict.words}"]
    for check in verdict.checks:
        note = "" if check.binding or check.holds else " (reported only)"
        lines.append(f"  {_mark(check)} {check.statement}{note}")
    return lines


class PlainView:
    """A line a second, a line per breaker transition, then the summary as text."""

    def __init__(self, stream: TextIO, *, interval: float = PLAIN_INTERVAL) -> None:
        self.stream = stream
        self.interval = interval
        self.frames: list[Frame] = []
        self._next_line = 0.0
        self._transitions_shown = 0

    def _print(self, text: str = "") -> None:
        print(text, file=self.stream, flush=True)

    def start(self, target: Target, settings: Settings, metrics_url: str | None) -> None:
        for line in header_lines(target, settings, metrics_url):
            self._print(line)

    def update(self, frame: Frame) -> None:
        self.frames.append(frame)
        for t in frame.transitions[self._transitions_shown :]:
            self._print(transition_text(frame, t))
        self._transitions_shown = len(frame.transitions)
        if frame.final or frame.elapsed >= self._next_line:
            self._next_line = frame.elapsed + self.interval
            self._print(status_line(frame))

    def finish(self, summary: Summary) -> None:
        f = summary.frame
        self._print()
        self._print(f"summary ({summary.mode}, seed {summary.seed})")
        for figure, value, detail in figure_rows(f):
            self._print(f"  {figure:<22}{value:>8}  {detail}".rstrip())
        self._print("endpoints (now, breaker, failures of calls in its window, requests, rejected)")
        for name, doing, breaker, ratio, requests, rejected in endpoint_rows(f):
            self._print(
                f"  {name:<8}{doing:<11}{breaker:<12}{ratio:>5}  "
                f"requests {requests or '-'}  rejected {rejected}"
            )
        self._print(f"breaker transitions ({len(f.transitions)})")
        for t in f.transitions:
            self._print(f"  {transition_text(f, t)}")
        for key, document in summary.extra.items():
            self._print(f"{key}: " + ", ".join(f"{k} {v}" for k, v in document.items()))
        for line in verdict_lines(summary.verdict):
            self._print(line)


class JsonView:
    """Nothing while running; the summary as one JSON document at the end."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def start(self, target: Target, settings: Settings, metrics_url: str | None) -> None:
        return None

    def update(self, frame: Frame) -> None:
        return None

    def finish(self, summary: Summary) -> None:
        json.dump(summary.to_json(), self.stream, indent=2)
        self.stream.write("\n")
        self.stream.flush()
