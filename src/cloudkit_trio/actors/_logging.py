"""What a supervisor logs to: a four-method protocol, and the default stdlib sink.

The protocol is the part of :class:`cloudkit_trio.spi.Logger` that a supervisor calls, so
any ``cloudkit_trio.spi.Logger`` (``StdlibLogger``, ``StructuredLogger``, the testing
``CapturingLogger``) can be passed as it is, while this package depends on nothing of the
cloud layers.
"""

from __future__ import annotations

import enum
import logging
from typing import Protocol, runtime_checkable

__all__ = ["Level", "StdlibSupervisorLogger", "SupervisorLogger", "log_at"]


class Level(enum.IntEnum):
    """The severities a supervisor logs at; the values are the stdlib :mod:`logging` levels."""

    DEBUG = logging.DEBUG
    INFO = logging.INFO
    WARN = logging.WARNING
    ERROR = logging.ERROR


@runtime_checkable
class SupervisorLogger(Protocol):
    """Where a :class:`Supervisor` reports restarts, failures and shutdown problems.

    Each method takes a constant message and the variable parts as keyword fields
    (``supervisor``, ``event``, ``child``, ``restarts``, ``error_type``, ``error``,
    ``delay``). Every :class:`cloudkit_trio.spi.Logger` fits. The methods run on the
    supervisor's control task and must not block. A logger that raises does not stop the
    supervisor: its failures are counted in :attr:`SupervisorSnapshot.logger_failures`.

    .. versionadded:: 0.1.0
    """

    def debug(self, message: str, /, **fields: object) -> None: ...

    def info(self, message: str, /, **fields: object) -> None: ...

    def warn(self, message: str, /, **fields: object) -> None: ...

    def error(self, message: str, /, **fields: object) -> None: ...


class StdlibSupervisorLogger:
    """The default :class:`SupervisorLogger`: the stdlib logger ``cloudkit_trio.actors``.

    Renders ``"<message> key=value ..."`` and passes the fields as ``record.fields``, as
    :class:`cloudkit_trio.spi.StdlibLogger` does; entries below ``min_level`` (INFO by
    default) are dropped before any formatting.
    """

    __slots__ = ("_logger", "min_level")

    def __init__(self, name: str = "cloudkit_trio.actors", *, min_level: int = Level.INFO) -> None:
        self._logger = logging.getLogger(name)
        self.min_level = min_level

    def __repr__(self) -> str:
        return f"StdlibSupervisorLogger({self._logger.name!r}, min_level={self.min_level})"

    def _log(self, level: int, message: str, fields: dict[str, object]) -> None:
        if level < self.min_level or not self._logger.isEnabledFor(level):
            return
        text = message
        if fields:
            text += " " + " ".join(f"{key}={value}" for key, value in fields.items())
        self._logger.log(level, "%s", text, extra={"fields": fields})

    def debug(self, message: str, /, **fields: object) -> None:
        self._log(Level.DEBUG, message, fields)

    def info(self, message: str, /, **fields: object) -> None:
        self._log(Level.INFO, message, fields)

    def warn(self, message: str, /, **fields: object) -> None:
        self._log(Level.WARN, message, fields)

    def error(self, message: str, /, **fields: object) -> None:
        self._log(Level.ERROR, message, fields)


def log_at(logger: SupervisorLogger, level: Level, message: str, fields: dict[str, object]) -> None:
    """Call the method of ``logger`` for ``level``."""
    match level:
        case Level.DEBUG:
            logger.debug(message, **fields)
        case Level.INFO:
            logger.info(message, **fields)
        case Level.WARN:
            logger.warn(message, **fields)
        case Level.ERROR:
            logger.error(message, **fields)
