"""The AuthProvider SPI: where credentials come from."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Final, Protocol, runtime_checkable

from .._credentials import Credentials
from .._errors import AuthError, CloudError, MissingCredentials

__all__ = ["AuthProvider", "ChainAuthProvider", "EnvAuthProvider", "StaticAuthProvider"]


@runtime_checkable
class AuthProvider(Protocol):
    """A source of :class:`~cloudkit_trio.Credentials`.

    The runtime's credential refresher calls :meth:`get_credentials` once, lazily, then
    :meth:`refresh_credentials` ahead of expiry; it caches the result and never calls two
    of these at the same time for one context. Subclass this protocol explicitly to inherit
    the default ``refresh_credentials`` (fetch again) and ``is_valid`` (obtainable and not
    expired).

    Failures raise an :class:`~cloudkit_trio.AuthError` (usually
    :class:`~cloudkit_trio.MissingCredentials` or
    :class:`~cloudkit_trio.TokenRefreshFailed`) that names the source.

    .. versionadded:: 0.1.0
    """

    async def get_credentials(self) -> Credentials:
        """Return the current credentials."""
        ...

    async def refresh_credentials(self) -> Credentials:
        """Fetch fresh credentials, bypassing any cache the provider keeps."""
        return await self.get_credentials()

    async def is_valid(self) -> bool:
        """Whether credentials are obtainable now and not expired."""
        try:
            credentials = await self.get_credentials()
        except CloudError:
            return False
        return not credentials.is_expired()


_ACCESS_KEY_VARS: Final = ("CLOUD_ACCESS_KEY", "AWS_ACCESS_KEY_ID")
_SECRET_KEY_VARS: Final = ("CLOUD_SECRET_KEY", "AWS_SECRET_ACCESS_KEY")
_SESSION_TOKEN_VARS: Final = ("CLOUD_SESSION_TOKEN", "AWS_SESSION_TOKEN")


class EnvAuthProvider(AuthProvider):
    """Reads credentials from environment variables at each call (the default provider).

    Looks up ``CLOUD_ACCESS_KEY`` then ``AWS_ACCESS_KEY_ID``; ``CLOUD_SECRET_KEY`` then
    ``AWS_SECRET_ACCESS_KEY``; ``CLOUD_SESSION_TOKEN`` then ``AWS_SESSION_TOKEN``. A missing
    or empty key or secret raises :class:`~cloudkit_trio.MissingCredentials` naming the
    variables it looked for.

    Args:
        environ: The environment to read; ``os.environ`` when omitted.

    .. versionadded:: 0.1.0
    """

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        self._environ = environ

    def _lookup(self, names: Sequence[str]) -> str | None:
        env = os.environ if self._environ is None else self._environ
        for name in names:
            if value := env.get(name, "").strip():
                return value
        return None

    async def get_credentials(self) -> Credentials:
        access_key = self._lookup(_ACCESS_KEY_VARS)
        secret_key = self._lookup(_SECRET_KEY_VARS)
        missing = [
            " or ".join(names)
            for names, value in ((_ACCESS_KEY_VARS, access_key), (_SECRET_KEY_VARS, secret_key))
            if value is None
        ]
        if access_key is None or secret_key is None:
            raise MissingCredentials(
                "no credentials in the environment: set " + " and ".join(missing)
            )
        return Credentials(access_key, secret_key, self._lookup(_SESSION_TOKEN_VARS))

    def __repr__(self) -> str:
        return "EnvAuthProvider()"


class StaticAuthProvider(AuthProvider):
    """Always returns the credentials it was given; for tests and long-lived keys.

    .. versionadded:: 0.1.0
    """

    def __init__(self, credentials: Credentials) -> None:
        if not isinstance(credentials, Credentials):
            raise TypeError(
                f"StaticAuthProvider needs Credentials, got {type(credentials).__name__}"
            )
        self._credentials = credentials

    async def get_credentials(self) -> Credentials:
        return self._credentials

    def __repr__(self) -> str:
        return f"StaticAuthProvider({self._credentials!r})"


class ChainAuthProvider(AuthProvider):
    """Tries providers in order; the first that yields credentials wins.

    When every provider fails, raises :class:`~cloudkit_trio.MissingCredentials` whose
    message lists each provider and why it failed; the individual errors are kept in
    ``.errors`` of the raised exception's ``__cause__`` (an :class:`ExceptionGroup`).
    A refresh goes to the provider that answered last, then falls back to the chain.

    .. versionadded:: 0.1.0
    """

    def __init__(self, *providers: AuthProvider) -> None:
        if not providers:
            raise ValueError("ChainAuthProvider needs at least one provider")
        for provider in providers:
            if not isinstance(provider, AuthProvider):
                raise TypeError(
                    f"ChainAuthProvider takes AuthProviders, got {type(provider).__name__}"
                )
        self.providers: tuple[AuthProvider, ...] = providers
        self._last: AuthProvider | None = None

    async def get_credentials(self) -> Credentials:
        return await self._first(refresh=False)

    async def refresh_credentials(self) -> Credentials:
        if self._last is not None:
            try:
                return await self._last.refresh_credentials()
            except AuthError:
                pass  # that source stopped answering: walk the chain again
        return await self._first(refresh=True)

    async def _first(self, *, refresh: bool) -> Credentials:
        failures: list[CloudError] = []
        for provider in self.providers:
            try:
                if refresh:
                    credentials = await provider.refresh_credentials()
                else:
                    credentials = await provider.get_credentials()
            except CloudError as error:
                failures.append(error)
                continue
            self._last = provider
            return credentials
        reasons = "; ".join(
            f"{provider!r}: {error}"
            for provider, error in zip(self.providers, failures, strict=True)
        )
        raise MissingCredentials(
            f"no provider in the chain returned credentials ({reasons})"
        ) from ExceptionGroup("credential chain failures", failures)

    def __repr__(self) -> str:
        return f"ChainAuthProvider({', '.join(repr(p) for p in self.providers)})"
