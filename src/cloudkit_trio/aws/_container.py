"""Credentials from the container credentials endpoint (ECS task roles, EKS Pod Identity)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Final

import httpx
import trio

from .._credentials import Credentials
from .._errors import ConfigError, MissingCredentials, SerializationError
from ..spi._auth import AuthProvider
from ._fetch import fetch_json, header_safe, is_loopback, optional_text, required_text

__all__ = ["ContainerAuthProvider"]

RELATIVE_URI_VAR: Final = "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI"
FULL_URI_VAR: Final = "AWS_CONTAINER_CREDENTIALS_FULL_URI"
TOKEN_VAR: Final = "AWS_CONTAINER_AUTHORIZATION_TOKEN"
TOKEN_FILE_VAR: Final = "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE"

# The ECS agent's endpoint, which a relative URI is resolved against.
_ECS_HOST: Final = "169.254.170.2"
# Plain-http hosts a full URI may name besides loopback addresses: the ECS and EKS Pod
# Identity link-local endpoints. Anything else over http could be a network attacker
# harvesting the authorization token, so it is refused.
_LINK_LOCAL_HOSTS: Final = frozenset({"169.254.170.2", "169.254.170.23", "fd00:ec2::23"})


def _allowed(url: httpx.URL) -> bool:
    if url.scheme == "https":
        return True
    if url.scheme != "http":
        return False
    return url.host.lower() in _LINK_LOCAL_HOSTS or is_loopback(url.host)


def _read_token_file(path: str) -> str:
    return Path(path).read_text(encoding="utf-8")


class ContainerAuthProvider(AuthProvider):
    """Fetches the task's or pod's role credentials from the container credentials endpoint.

    Reads the environment at each call, as ECS and EKS set it:

    1. ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` (ECS): the endpoint is
       ``http://169.254.170.2`` followed by that path. It wins when both are set.
    2. ``AWS_CONTAINER_CREDENTIALS_FULL_URI`` (EKS Pod Identity, ECS Anywhere, local
       emulators): any ``https://`` URL, or ``http://`` to a loopback address,
       ``localhost``, ``169.254.170.2``, ``169.254.170.23`` or ``[fd00:ec2::23]``; other
       hosts are refused with :class:`~cloudkit_trio.ConfigError`, because the request
       carries the authorization token.

    The ``Authorization`` header comes from the file named by
    ``AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE`` (read at each call, since EKS rotates it;
    surrounding whitespace is dropped), else from ``AWS_CONTAINER_AUTHORIZATION_TOKEN``.
    The answer's ``AccessKeyId``, ``SecretAccessKey``, ``Token`` and ``Expiration``
    (ISO 8601) become the :class:`~cloudkit_trio.Credentials`.

    Failures name the endpoint (``scheme://host:port``, never the path or the token):
    neither variable set, or an unreadable token file → :class:`~cloudkit_trio.MissingCredentials`;
    a refused host or a token that cannot be a header → :class:`~cloudkit_trio.ConfigError`;
    unreachable, too slow, HTTP 429 or 5xx → :class:`~cloudkit_trio.TokenRefreshFailed`;
    HTTP 403 → :class:`~cloudkit_trio.InsufficientPermissions`; 401 and other 4xx →
    :class:`~cloudkit_trio.InvalidCredentials`; a malformed answer →
    :class:`~cloudkit_trio.SerializationError`. Each call makes one attempt; retrying is
    the runtime's job.

    Args:
        environ: The environment to read; ``os.environ`` when omitted.
        transport: An ``httpx.AsyncBaseTransport`` to use; the caller keeps ownership.
        timeout: Seconds allowed for connecting, and for each read (2 s, as the AWS SDKs).

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        *,
        environ: Mapping[str, str] | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 2.0,
    ) -> None:
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport, got {type(transport).__name__}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.timeout = float(timeout)
        self._environ = environ
        self._transport = transport

    def _env(self) -> Mapping[str, str]:
        return os.environ if self._environ is None else self._environ

    def _endpoint(self) -> httpx.URL:
        env = self._env()
        relative = env.get(RELATIVE_URI_VAR, "").strip()
        full = env.get(FULL_URI_VAR, "").strip()
        if relative:
            if not relative.startswith("/"):
                raise ConfigError(
                    f"{RELATIVE_URI_VAR} must be a path starting with '/'", field=RELATIVE_URI_VAR
                )
            text, variable = f"http://{_ECS_HOST}{relative}", RELATIVE_URI_VAR
        elif full:
            text, variable = full, FULL_URI_VAR
        else:
            raise MissingCredentials(
                f"no container credentials endpoint: neither {RELATIVE_URI_VAR} "
                f"nor {FULL_URI_VAR} is set"
            )
        try:
            url = httpx.URL(text)
        except httpx.InvalidURL:
            url = None
        if url is None or not url.host:
            raise ConfigError(f"{variable} is not a valid URL", field=variable)
        if not _allowed(url):
            raise ConfigError(
                f"{variable} names {url.scheme}://{url.host}, which is not allowed: use https, "
                "a loopback address or the ECS/EKS link-local endpoint",
                field=variable,
                value=url.host,
            )
        return url

    async def _authorization(self) -> str | None:
        env = self._env()
        path = env.get(TOKEN_FILE_VAR, "").strip()
        if path:
            reason: str | None = None
            try:
                token = await trio.to_thread.run_sync(_read_token_file, path)
            except OSError as exc:
                reason = exc.strerror or type(exc).__name__
            except UnicodeDecodeError:
                reason = "it is not UTF-8 text"
            if reason is not None:
                # Raised outside the handler: a decode error holds the file's bytes.
                raise MissingCredentials(
                    f"the token file {path} named by {TOKEN_FILE_VAR} cannot be read: {reason}"
                )
            token, variable = token.strip(), TOKEN_FILE_VAR
        elif TOKEN_VAR in env:
            token, variable = env[TOKEN_VAR].strip(), TOKEN_VAR
        else:
            return None
        if not header_safe(token):
            raise ConfigError(
                f"the container authorization token from {variable} cannot be sent as a "
                "header: it must be non-empty printable ASCII on one line",
                field=variable,
            )
        return token

    async def get_credentials(self) -> Credentials:
        url = self._endpoint()
        source = f"container credentials endpoint {url.scheme}://{url.netloc.decode('ascii')}"
        headers = {"Accept": "application/json"}
        token = await self._authorization()
        if token is not None:
            headers["Authorization"] = token
        document, _ = await fetch_json(
            source, str(url), headers=headers, transport=self._transport, http_timeout=self.timeout
        )
        return Credentials(
            required_text(document, "AccessKeyId", source),
            required_text(document, "SecretAccessKey", source),
            optional_text(document, "Token", source),
            _expiration(document, source),
        )

    def __repr__(self) -> str:
        return "ContainerAuthProvider()"


def _expiration(document: Mapping[str, object], source: str) -> dt.datetime:
    text = required_text(document, "Expiration", source)
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        when = None
    if when is None:
        raise SerializationError(f"{source} answered with an 'Expiration' that is not ISO 8601")
    # The endpoints answer in UTC; a time without an offset means UTC, not local time.
    return when.replace(tzinfo=dt.UTC) if when.tzinfo is None else when
