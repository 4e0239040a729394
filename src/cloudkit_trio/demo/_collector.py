"""The demo's own MetricsCollector: it counts what the runtime reports through the public SPI.

Retries, breaker rejections and transitions, and credential refreshes are not counted by
the demo itself: the runtime emits them (see :class:`~cloudkit_trio.runtime.RuntimeMetric`)
and this collector adds them up, exactly as a user's collector would.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable

import attrs

from ..runtime import RuntimeMetric
from ..spi import MetricsCollector, OperationMetrics, OperationOutcome, Tags

__all__ = ["DemoMetrics", "Transition"]


@attrs.frozen
class Transition:
    """A breaker changed state, ``at`` seconds into the run (as the collector heard it)."""

    at: float
    endpoint: str
    from_state: str
    to_state: str


class DemoMetrics(MetricsCollector):
    """Adds up the runtime's counters; ``elapsed`` dates the breaker transitions."""

    def __init__(self, elapsed: Callable[[], float]) -> None:
        self._elapsed = elapsed
        self.outcomes: Counter[str] = Counter()
        self.errors: Counter[str] = Counter()
        self.retries = 0
        self.retries_by_error: Counter[str] = Counter()
        self.rejections: Counter[str] = Counter()
        self.refreshes = 0
        self.refresh_failures = 0
        self.transitions: list[Transition] = []

    def __repr__(self) -> str:
        return f"DemoMetrics(operations={sum(self.outcomes.values())}, retries={self.retries})"

    async def record(self, metrics: OperationMetrics) -> None:
        self.outcomes[str(metrics.outcome)] += 1
        if metrics.outcome is OperationOutcome.FAILURE and metrics.error_code:
            self.errors[metrics.error_code] += 1

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        tags = tags or {}
        count = int(value)
        if name == RuntimeMetric.RETRIES:
            self.retries += count
            self.retries_by_error[tags.get("error", "?")] += count
        elif name == RuntimeMetric.BREAKER_REJECTIONS:
            self.rejections[tags.get("endpoint", "?")] += count
        elif name == RuntimeMetric.BREAKER_TRANSITIONS:
            self.transitions.append(
                Transition(
                    at=self._elapsed(),
                    endpoint=tags.get("endpoint", "?"),
                    from_state=tags.get("from_state", "?"),
                    to_state=tags.get("to_state", "?"),
                )
            )
        elif name == RuntimeMetric.CREDENTIAL_REFRESHES:
            if tags.get("outcome") == "success":
                self.refreshes += count
            else:
                self.refresh_failures += count

    async def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        return None

    async def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        return None

    @property
    def rejected_by_breaker(self) -> int:
        return sum(self.rejections.values())

    def transitions_of(self, endpoint: str) -> list[Transition]:
        return [t for t in self.transitions if t.endpoint == endpoint]
