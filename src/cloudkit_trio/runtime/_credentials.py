"""The credential refresher: cached credentials, refreshed ahead of expiry, one fetch at a time."""

from __future__ import annotations

import datetime as dt
import math
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._credentials import Credentials
from .._errors import CloudError, TokenRefreshFailed
from ..spi import AuthProvider, ExponentialBackoff

if TYPE_CHECKING:
    from ._events import RuntimeEvents

__all__ = ["CredentialRefresher", "CredentialsSnapshot"]

# Backoff between failed background refreshes: 1 s, 2 s, 4 s, ... capped at 60 s.
_RETRY_BACKOFF: Final = ExponentialBackoff(
    initial_delay=1.0, multiplier=2.0, max_delay=60.0, max_attempts=2**31 - 1
)


@attrs.frozen
class CredentialsSnapshot:
    """What the refresher holds, without any secret.

    Times are ``trio.current_time()`` values; ``age`` and ``expires_in`` are seconds.

    .. versionadded:: 0.1.0
    """

    provider: str
    source: str
    access_key_id: str | None
    expires_at: dt.datetime | None
    expires_in: float | None
    age: float | None
    refreshes: int
    failures: int
    last_error: str | None
    refreshing: bool


class _Round:
    """One refresh that every waiter shares."""

    __slots__ = ("credentials", "done", "error", "forced")

    def __init__(self, *, forced: bool) -> None:
        self.done = trio.Event()
        self.credentials: Credentials | None = None
        self.error: str | None = None
        self.forced = forced

    def finish(self, credentials: Credentials | None, error: str | None) -> None:
        self.credentials, self.error = credentials, error
        self.done.set()

    async def result(self) -> Credentials:
        await self.done.wait()
        if self.credentials is None:
            raise TokenRefreshFailed(self.error or "credential refresh failed")
        return self.credentials


class CredentialRefresher:
    """Owns the credentials of one context and the actor that refreshes them.

    - The first fetch happens lazily, when the first operation needs credentials.
    - Reading credentials that are fresh costs no message and no task switch.
    - Inside the *advisory* window before expiry the actor refreshes in the background
      while callers keep using the current credentials; only inside the *mandatory*
      window do callers wait, and then all of them share one refresh.
    - A failing refresh is retried with backoff (1 s doubling to 60 s); still-valid
      credentials keep being served meanwhile.
    - ``expires_at`` is converted once, when fetched, into a deadline on Trio's clock, so
      ``MockClock`` drives every refresh.

    Both windows are capped to a fraction of the credentials' lifetime (half for advisory,
    a quarter for mandatory), so short-lived credentials are not refreshed continuously.
    """

    def __init__(
        self,
        provider: AuthProvider,
        events: RuntimeEvents,
        *,
        advisory_window: float = 15 * 60.0,
        mandatory_window: float = 10 * 60.0,
    ) -> None:
        self._provider = provider
        self._events = events
        self._advisory_window = advisory_window
        self._mandatory_window = mandatory_window
        self._credentials: Credentials | None = None
        self._expires_deadline: float | None = None
        self._advisory_at = math.inf
        self._mandatory_at = math.inf
        self._fetched_at: float | None = None
        self._round: _Round | None = None
        self._wake = trio.Event()
        self._retry_at = math.inf
        self._consecutive_failures = 0
        self.refreshes = 0
        self.failures = 0
        self._last_error: str | None = None

    # -- the hot path ----------------------------------------------------------------------

    async def current(self) -> Credentials:
        """Credentials good for an attempt starting now."""
        credentials = self._credentials
        if credentials is not None:
            now = trio.current_time()
            if now < self._mandatory_at:
                if now >= self._advisory_at and self._round is None:
                    self._start_round(forced=False)
                return credentials
        return await self._join_round(forced=False)

    async def refresh_after_rejection(self, rejected: Credentials | None) -> Credentials:
        """The provider said ``rejected`` expired: refresh once, shared by all who saw it."""
        if self._credentials is not None and self._credentials is not rejected:
            return self._credentials  # somebody already replaced them
        self._credentials = None
        return await self._join_round(forced=True)

    async def _join_round(self, *, forced: bool) -> Credentials:
        round_ = self._round
        if round_ is None:
            round_ = self._start_round(forced=forced)
        return await round_.result()

    def _start_round(self, *, forced: bool) -> _Round:
        round_ = self._round = _Round(forced=forced)
        self._wake.set()
        return round_

    # -- the actor -------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[CredentialRefresher] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The actor body: refresh when asked, or when the advisory window opens."""
        task_status.started(self)
        try:
            while True:
                await self._wait_for_work()
                await self._refresh()
        finally:
            round_ = self._round
            if round_ is not None and not round_.done.is_set():
                # Waiters must never hang on a refresh nobody will finish.
                self._round = None
                round_.finish(None, "the credential refresher stopped during the refresh")

    async def _wait_for_work(self) -> None:
        if self._round is not None:
            return
        wake_at = min(self._advisory_at, self._retry_at) if self._credentials else math.inf
        with trio.move_on_at(wake_at):
            await self._wake.wait()
        self._wake = trio.Event()
        if self._round is None:
            self._round = _Round(forced=False)

    async def _refresh(self) -> None:
        round_ = self._round
        assert round_ is not None
        try:
            if self._fetched_at is None and not round_.forced:
                credentials = await self._provider.get_credentials()
            else:
                credentials = await self._provider.refresh_credentials()
            if not isinstance(credentials, Credentials):
                raise TypeError(
                    f"{type(self._provider).__name__} returned {type(credentials).__name__}, "
                    "not Credentials"
                )
        except Exception as exc:  # provider code is the user's; contain its failures
            self._failed(round_, exc)
        else:
            self._install(credentials)
            self._round = None
            round_.finish(credentials, None)

    def _install(self, credentials: Credentials) -> None:
        now = trio.current_time()
        self._credentials = credentials
        self._fetched_at = now
        self._retry_at = math.inf
        self._consecutive_failures = 0
        self._last_error = None
        self.refreshes += 1
        if credentials.expires_at is None:
            self._expires_deadline = None
            self._advisory_at = self._mandatory_at = math.inf
        else:
            lifetime = (credentials.expires_at - dt.datetime.now(dt.UTC)).total_seconds()
            self._expires_deadline = now + lifetime
            self._advisory_at = self._expires_deadline - min(self._advisory_window, lifetime / 2)
            self._mandatory_at = self._expires_deadline - min(self._mandatory_window, lifetime / 4)
        self._events.credential_refresh(ok=True)

    def _failed(self, round_: _Round, exc: Exception) -> None:
        now = trio.current_time()
        self.failures += 1
        self._consecutive_failures += 1
        source = type(self._provider).__name__
        reason = str(exc) if isinstance(exc, CloudError) else f"{type(exc).__name__}: {exc}"
        self._last_error = f"{source}: {reason}"
        delay = _RETRY_BACKOFF.base_delay(self._consecutive_failures)
        self._retry_at = now + delay
        self._events.credential_refresh(ok=False, error=self._last_error)
        self._round = None
        still_valid = self._credentials is not None and (
            self._expires_deadline is None or now < self._expires_deadline
        )
        if still_valid and not round_.forced:
            round_.finish(self._credentials, None)
        else:
            round_.finish(None, f"could not obtain credentials from {self._last_error}")

    def age(self) -> float | None:
        """Seconds since the credentials in use were fetched; None before the first fetch."""
        return None if self._fetched_at is None else trio.current_time() - self._fetched_at

    def snapshot(self, provider: str) -> CredentialsSnapshot:
        now = trio.current_time()
        credentials = self._credentials
        return CredentialsSnapshot(
            provider=provider,
            source=type(self._provider).__name__,
            access_key_id=credentials.access_key if credentials else None,
            expires_at=credentials.expires_at if credentials else None,
            expires_in=None if self._expires_deadline is None else self._expires_deadline - now,
            age=None if self._fetched_at is None else now - self._fetched_at,
            refreshes=self.refreshes,
            failures=self.failures,
            last_error=self._last_error,
            refreshing=self._round is not None,
        )
