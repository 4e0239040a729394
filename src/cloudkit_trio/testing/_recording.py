"""Recording test doubles for the Logger and MetricsCollector SPIs."""

from __future__ import annotations

from collections import Counter as _Counter

import attrs

from ..spi import LogEntry, Logger, LogLevel, MetricsCollector, OperationMetrics, Tags

__all__ = ["CapturingLogger", "RecordedInstrument", "RecordingMetrics"]


class CapturingLogger(Logger):
    """Keeps every entry at or above ``level`` in :attr:`entries`.

    .. versionadded:: 0.1.0
    """

    def __init__(self, level: LogLevel = LogLevel.TRACE) -> None:
        self.level = level
        self.entries: list[LogEntry] = []

    def is_enabled(self, level: LogLevel) -> bool:
        return level >= self.level

    def log(self, entry: LogEntry) -> None:
        if entry.level >= self.level:
            self.entries.append(entry)

    def messages(self, level: LogLevel | None = None) -> list[str]:
        """The messages logged, optionally only at ``level``."""
        return [e.message for e in self.entries if level is None or e.level is level]


@attrs.frozen
class RecordedInstrument:
    """One counter increment, gauge value or histogram observation."""

    kind: str
    name: str
    value: float
    tags: dict[str, str]


class RecordingMetrics(MetricsCollector):
    """Keeps every operation and instrument it receives, for assertions.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        self.operations: list[OperationMetrics] = []
        self.instruments: list[RecordedInstrument] = []

    async def record(self, metrics: OperationMetrics) -> None:
        self.operations.append(metrics)

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: Tags | None = None
    ) -> None:
        self.instruments.append(RecordedInstrument("counter", name, value, dict(tags or {})))

    async def record_gauge(self, name: str, value: float, tags: Tags | None = None) -> None:
        self.instruments.append(RecordedInstrument("gauge", name, value, dict(tags or {})))

    async def record_histogram(self, name: str, value: float, tags: Tags | None = None) -> None:
        self.instruments.append(RecordedInstrument("histogram", name, value, dict(tags or {})))

    def counter_total(self, name: str, **tags: str) -> float:
        """Sum of increments of counter ``name`` whose tags include ``tags``."""
        return sum(
            i.value
            for i in self.instruments
            if i.kind == "counter" and i.name == name and tags.items() <= i.tags.items()
        )

    def outcomes(self) -> _Counter[str]:
        """How many operations ended with each outcome."""
        return _Counter(str(m.outcome) for m in self.operations)
