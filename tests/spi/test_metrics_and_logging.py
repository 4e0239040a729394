"""MetricsCollector and Logger built-ins."""

from __future__ import annotations

import io
import json
import logging

import pytest

import cloudkit_trio as ck
from cloudkit_trio.spi import LogEntry, LogLevel


class Recording(ck.Logger):
    def __init__(self, level: LogLevel = LogLevel.TRACE) -> None:
        self.level = level
        self.entries: list[LogEntry] = []

    def is_enabled(self, level: LogLevel) -> bool:
        return level >= self.level

    def log(self, entry: LogEntry) -> None:
        self.entries.append(entry)


def metrics(**overrides: object) -> ck.OperationMetrics:
    values: dict[str, object] = {
        "provider": ck.ProviderType.AWS, "service": "s3", "operation": "put_object",
        "duration": 0.150, "outcome": ck.OperationOutcome.SUCCESS,
    }  # fmt: skip
    values.update(overrides)
    return ck.OperationMetrics(**values)  # type: ignore[arg-type]


class TestOperationMetrics:
    def test_outcomes_are_lowercase(self) -> None:
        """Outcomes are lowercase strings: success, failure, retry, retry_suppressed."""
        assert [str(o) for o in ck.OperationOutcome] == [
            "success",
            "failure",
            "retry",
            "retry_suppressed",
        ]

    def test_record_fields(self) -> None:
        """OperationMetrics carries the seed's fields plus status and error code."""
        m = metrics(retry_count=2, status_code=503, error_code="SlowDown")
        assert m.attempts == 3 and m.status_code == 503 and m.error_code == "SlowDown"

    def test_negative_duration_is_refused(self) -> None:
        """A negative duration is a bug in the caller."""
        with pytest.raises(ValueError, match="duration"):
            metrics(duration=-1.0)


class TestLoggingMetrics:
    async def test_seed_line(self) -> None:
        """record() writes the seed's line at INFO."""
        logger = Recording()
        await ck.LoggingMetrics(logger).record(metrics())
        [entry] = logger.entries
        assert entry.level is LogLevel.INFO
        assert entry.message == "[aws] s3.put_object completed in 150ms (success)"
        assert entry.fields["retry_count"] == 0

    async def test_counters_gauges_histograms_at_debug(self) -> None:
        """The generic instruments log at DEBUG with their tags."""
        logger = Recording()
        collector = ck.LoggingMetrics(logger)
        await collector.increment_counter("retries", tags={"service": "s3"})
        await collector.record_gauge("queue_depth", 3)
        await collector.record_histogram("retry_delay_seconds", 0.2)
        assert [e.level for e in logger.entries] == [LogLevel.DEBUG] * 3
        assert logger.entries[0].fields == {
            "counter": "retries",
            "value": 1.0,
            "tags": {"service": "s3"},
        }

    async def test_nothing_is_built_when_info_is_off(self) -> None:
        """With INFO off, record() builds no entry."""
        logger = Recording(LogLevel.ERROR)
        await ck.LoggingMetrics(logger).record(metrics())
        assert logger.entries == []

    async def test_noop(self) -> None:
        """NoopMetrics accepts everything and records nothing."""
        noop = ck.NoopMetrics()
        await noop.record(metrics())
        await noop.increment_counter("x")
        await noop.record_gauge("x", 1)
        await noop.record_histogram("x", 1)
        assert isinstance(noop, ck.MetricsCollector)


class TestLogLevel:
    def test_order_and_display(self) -> None:
        """TRACE < DEBUG < INFO < WARN < ERROR, shown in upper case."""
        assert LogLevel.TRACE < LogLevel.DEBUG < LogLevel.INFO < LogLevel.WARN < LogLevel.ERROR
        assert str(LogLevel.WARN) == "WARN"

    def test_helpers_filter_before_building(self) -> None:
        """Helpers below the level build no entry at all."""
        logger = Recording(LogLevel.WARN)
        logger.debug("quiet", expensive=1)
        logger.info("quiet")
        logger.warn("loud", n=1)
        logger.error("louder")
        logger.trace("quiet")
        assert [e.message for e in logger.entries] == ["loud", "louder"]


class TestStdlibLogger:
    def test_writes_through_logging_with_fields(self, caplog: pytest.LogCaptureFixture) -> None:
        """Entries reach the logging module with fields in the text and in record.fields."""
        caplog.set_level(logging.DEBUG, logger="cloudkit_trio")
        logger = ck.StdlibLogger(min_level=LogLevel.DEBUG)
        logger.info("operation retried", attempt=2, delay=0.2)
        [record] = caplog.records
        assert record.levelno == logging.INFO and record.name == "cloudkit_trio"
        assert record.getMessage() == "operation retried attempt=2 delay=0.2"
        assert record.fields == {"attempt": 2, "delay": 0.2}  # type: ignore[attr-defined]

    def test_trace_maps_below_debug(self, caplog: pytest.LogCaptureFixture) -> None:
        """TRACE is logging level 5 and is filtered by both levels."""
        caplog.set_level(5, logger="cloudkit_trio")
        logger = ck.StdlibLogger(min_level=LogLevel.TRACE)
        logger.trace("fine detail")
        assert [r.levelno for r in caplog.records] == [5]
        assert not ck.StdlibLogger(min_level=LogLevel.INFO).is_enabled(LogLevel.DEBUG)

    def test_respects_the_stdlib_level(self, caplog: pytest.LogCaptureFixture) -> None:
        """A stdlib logger set to WARNING turns INFO off without formatting anything."""
        caplog.set_level(logging.WARNING, logger="cloudkit_trio")
        logger = ck.StdlibLogger()
        assert not logger.is_enabled(LogLevel.INFO)
        logger.info("dropped")
        assert caplog.records == []


class TestStructuredAndNoop:
    def test_json_lines(self) -> None:
        """StructuredLogger writes one JSON object per line."""
        stream = io.StringIO()
        logger = ck.StructuredLogger(stream, min_level=LogLevel.DEBUG)
        logger.info("breaker opened", endpoint="http://127.0.0.1:1", ratio=0.5)
        logger.debug("detail", value=object())
        logger.trace("dropped")
        lines = stream.getvalue().splitlines()
        assert len(lines) == 2
        first = json.loads(lines[0])
        assert first["level"] == "INFO" and first["message"] == "breaker opened"
        assert first["endpoint"] == "http://127.0.0.1:1" and first["ratio"] == 0.5
        assert "timestamp" in first
        assert json.loads(lines[1])["value"].startswith("<object")

    def test_fields_cannot_overwrite_the_envelope(self) -> None:
        """A field named like an envelope key does not replace it."""
        stream = io.StringIO()
        ck.StructuredLogger(stream).info("real", message="fake", level="x")
        record = json.loads(stream.getvalue())
        assert record["message"] == "real" and record["level"] == "INFO"

    def test_noop(self) -> None:
        """NoopLogger is never enabled."""
        logger = ck.NoopLogger()
        assert not any(logger.is_enabled(level) for level in LogLevel)
        logger.error("nothing")
        logger.log(LogEntry(LogLevel.ERROR, "nothing"))
