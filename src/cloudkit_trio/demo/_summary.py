"""The record a run ends with, and its JSON form (``--json``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ._collector import Transition
from ._target import Check, TargetReport

__all__ = ["EndpointSummary", "Summary"]


@attrs.frozen(kw_only=True)
class EndpointSummary:
    """One endpoint's story: what it received and what its breaker did."""

    name: str
    url: str
    role: str
    requests: int | None
    breaker_state: str
    rejected_by_breaker: int
    transitions: tuple[Transition, ...]

    def count(self, to_state: str) -> int:
        """How often the breaker entered ``to_state``."""
        return sum(1 for t in self.transitions if t.to_state == to_state)

    @property
    def opened(self) -> int:
        return self.count("open")

    @property
    def closed(self) -> int:
        return self.count("closed")

    @property
    def recovered(self) -> bool:
        """The breaker opened, then closed again, and is closed now."""
        first_open = next((i for i, t in enumerate(self.transitions) if t.to_state == "open"), None)
        if first_open is None:
            return False
        closed_after = any(t.to_state == "closed" for t in self.transitions[first_open:])
        return closed_after and self.breaker_state == "closed"

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "url": self.url,
            "role": self.role,
            "requests": self.requests,
            "breaker": {
                "state": self.breaker_state,
                "opened": self.opened,
                "half_opened": self.count("half_open"),
                "closed": self.closed,
                "recovered": self.recovered,
                "rejected": self.rejected_by_breaker,
                "transitions": [
                    {"at": round(t.at, 3), "from": t.from_state, "to": t.to_state}
                    for t in self.transitions
                ],
            },
        }


@attrs.frozen(kw_only=True)
class Summary:
    """The figures of a finished (or interrupted) run.

    ``submitted``/``replied``/``succeeded``/``failed`` are counted by the driver as answers
    arrive; ``retries``, ``rejected_by_breaker`` and the credential figures are what the
    runtime reported through the MetricsCollector SPI. ``credential_fetches`` counts every
    successful fetch, the first included; ``credential_refreshes`` the ones after it.
    """

    mode: str
    target: str
    seed: int
    operations: int
    concurrency: int
    rate: float
    fault_rate: float
    planned_duration: float
    elapsed: float
    submitted: int
    replied: int
    succeeded: int
    failed: int
    via_execute: int
    via_channel: int
    retried_operations: int
    failures: Mapping[str, int]
    retries: int
    retries_by_error: Mapping[str, int]
    rejected_by_breaker: int
    credential_fetches: int
    credential_refresh_failures: int
    injected: Mapping[str, int]
    endpoints: tuple[EndpointSummary, ...]
    interrupted: bool
    #: A second Ctrl-C cancelled the run: answers still on their way were abandoned, so
    #: ``submitted == replied`` was not checked.
    cancelled: bool = False
    metrics_url: str | None = None
    #: What the target found after the run (an S3 listing), if it looks.
    report: TargetReport | None = None

    @property
    def credential_refreshes(self) -> int:
        return max(self.credential_fetches - 1, 0)

    @property
    def invariant_holds(self) -> bool:
        """Every submitted operation got exactly one answer."""
        return self.submitted == self.replied

    @property
    def checks(self) -> tuple[Check, ...]:
        """The target's own checks (``listed == uploaded``), binding or not."""
        return () if self.report is None else self.report.checks

    @property
    def checks_hold(self) -> bool:
        """Every binding check of the target held."""
        return all(check.holds for check in self.checks if check.binding)

    @property
    def exit_status(self) -> int:
        """0 when the invariant and the target's binding checks hold, 130 after Ctrl-C,
        else 1."""
        if self.interrupted:
            return 130
        return 0 if self.invariant_holds and self.checks_hold else 1

    def to_json(self) -> dict[str, Any]:
        document = self._document()
        if self.report is not None:
            document[self.report.key] = dict(self.report.document)
            invariant = document["invariant"]
            for check in self.report.checks:
                if check.binding:
                    invariant[check.name] = check.holds
        return document

    def _document(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "target": self.target,
            "seed": self.seed,
            "operations": self.operations,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "fault_rate": self.fault_rate,
            "planned_seconds": round(self.planned_duration, 3),
            "elapsed_seconds": round(self.elapsed, 3),
            "submitted": self.submitted,
            "replied": self.replied,
            "succeeded": self.succeeded,
            "failed": self.failed,
            "via_execute": self.via_execute,
            "via_channel": self.via_channel,
            "retried_operations": self.retried_operations,
            "failures": dict(sorted(self.failures.items())),
            "retries": self.retries,
            "retries_by_error": dict(sorted(self.retries_by_error.items())),
            "rejected_by_breaker": self.rejected_by_breaker,
            "credential_fetches": self.credential_fetches,
            "credential_refreshes": self.credential_refreshes,
            "credential_refresh_failures": self.credential_refresh_failures,
            "injected": dict(sorted(self.injected.items())),
            "endpoints": [endpoint.to_json() for endpoint in self.endpoints],
            "invariant": {
                "submitted_equals_replied": self.invariant_holds,
                "succeeded_plus_failed_equals_replied": (
                    self.succeeded + self.failed == self.replied
                ),
            },
            "interrupted": self.interrupted,
            "cancelled": self.cancelled,
            "metrics_url": self.metrics_url,
        }
