"""The credential refresher: cached credentials, refreshed ahead of expiry, one fetch at a time."""

from __future__ import annotations

import copy
import datetime as dt
import math
from collections.abc import Callable
from functools import partial
from random import Random
from typing import TYPE_CHECKING, Final

import attrs
import trio

from .._credentials import Credentials
from .._errors import AuthError, CloudError, ContextClosed, TokenRefreshFailed
from .._masking import mask_text
from ..actors._backoff import exponential_delay
from ._containment import Containment, Spi

if TYPE_CHECKING:
    from ..spi import AuthProvider
    from ._events import RuntimeEvents

__all__ = ["CredentialRefresher", "CredentialsSnapshot"]

# Between failed refreshes: 1 s, 2 s, 4 s, ... capped at 60 s, before jitter.
_BACKOFF_INITIAL: Final = 1.0
_BACKOFF_MULTIPLIER: Final = 2.0
_BACKOFF_MAX: Final = 60.0


@attrs.frozen
class CredentialsSnapshot:
    """What the refresher holds, without any secret.

    ``age``, ``expires_in`` and ``next_attempt_in`` are seconds on Trio's clock.
    ``next_attempt_in`` is set while a failed refresh backs off: until then no refresh is
    tried, still-valid credentials are served and callers without any fail at once.
    ``consecutive_failures`` counts failures since the last success; ``closed`` is true once
    the context shut the refresher down.

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
    consecutive_failures: int = 0
    next_attempt_in: float | None = None
    closed: bool = False


def _same_kind(original: AuthError, message: str) -> AuthError:
    """A new error of ``original``'s class, with ``message`` and ``original``'s context."""
    try:
        # CloudError copies through its pickling hook, which keeps the context and the
        # fields a subclass adds; a user's subclass that cannot be copied gets the generic one.
        error = copy.copy(original)
    except Exception:
        return TokenRefreshFailed(
            message,
            provider=original.provider,
            service=original.service,
            operation=original.operation,
            endpoint=original.endpoint,
            attempt=original.attempt,
        )
    error.message = message
    error.args = (message,)
    vars(error).pop("__notes__", None)  # they stay on the original, which is the cause
    return error


@attrs.frozen
class _Failure:
    """Why a refresh failed, and how to tell a caller: a fresh error for each one."""

    cause: Exception
    #: "<source>: <what went wrong>"; never user text that is not a CloudError's message.
    reason: str

    def error(self, message: str) -> CloudError:
        # The provider's own AuthError keeps its class (``except MissingCredentials``
        # works); anything else is a TokenRefreshFailed. Each caller gets its own object,
        # since the runner adds the operation's context to the error it receives.
        cause = self.cause
        error: CloudError
        if isinstance(cause, AuthError):
            error = _same_kind(cause, message)
        else:
            error = TokenRefreshFailed(message)
        error.__cause__ = cause
        return error


class _Round:
    """One refresh that every waiter shares."""

    __slots__ = ("_credentials", "_error", "done", "forced")

    def __init__(self, *, forced: bool) -> None:
        self.done = trio.Event()
        self.forced = forced
        self._credentials: Credentials | None = None
        self._error: Callable[[], CloudError] | None = None

    def succeed(self, credentials: Credentials) -> None:
        if not self.done.is_set():
            self._credentials = credentials
            self.done.set()

    def fail(self, error: Callable[[], CloudError]) -> None:
        if not self.done.is_set():
            self._error = error
            self.done.set()

    async def result(self) -> Credentials:
        # Not shielded: the runtime bounds this wait by the operation's deadline, and a
        # waiter that leaves does not stop the round for the others.
        await self.done.wait()
        if self._credentials is not None:
            return self._credentials
        assert self._error is not None
        raise self._error()


def _refresher_closed() -> CloudError:
    return ContextClosed(
        "the credential refresher has stopped because the context is closing; "
        "no credentials will be fetched"
    )


def _refresher_crashed(crash: Exception) -> CloudError:
    error = TokenRefreshFailed(
        "the credential refresher crashed during the refresh and is being restarted; try again"
    )
    error.__cause__ = crash
    return error


class CredentialRefresher:
    """Owns the credentials of one context and the actor that refreshes them.

    - The first fetch happens lazily, when the first operation needs credentials.
    - Reading credentials that are fresh costs no message and no task switch.
    - Inside the *advisory* window before expiry the actor refreshes in the background
      while callers keep using the current credentials; only inside the *mandatory*
      window do callers wait, and then all of them share one refresh (a *round*). A
      caller that stops waiting (its deadline, a cancellation) leaves the round running
      for the others. A round asked for while the actor is not running (its supervisor is
      restarting it) is run when it runs again.
    - After a failed refresh no other is tried for a backoff delay: the ``n``-th
      consecutive failure waits ``uniform(d / 2, d)`` seconds with ``d = min(60, 2 **
      (n - 1))`` (equal jitter, from ``random``; seed it for repeatable delays). That
      holds for the actor and for callers alike: meanwhile credentials that have not
      expired are served, even inside the mandatory window, and a caller with none fails
      at once with the last failure, without asking the provider. A success ends it.
    - Failures reach callers as the provider's own :class:`~cloudkit_trio.AuthError`
      class (so ``except MissingCredentials`` works), anything else as
      :class:`~cloudkit_trio.TokenRefreshFailed`; the message names the source, and while
      backing off says when the next attempt is allowed. A provider that raises
      something other than a :class:`~cloudkit_trio.CloudError`, returns something other
      than :class:`~cloudkit_trio.Credentials`, or does not answer within
      ``fetch_timeout`` is counted as a failure of the ``auth_provider`` SPI.
    - ``expires_at`` is converted once, when fetched, into a deadline on Trio's clock, so
      ``MockClock`` drives every refresh.
    - :meth:`close` (the runtime's shutdown) answers the waiters of the round in progress
      with :class:`~cloudkit_trio.ContextClosed`, and so is every later caller that would
      need a refresh. The actor being cancelled does not close the refresher: that also
      happens when its supervisor restarts it, and the round then waits for the next run.

    Both windows are capped to a fraction of the credentials' lifetime (half for advisory,
    a quarter for mandatory), so short-lived credentials are not refreshed continuously.

    Args:
        provider: Where credentials come from (user code, contained).
        events: Where refreshes and failures are reported (metric and log line).
        containment: Counts the provider's contract breaches (``Spi.AUTH_PROVIDER``).
        advisory_window: Seconds before expiry from which the actor refreshes.
        mandatory_window: Seconds before expiry from which callers wait for a refresh.
        fetch_timeout: Seconds a provider call may take before it counts as failed.
        random: Source of the backoff's jitter; a seeded one makes delays repeatable.
    """

    def __init__(
        self,
        provider: AuthProvider,
        events: RuntimeEvents,
        containment: Containment,
        *,
        advisory_window: float = 15 * 60.0,
        mandatory_window: float = 10 * 60.0,
        fetch_timeout: float = 60.0,
        random: Random | None = None,
    ) -> None:
        self._provider = provider
        self._source = type(provider).__name__
        self._events = events
        self._containment = containment
        self._advisory_window = advisory_window
        self._mandatory_window = mandatory_window
        self._fetch_timeout = fetch_timeout
        self._random = random if random is not None else Random()
        self._credentials: Credentials | None = None
        self._expires_deadline: float | None = None
        self._advisory_at = math.inf
        self._mandatory_at = math.inf
        self._fetched_at: float | None = None
        self._round: _Round | None = None
        self._wake = trio.Event()
        self._fetch_scope: trio.CancelScope | None = None
        self._closed = False
        # Backoff: no refresh before _retry_at; _last_failure is what callers get until then.
        self._retry_at = -math.inf
        self._last_failure: _Failure | None = None
        self._consecutive_failures = 0
        self.refreshes = 0
        self.failures = 0
        self._last_error: str | None = None
        # The secrets of the credentials last installed, kept past a discard: a source that
        # refuses to renew them may quote them, and its message must not.
        self._last_secrets: tuple[str | None, ...] = ()

    # -- the hot path ----------------------------------------------------------------------

    def current_nowait(self) -> Credentials | None:
        """Credentials good for an attempt starting now, if that needs no wait; else None.

        None means a refresh has to be waited for, or a caller would fail: then await
        :meth:`current`, which does either.
        """
        credentials = self._credentials
        if credentials is None:
            return None
        now = trio.current_time()
        if now < self._mandatory_at:
            if now >= self._advisory_at and self._round is None and self._may_start(now):
                # The actor's own timer does this too; asking costs nothing and covers
                # an actor that is being restarted.
                self._start_round(forced=False)
            return credentials
        if self._round is None and not self._may_start(now) and self._unexpired(now):
            # Mandatory window, but no refresh may start (backoff, closed): serve what has
            # not expired yet.
            return credentials
        return None

    async def current(self) -> Credentials:
        """Credentials good for an attempt starting now; waits for a refresh if it must.

        Raises:
            AuthError: The refresh failed, or failed recently and is backing off, and there
                are no valid credentials: the provider's own AuthError class, else
                TokenRefreshFailed.
            ContextClosed: A refresh is needed but the refresher was closed.
        """
        credentials = self.current_nowait()
        if credentials is not None:
            return credentials
        return await self._join_round(forced=False)

    async def refresh_after_rejection(self, rejected: Credentials | None) -> Credentials:
        """The provider said ``rejected`` expired: refresh once, shared by all who saw it."""
        if self._credentials is not None and self._credentials is not rejected:
            return self._credentials  # somebody already replaced them
        self._discard()
        return await self._join_round(forced=True)

    async def _join_round(self, *, forced: bool) -> Credentials:
        round_ = self._round
        if round_ is None:
            now = trio.current_time()
            if not self._may_start(now):
                return self._without_round(now)
            round_ = self._start_round(forced=forced)
        elif forced:
            round_.forced = True  # no effect once the fetch has started: that one serves
        return await round_.result()

    def _may_start(self, now: float) -> bool:
        return not self._closed and now >= self._retry_at

    def _unexpired(self, now: float) -> bool:
        """Whether the credentials held (if any) are still valid at ``now``."""
        return self._expires_deadline is None or now < self._expires_deadline

    def _without_round(self, now: float) -> Credentials:
        """What a caller gets when no refresh may start: valid credentials, or the reason."""
        credentials = self._credentials
        if credentials is not None and self._unexpired(now):
            return credentials
        if self._closed:
            raise _refresher_closed()
        assert self._last_failure is not None  # a backoff runs only after a failure
        raise self._last_failure.error(
            f"could not obtain credentials from {self._last_failure.reason}; after "
            f"{self._consecutive_failures} consecutive failure(s) the next attempt is allowed "
            f"in {self._retry_at - now:.1f} s"
        )

    def _start_round(self, *, forced: bool) -> _Round:
        round_ = self._round = _Round(forced=forced)
        self._wake.set()
        return round_

    def _discard(self) -> None:
        self._credentials = None
        self._expires_deadline = None
        self._advisory_at = self._mandatory_at = math.inf

    # -- shutdown --------------------------------------------------------------------------

    def close(self) -> None:
        """Stop for good: the round in progress and every later one answer ContextClosed.

        Called by the runtime's shutdown; idempotent. Credentials that have not expired are
        still served to operations that are finishing; no provider call is made any more.
        """
        if self._closed:
            return
        self._closed = True
        round_, self._round = self._round, None
        if round_ is not None:
            round_.fail(_refresher_closed)
        if self._fetch_scope is not None:
            self._fetch_scope.cancel()
        self._wake.set()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- the actor -------------------------------------------------------------------------

    async def run(
        self, *, task_status: trio.TaskStatus[CredentialRefresher] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """The actor body: refresh when asked, or when the advisory window opens."""
        task_status.started(self)
        try:
            while True:
                round_ = await self._next_round()
                await self._refresh(round_)
        except Exception as crash:
            # A bug of ours: answer the round's waiters now rather than let them wait for
            # a restart that may never come. Cancellation leaves the round for the next run.
            pending = self._round
            if pending is not None:
                self._round = None
                pending.fail(partial(_refresher_crashed, crash))
            raise

    async def _next_round(self) -> _Round:
        while True:
            if self._closed:
                await trio.sleep_forever()  # stopped by the supervisor, never by returning
            now = trio.current_time()
            if self._round is not None:
                # Rounds are only started outside a backoff; this keeps that true anyway.
                if now >= self._retry_at:
                    return self._round
                due = self._retry_at
            elif self._credentials is not None:
                due = max(self._advisory_at, self._retry_at)
                if now >= due:
                    return self._start_round(forced=False)
            else:
                due = math.inf  # the first fetch is lazy: a caller asks for it
            self._wake = trio.Event()
            with trio.move_on_at(due):
                await self._wake.wait()

    async def _refresh(self, round_: _Round) -> None:
        first = self._fetched_at is None and not round_.forced
        method = "get_credentials" if first else "refresh_credentials"
        outcome: Credentials | _Failure | None = None
        scope = self._fetch_scope = trio.CancelScope(
            deadline=trio.current_time() + self._fetch_timeout
        )
        try:
            with scope:
                outcome = await self._fetch(method)
        finally:
            self._fetch_scope = None
        if self._closed:
            return  # close() has answered the waiters; nothing is installed any more
        if outcome is None:
            timeout = TimeoutError(
                f"{self._source}.{method} did not answer within {self._fetch_timeout:g} s"
            )
            self._containment.failed(Spi.AUTH_PROVIDER, method, timeout)
            outcome = _Failure(timeout, str(timeout))
        if isinstance(outcome, _Failure):
            self._failed(round_, outcome)
        else:
            self._install(outcome)
            self._round = None
            round_.succeed(outcome)

    async def _fetch(self, method: str) -> Credentials | _Failure:
        """Ask the provider once; its failures are returned, never raised."""
        source = self._source
        try:
            if method == "get_credentials":
                credentials: object = await self._provider.get_credentials()
            else:
                credentials = await self._provider.refresh_credentials()
        except CloudError as error:  # the provider's way to say no
            # An AuthError's context travels on the error callers get (a copy of it), so
            # the reason takes only its message; other errors become a TokenRefreshFailed
            # and keep their context in the text.
            text = error.message if isinstance(error, AuthError) else str(error)
            return _Failure(error, f"{source}: {text}")
        except Exception as exc:
            # User code that broke its contract. Its message is user text that may hold a
            # secret: only the type is reported; the exception itself is the cause.
            self._containment.failed(Spi.AUTH_PROVIDER, method, exc)
            return _Failure(exc, f"{source}.{method} raised {type(exc).__name__}")
        if not isinstance(credentials, Credentials):
            garbage = TypeError(
                f"{source}.{method} returned {type(credentials).__name__}, not Credentials"
            )
            self._containment.failed(Spi.AUTH_PROVIDER, method, garbage)
            return _Failure(garbage, str(garbage))
        return credentials

    def _install(self, credentials: Credentials) -> None:
        now = trio.current_time()
        self._credentials = credentials
        self._last_secrets = (credentials.secret_key, credentials.session_token)
        self._fetched_at = now
        self._retry_at = -math.inf
        self._last_failure = None
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

    def _failed(self, round_: _Round, failure: _Failure) -> None:
        now = trio.current_time()
        # The reason quotes a source's error (a Vault error can quote its token); it goes
        # to the snapshot, the WARN line and every caller's error, so masked once, here.
        failure = attrs.evolve(failure, reason=mask_text(failure.reason, self._last_secrets))
        self.failures += 1
        self._consecutive_failures += 1
        self._last_failure = failure
        self._last_error = failure.reason
        base = exponential_delay(
            self._consecutive_failures - 1,
            initial=_BACKOFF_INITIAL,
            multiplier=_BACKOFF_MULTIPLIER,
            maximum=_BACKOFF_MAX,
        )
        self._retry_at = now + self._random.uniform(base / 2, base)
        self._events.credential_refresh(ok=False, error=failure.reason)
        self._round = None
        credentials = self._credentials
        if credentials is not None and self._unexpired(now):
            round_.succeed(credentials)  # still valid: the waiters carry on with them
        else:
            message = f"could not obtain credentials from {failure.reason}"
            round_.fail(lambda: failure.error(message))

    # -- introspection ---------------------------------------------------------------------

    def age(self) -> float | None:
        """Seconds since the credentials in use were fetched; None when there are none."""
        if self._credentials is None or self._fetched_at is None:
            return None
        return trio.current_time() - self._fetched_at

    def snapshot(self, provider: str) -> CredentialsSnapshot:
        now = trio.current_time()
        credentials = self._credentials
        return CredentialsSnapshot(
            provider=provider,
            source=self._source,
            access_key_id=credentials.access_key if credentials else None,
            expires_at=credentials.expires_at if credentials else None,
            expires_in=None if self._expires_deadline is None else self._expires_deadline - now,
            age=self.age(),
            refreshes=self.refreshes,
            failures=self.failures,
            last_error=self._last_error,
            refreshing=self._round is not None,
            consecutive_failures=self._consecutive_failures,
            next_attempt_in=self._retry_at - now if now < self._retry_at else None,
            closed=self._closed,
        )
