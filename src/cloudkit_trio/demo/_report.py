"""What a run shows: frames (the run at one moment), the verdict, and the summary's JSON.

The live view draws frames; the summary is the last frame and the verdict judged from it,
so the two can never disagree.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping
from typing import Any, Final

import attrs

__all__ = ["FAST_REJECTIONS", "Check", "EndpointFrame", "Frame", "Summary", "Transition", "Verdict"]

#: Failures the runtime chose, at once and without sending anything.
FAST_REJECTIONS: Final = frozenset({"CircuitOpenError", "Throttled", "Overloaded"})


def share(part: int, whole: int) -> str:
    """``12.5 %``; ``0 %`` of nothing."""
    return f"{100 * part / whole:.1f} %" if whole else "0 %"


def counts(items: Mapping[str, int]) -> str:
    """``CircuitOpenError 177, ServiceUnavailable 23``: largest first."""
    ranked = sorted(items.items(), key=lambda item: (-item[1], item[0]))
    return ", ".join(f"{name} {count}" for name, count in ranked)


@attrs.frozen
class Transition:
    """A breaker changed state, ``at`` seconds into the run."""

    at: float
    endpoint: str
    from_state: str
    to_state: str


@attrs.frozen(kw_only=True)
class EndpointFrame:
    """One endpoint at one moment: what it is doing now, and its breaker."""

    name: str
    url: str
    #: ``scheme://host:port``: how the runtime names the endpoint's breaker.
    key: str
    #: healthy, failing, down, recovering (embedded); in use, failing, recovering (yours).
    doing: str
    breaker: str
    failure_ratio: float
    half_open_in: float | None
    requests: int | None
    rejected: int


@attrs.frozen(kw_only=True)
class Frame:
    """The run at one moment: what the driver counted, what the runtime reported."""

    elapsed: float
    planned: int
    planned_duration: float
    submitted: int
    replied: int
    succeeded: int
    failed: int
    #: Answers beyond the first for one operation (must stay 0).
    duplicates: int
    via_execute: int
    via_channel: int
    failures: Mapping[str, int]
    retries: int
    retries_by_error: Mapping[str, int]
    retries_suppressed: int
    rejected: int
    credential_fetches: int
    credential_failures: int
    credentials_expire_in: float | None
    injected: Mapping[str, int]
    endpoints: tuple[EndpointFrame, ...]
    transitions: tuple[Transition, ...]
    stopping: bool = False
    #: The last frame: everything answered, the runtime's metrics drained.
    final: bool = False

    @property
    def attempts(self) -> int:
        """Attempts the operations made or were refused: one each, plus every retry."""
        return self.replied + self.retries

    @property
    def fast_rejections(self) -> int:
        return sum(n for name, n in self.failures.items() if name in FAST_REJECTIONS)

    @property
    def credential_refreshes(self) -> int:
        return max(self.credential_fetches - 1, 0)

    def name_of(self, key: str) -> str:
        """The endpoint's name, from the breaker's key."""
        return next((e.name for e in self.endpoints if e.key == key), key)


@attrs.frozen(kw_only=True)
class Check:
    """One claim about the run. ``binding``: the verdict (and exit status) depends on it."""

    name: str
    holds: bool
    statement: str
    binding: bool = True


@attrs.frozen(kw_only=True)
class Verdict:
    """What held and what did not; ``passed`` when every binding check held."""

    checks: tuple[Check, ...]
    passed: bool
    words: str

    @classmethod
    def judge(
        cls,
        frame: Frame,
        *,
        outage_endpoint: str | None,
        budget: tuple[float, float, float],
        extra: tuple[Check, ...] = (),
        interrupted: bool = False,
    ) -> Verdict:
        """Judge ``frame``. ``outage_endpoint`` names the endpoint the scenario takes down
        (its breaker must open, and most failures be fast rejections); ``budget`` is the
        retry budget's ratio, reserve per second and window."""
        judged = {
            "answered_exactly_once": _answered(frame),
            "something_succeeded": _succeeded(frame),
            "breakers_recovered": _breakers(frame, outage_endpoint),
            "retries_within_budget": _budget(frame, *budget),
            "failures_mostly_fast_rejections": _fast(frame),
        }
        # Only the scenario with an outage promises that most failures are fast rejections.
        checks = (
            *(
                Check(name=name, holds=holds, statement=statement, binding=binding)
                for name, (holds, statement) in judged.items()
                for binding in [name != "failures_mostly_fast_rejections" or bool(outage_endpoint)]
            ),
            *extra,
        )
        failed = [c for c in checks if c.binding and not c.holds]
        if interrupted:
            words = "INTERRUPTED: the run was stopped with Ctrl-C before it finished"
        elif failed:
            words = "FAIL: " + "; ".join(c.statement for c in failed)
        else:
            words = f"PASS: {len([c for c in checks if c.binding])} checks held"
        return cls(checks=checks, passed=not failed and not interrupted, words=words)

    def to_json(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "words": self.words,
            "held": [c.name for c in self.checks if c.holds],
            "failed": [c.name for c in self.checks if not c.holds],
            "checks": {
                c.name: {"holds": c.holds, "binding": c.binding, "statement": c.statement}
                for c in self.checks
            },
        }


def _answered(f: Frame) -> tuple[bool, str]:
    holds = f.submitted == f.replied == f.succeeded + f.failed and f.duplicates == 0
    return holds, (
        f"every operation answered exactly once: {f.submitted} submitted, {f.replied} answered"
        f" ({f.succeeded} ok + {f.failed} failed), {f.duplicates} answered twice"
    )


def _succeeded(f: Frame) -> tuple[bool, str]:
    if f.succeeded:
        return True, f"operations succeeded: {f.succeeded} of {f.replied}"
    where = ", ".join(e.url for e in f.endpoints)
    tried = f", after attempts that failed with {counts(f.retries_by_error)}" if f.retries else ""
    return False, (
        f"nothing succeeded: all {f.replied} operations failed ({counts(f.failures)})"
        f"{tried}; is {where} up and answering?"
    )


def _breakers(f: Frame, outage_endpoint: str | None) -> tuple[bool, str]:
    opened = Counter(f.name_of(t.endpoint) for t in f.transitions if t.to_state == "open")
    stuck = sorted(e.name for e in f.endpoints if e.name in opened and e.breaker != "closed")
    if stuck:
        return False, f"breaker of {', '.join(stuck)} opened and never closed again"
    if outage_endpoint is not None and outage_endpoint not in opened:
        return False, f"the breaker of {outage_endpoint} never opened during its outage"
    if not opened:
        return True, "no breaker opened"
    times = ", ".join(f"{name} {n}x" for name, n in sorted(opened.items()))
    return True, f"breakers opened ({times}) and all closed again"


def _budget(f: Frame, ratio: float, reserve: float, window: float) -> tuple[bool, str]:
    windows = math.ceil(f.elapsed / window) + 1
    allowed = math.floor(ratio * f.submitted + reserve * window * windows * len(f.endpoints))
    return f.retries <= allowed, (
        f"retries within the retry budget: {f.retries} made, at most {allowed} allowed, "
        f"{f.retries_suppressed} refused by it"
    )


def _fast(f: Frame) -> tuple[bool, str]:
    fast, failed = f.fast_rejections, f.failed
    kinds = f"{fast} of {failed} ({share(fast, failed)}) were CircuitOpenError/Throttled/Overloaded"
    if failed == 0 or fast * 2 > failed:
        return True, f"most failures were deliberate fast rejections: {kinds}, nothing sent"
    return False, f"most failures were real errors, not fast rejections: {kinds}"


@attrs.frozen(kw_only=True)
class Summary:
    """The last frame, the verdict judged from it, and the run's description."""

    mode: str
    target: str
    seed: int
    frame: Frame
    verdict: Verdict
    interrupted: bool = False
    metrics_url: str | None = None
    extra: Mapping[str, Any] = attrs.field(factory=dict)

    @property
    def exit_status(self) -> int:
        if self.interrupted:
            return 130
        return 0 if self.verdict.passed else 1

    def to_json(self) -> dict[str, Any]:
        f = self.frame
        return {
            "mode": self.mode,
            "target": self.target,
            "seed": self.seed,
            "planned_operations": f.planned,
            "planned_seconds": round(f.planned_duration, 3),
            "elapsed_seconds": round(f.elapsed, 3),
            "operations": {
                "submitted": f.submitted,
                "answered": f.replied,
                "succeeded": f.succeeded,
                "failed": f.failed,
                "answered_twice": f.duplicates,
                "via_execute": f.via_execute,
                "via_channel": f.via_channel,
                "failures": dict(sorted(f.failures.items())),
                "fast_rejections": f.fast_rejections,
            },
            "attempts": {
                "total": f.attempts,
                "retries": f.retries,
                "retries_by_error": dict(sorted(f.retries_by_error.items())),
                "retries_refused_by_budget": f.retries_suppressed,
                "rejected_by_breaker": f.rejected,
            },
            "credentials": {
                "fetches": f.credential_fetches,
                "refreshes": f.credential_refreshes,
                "failures": f.credential_failures,
            },
            "injected": dict(sorted(f.injected.items())),
            "endpoints": [
                {
                    "name": e.name,
                    "url": e.url,
                    "now": e.doing,
                    "breaker": e.breaker,
                    "requests": e.requests,
                    "rejected_by_breaker": e.rejected,
                }
                for e in f.endpoints
            ],
            "transitions": [
                {
                    "at": round(t.at, 3),
                    "endpoint": f.name_of(t.endpoint),
                    "from": t.from_state,
                    "to": t.to_state,
                }
                for t in f.transitions
            ],
            **dict(self.extra),
            "verdict": self.verdict.to_json(),
            "interrupted": self.interrupted,
            "metrics_url": self.metrics_url,
        }
