"""Endpoint state shared by processes: the extension point behind scale-out.

One small interface with a few atomic operations, each about one endpoint (or one quota
key). A backend keeps them in a store every process reaches (``cloudkit_trio.redis``
keeps them in Redis); the runtime calls them from a background actor only, never from an
operation's own path, and treats every failure of the store, an error or an answer later
than the backend's bound, as a normal fault: it decides on local state instead.

Nothing here holds a secret: keys are endpoints (``scheme://host:port``) and quota keys,
values are counts, times and process identities.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager

import attrs

from .._errors import CloudError

__all__ = ["ForcedState", "Lease", "SharedState", "SharedStateUnavailable", "SharedView"]


class SharedStateUnavailable(CloudError):
    """The shared store did not answer within its bound, or failed; the runtime decides
    on local state meanwhile. Raised by :class:`SharedState` backends, never to callers
    of the runtime.

    .. versionadded:: 0.2.0
    """

    request_sent = False


@attrs.frozen
class Lease:
    """Tokens granted from a shared rate limit.

    .. versionadded:: 0.2.0
    """

    #: Tokens granted now, from 0 to the count asked for.
    granted: int
    #: Seconds until the next token, when fewer were granted than asked for (else 0.0).
    retry_after: float = 0.0


class ForcedState(enum.Enum):
    """A manual override of an endpoint's circuit, seen by every process."""

    #: Every process refuses the endpoint's operations until the override is lifted.
    OPEN = "open"
    #: Every process lets every operation through, whatever its breaker says.
    CLOSED = "closed"

    def __str__(self) -> str:
        return self.value


@attrs.frozen
class SharedView:
    """What the processes say about one endpoint now.

    .. versionadded:: 0.2.0
    """

    #: Processes that report the endpoint open.
    open_reports: int
    #: The manual override, if any.
    forced: ForcedState | None = None


class SharedState(ABC):
    """Where processes share what they learn about endpoints.

    Every method is one atomic step in the store, bounded in time by the backend: a
    method that cannot answer within its bound raises :class:`SharedStateUnavailable`.
    ``now``-free by design: the store's own clock (or the backend's) orders events, so
    hosts with skewed clocks agree.

    .. versionadded:: 0.2.0
    """

    @abstractmethod
    async def lease_tokens(
        self,
        key: str,
        *,
        rate: float,
        burst: int,
        count: int,
        process: str | None = None,
        period: float | None = None,
    ) -> Lease:
        """Take up to ``count`` tokens from the shared bucket ``key``: ``rate`` tokens a
        second, at most ``burst`` stored (the first use creates it full).

        The runtime names the ``process`` and the ``period`` it leases every (seconds),
        with ``count`` what it was asked for in the last one. A backend should then share
        the rate fairly: each process leasing ``key`` gets at most its max-min fair share
        of ``rate`` for the time since its last lease, by the counts they asked for, so
        which process leases first does not decide who sends. Without them, first come,
        first served."""

    @abstractmethod
    async def report_open(self, endpoint: str, process: str, seconds: float) -> None:
        """Say that ``process`` saw ``endpoint`` fail enough to open its circuit, for the
        next ``seconds``."""

    @abstractmethod
    async def report_closed(self, endpoint: str, process: str) -> None:
        """Withdraw ``process``'s report: its probe succeeded."""

    @abstractmethod
    async def open_reports(self, endpoint: str) -> int:
        """How many processes report ``endpoint`` open now."""

    @abstractmethod
    async def recovered(self, endpoint: str) -> None:
        """Withdraw every process's report: a probe found the endpoint healthy again."""

    @abstractmethod
    async def views(self, endpoints: Sequence[str]) -> list[SharedView]:
        """:class:`SharedView` of each endpoint, in order, in one step of the store."""

    @abstractmethod
    async def acquire_probe(self, endpoint: str, process: str, seconds: float) -> bool:
        """Take the endpoint's probe lease for ``seconds`` if nobody holds it (or
        ``process`` does) and some process still reports the endpoint open: only its
        holder sends the half-open probe, and none is sent once one has succeeded."""

    @abstractmethod
    async def release_probe(self, endpoint: str, process: str) -> None:
        """Give the probe lease back, if ``process`` holds it."""

    @abstractmethod
    async def force(self, endpoint: str, state: ForcedState | None) -> None:
        """Set (or, with None, lift) a manual override of the endpoint's circuit."""

    @abstractmethod
    async def forced(self, endpoint: str) -> ForcedState | None:
        """The endpoint's manual override, if any."""

    @abstractmethod
    async def overrides(self) -> dict[str, ForcedState]:
        """Every endpoint under a manual override, and its override."""

    def changes(self) -> AbstractAsyncContextManager[AsyncIterator[str]]:
        """Subscribe to changes: an iterator of the endpoints whose reports or overrides
        changed, pushed as they happen. Optional: a backend without it is polled only
        (the default raises :class:`NotImplementedError`)."""
        raise NotImplementedError

    async def aclose(self) -> None:  # noqa: B027 - optional, nothing to release by default
        """Release the backend's connections. Idempotent."""
