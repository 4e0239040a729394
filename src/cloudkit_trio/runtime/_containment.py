"""The one boundary where the runtime calls user code (the SPIs) and contains what it does.

Whatever an AuthProvider, RetryPolicy, MetricsCollector, Logger or signer does —
raise, return garbage — costs at most the operation that called it a :class:`CloudError`
(DESIGN.md §6, invariant 8). Every failure is counted per SPI (``snapshot()`` and the
``spi_failures`` metric show the counts), and the first failure of each SPI is reported
once on standard error: a broken Logger cannot report its own failures, and a line per
failure would flood the terminal of a program that is already in trouble. The report
names the SPI, the method and the exception's type, never its message, which is user text
and may hold a secret. (Supervisor hooks and loggers are contained by the supervision
layer itself, which imports nothing of this one.)

``trio.Cancelled`` and ``KeyboardInterrupt`` are never contained: only ``Exception``.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Mapping
from typing import Final, TextIO

from ..spi import LogEntry, Logger, LogLevel

__all__ = ["ContainedLogger", "Containment", "Spi"]


class Spi:
    """The names failures are counted under (the ``spi`` tag of the metric)."""

    AUTH_PROVIDER: Final = "auth_provider"
    RETRY_POLICY: Final = "retry_policy"
    METRICS_COLLECTOR: Final = "metrics_collector"
    LOGGER: Final = "logger"
    SIGNER: Final = "signer"


def _stderr() -> TextIO:
    # Looked up at report time, so a test (or an application) that swaps sys.stderr is
    # the one written to.
    return sys.stderr


class Containment:
    """Counts failures of user code per SPI and reports the first of each once."""

    __slots__ = ("_counts", "_stream")

    def __init__(self, stream: Callable[[], TextIO] = _stderr) -> None:
        self._stream = stream
        self._counts: dict[str, int] = {}

    def failed(self, spi: str, method: str, exc: BaseException) -> None:
        """Record that ``spi.method`` raised ``exc`` (already caught by the caller)."""
        count = self._counts.get(spi, 0) + 1
        self._counts[spi] = count
        if count == 1:
            # If stderr itself is gone, nothing is left to tell.
            with contextlib.suppress(Exception):
                self._stream().write(
                    f"cloudkit_trio: {spi}.{method} raised {type(exc).__qualname__}; the "
                    "runtime carried on. Further failures of this extension point are "
                    "counted (snapshot().spi_failures, metric spi_failures), not printed.\n"
                )

    def failures(self) -> Mapping[str, int]:
        """Failures so far, per SPI."""
        return dict(self._counts)


class ContainedLogger(Logger):
    """The user's :class:`~cloudkit_trio.Logger`, with every call contained.

    The runtime logs only through this wrapper, so a Logger that raises (a closed stream, a
    bug) never replaces an operation's real error, loses a reply or stops an actor. Only
    the two methods the protocol requires are called on the user's logger; the level
    helpers (``info``, ``warn``, ...) are the protocol's own, built on them.
    """

    __slots__ = ("_containment", "_logger")

    def __init__(self, logger: Logger, containment: Containment) -> None:
        self._logger = logger
        self._containment = containment

    def is_enabled(self, level: LogLevel) -> bool:
        try:
            return bool(self._logger.is_enabled(level))
        except Exception as exc:
            self._containment.failed(Spi.LOGGER, "is_enabled", exc)
            return False

    def log(self, entry: LogEntry) -> None:
        try:
            self._logger.log(entry)
        except Exception as exc:
            self._containment.failed(Spi.LOGGER, "log", exc)

    def __repr__(self) -> str:
        return repr(self._logger)
