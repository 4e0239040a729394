"""The Logger SPI: level-filtered, structured log entries, and the built-in sinks."""

from __future__ import annotations

import datetime as dt
import enum
import json
import logging
import sys
from collections.abc import Mapping
from typing import Final, Protocol, TextIO, runtime_checkable

import attrs

from .._masking import escape_controls, mask_fields

__all__ = [
    "LogEntry",
    "LogLevel",
    "Logger",
    "NoopLogger",
    "StdlibLogger",
    "StructuredLogger",
    "redact_fields",
]


class LogLevel(enum.IntEnum):
    """Severity of a :class:`LogEntry`, ordered ``TRACE < DEBUG < INFO < WARN < ERROR``.

    The values line up with the standard :mod:`logging` levels; ``TRACE`` is 5, below
    ``DEBUG``. ``str(level)`` is the upper-case name.

    .. versionadded:: 0.1.0
    """

    TRACE = 5
    DEBUG = logging.DEBUG
    INFO = logging.INFO
    WARN = logging.WARNING
    ERROR = logging.ERROR

    def __str__(self) -> str:
        return self.name


_EMPTY: Final[Mapping[str, object]] = {}


def redact_fields(fields: Mapping[str, object]) -> dict[str, object]:
    """A copy of ``fields`` with the values of secret-looking names replaced by ``***``, and
    secrets quoted inside text values (``token=...``, ``Bearer ...``) masked.

    Sinks redact as a last line of defence; the runtime never puts secrets into fields in
    the first place. The names are those of :mod:`cloudkit_trio._masking`, the one place
    that decides what is a secret.

    .. versionadded:: 0.1.0
    """
    return mask_fields(fields)


@attrs.frozen
class LogEntry:
    """One log event: a level, a constant message and structured fields.

    Keep ``message`` constant (``"operation retried"``) and put the variable parts in
    ``fields``; sinks decide how to render them.

    .. versionadded:: 0.1.0
    """

    level: LogLevel
    message: str
    fields: Mapping[str, object] = attrs.field(factory=dict, hash=False)
    timestamp: dt.datetime = attrs.field(factory=lambda: dt.datetime.now(dt.UTC))


@runtime_checkable
class Logger(Protocol):
    """Where the runtime reports what it does: retries, breaker transitions, restarts.

    Implement :meth:`is_enabled` and :meth:`log`. Subclass this protocol explicitly to
    inherit the ``trace``/``debug``/``info``/``warn``/``error`` helpers, which build no
    :class:`LogEntry` at all when their level is off.

    .. versionadded:: 0.1.0
    """

    def is_enabled(self, level: LogLevel) -> bool:
        """Whether entries at ``level`` would be written; used to skip building them."""
        ...

    def log(self, entry: LogEntry) -> None:
        """Write one entry. Must not block and must not raise."""
        ...

    def trace(self, message: str, /, **fields: object) -> None:
        """Log at TRACE."""
        if self.is_enabled(LogLevel.TRACE):
            self.log(LogEntry(LogLevel.TRACE, message, fields))

    def debug(self, message: str, /, **fields: object) -> None:
        """Log at DEBUG."""
        if self.is_enabled(LogLevel.DEBUG):
            self.log(LogEntry(LogLevel.DEBUG, message, fields))

    def info(self, message: str, /, **fields: object) -> None:
        """Log at INFO."""
        if self.is_enabled(LogLevel.INFO):
            self.log(LogEntry(LogLevel.INFO, message, fields))

    def warn(self, message: str, /, **fields: object) -> None:
        """Log at WARN."""
        if self.is_enabled(LogLevel.WARN):
            self.log(LogEntry(LogLevel.WARN, message, fields))

    def error(self, message: str, /, **fields: object) -> None:
        """Log at ERROR."""
        if self.is_enabled(LogLevel.ERROR):
            self.log(LogEntry(LogLevel.ERROR, message, fields))


def _format_fields(fields: Mapping[str, object]) -> str:
    # Escaped: a CR or LF in a value from a server would otherwise forge a log line.
    return " ".join(
        f"{escape_controls(key)}={escape_controls(str(value))}" for key, value in fields.items()
    )


class StdlibLogger(Logger):
    """Logs through the standard :mod:`logging` module (the default logger).

    The record's message is ``"<message> key=value ..."`` so plain handlers show the
    fields; the fields also travel as a dict in ``record.fields`` (``extra``) for
    structured handlers. TRACE maps to level 5, below DEBUG. Secrets are masked
    (:func:`redact_fields`) and control characters in the message escaped (``\\n``), so
    one entry is always one line.

    Args:
        name: The :mod:`logging` logger name.
        min_level: Entries below this level are dropped before any formatting.

    .. versionadded:: 0.1.0
    """

    def __init__(self, name: str = "cloudkit_trio", *, min_level: LogLevel = LogLevel.INFO) -> None:
        self._logger = logging.getLogger(name)
        self.min_level = LogLevel(min_level)

    def is_enabled(self, level: LogLevel) -> bool:
        return level >= self.min_level and self._logger.isEnabledFor(level)

    def log(self, entry: LogEntry) -> None:
        if not self.is_enabled(entry.level):
            return
        fields = redact_fields(entry.fields)
        message = escape_controls(entry.message)
        text = f"{message} {_format_fields(fields)}" if fields else message
        self._logger.log(entry.level, "%s", text, extra={"fields": fields})

    def __repr__(self) -> str:
        return f"StdlibLogger({self._logger.name!r}, min_level=LogLevel.{self.min_level.name})"


class NoopLogger(Logger):
    """Discards everything; :meth:`is_enabled` is always false.

    .. versionadded:: 0.1.0
    """

    def is_enabled(self, level: LogLevel) -> bool:
        return False

    def log(self, entry: LogEntry) -> None:
        return None

    def __repr__(self) -> str:
        return "NoopLogger()"


class StructuredLogger(Logger):
    """Writes one JSON object per line: ``timestamp``, ``level``, ``message``, then fields.

    Values that JSON cannot encode are written as their ``str()``.

    Args:
        stream: A text stream; ``sys.stderr`` when omitted (looked up at each write, so
            pytest's capture and redirections work).
        min_level: Entries below this level are dropped before any formatting.

    .. versionadded:: 0.1.0
    """

    def __init__(self, stream: TextIO | None = None, *, min_level: LogLevel = LogLevel.INFO):
        self._stream = stream
        self.min_level = LogLevel(min_level)

    def is_enabled(self, level: LogLevel) -> bool:
        return level >= self.min_level

    def log(self, entry: LogEntry) -> None:
        if entry.level < self.min_level:
            return
        record: dict[str, object] = {
            "timestamp": entry.timestamp.isoformat(),
            "level": str(entry.level),
            "message": entry.message,
        }
        for key, value in redact_fields(entry.fields).items():
            record.setdefault(key, value)
        stream = self._stream if self._stream is not None else sys.stderr
        stream.write(json.dumps(record, default=str, separators=(",", ":")) + "\n")

    def __repr__(self) -> str:
        return f"StructuredLogger(min_level=LogLevel.{self.min_level.name})"
