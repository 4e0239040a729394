"""Temporary AWS credentials from HashiCorp Vault's AWS secrets engine."""

from __future__ import annotations

import datetime as dt
import os
import re
from collections.abc import Mapping
from typing import Final

import httpx

from .._credentials import Credentials
from .._errors import CloudError, ConfigError, MissingCredentials, SerializationError
from ..spi._auth import AuthProvider
from ._fetch import fetch_json, header_safe, is_loopback, optional_text, required_text

__all__ = ["VaultAuthProvider"]

_TOKEN_VAR: Final = "VAULT_TOKEN"
# One segment of a mount path or a role name: the characters Vault's own role names allow
# (``\w``, ``-``, ``.``, ``@``). Nothing that a server or proxy could decode into a
# separator or a dot segment (``%2e%2e``, ``%2f``, ``\``), so the token can only be sent
# below ``/v1/<mount>/creds/``.
_SEGMENT: Final = re.compile(r"[A-Za-z0-9_.@-]+")


def _base_url(vault_url: str) -> httpx.URL:
    if not isinstance(vault_url, str):
        raise TypeError(f"vault_url must be a str, got {type(vault_url).__name__}")
    try:
        url = httpx.URL(vault_url)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(
            "vault_url must be an absolute http:// or https:// URL", field="vault_url"
        )
    if url.query or url.fragment or url.userinfo:
        raise ConfigError(
            "vault_url must not carry a query, fragment or user name", field="vault_url"
        )
    if url.scheme == "http" and not is_loopback(url.host):
        # The token would cross the network in clear text.
        raise ConfigError(
            f"vault_url names http://{url.host}, which would send the Vault token "
            "unencrypted: use https, or http only to a loopback address or localhost",
            field="vault_url",
            value=url.host,
        )
    return url


def _segments(value: object, name: str, *, several: bool) -> list[str]:
    """The path segments of ``value``, each refused unless it is a plain name."""
    what = "a mount path like 'aws' or 'team/aws'" if several else "a role name"
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}")
    parts = value.strip("/").split("/") if several else [value]
    for part in parts:
        if part in ("", ".", "..") or _SEGMENT.fullmatch(part) is None:
            # Not quoted: a refused value may hold anything, control characters included.
            raise ConfigError(
                f"{name} must be {what}: segments of letters, digits, '_', '-', '.' "
                "and '@', none empty, '.' or '..'",
                field=name,
            )
    return parts


class VaultAuthProvider(AuthProvider):
    """Fetches temporary AWS credentials from Vault's AWS secrets engine.

    Each call reads ``GET {vault_url}/v1/{mount}/creds/{role}`` with the header
    ``X-Vault-Token`` and builds :class:`~cloudkit_trio.Credentials` from ``data.access_key``,
    ``data.secret_key`` and ``data.security_token`` (null for ``iam_user`` roles); the
    lease (``lease_duration`` seconds, counted from when the answer arrived) becomes
    ``expires_at``, so the runtime refreshes ahead of it. A lease of 0 means no expiry.
    Every call asks Vault for a new lease: the runtime's refresher is what caches.

    Failures name Vault's address and the role, never the token:

    - no token (argument or ``VAULT_TOKEN``): :class:`~cloudkit_trio.MissingCredentials`;
    - Vault unreachable, too slow or speaking broken HTTP, HTTP 429 or 5xx:
      :class:`~cloudkit_trio.TokenRefreshFailed` (a source that exists but failed to answer,
      which a later refresh may fix);
    - HTTP 403 (Vault's answer to a bad or under-privileged token):
      :class:`~cloudkit_trio.InsufficientPermissions`; HTTP 401 and other 4xx (an unknown
      role or mount): :class:`~cloudkit_trio.InvalidCredentials`;
    - an answer without the fields above, or with a lease that ends after the year 9999:
      :class:`~cloudkit_trio.SerializationError`; credentials holding a control character:
      :class:`~cloudkit_trio.ConfigError`.

    Vault's error messages are quoted in these errors with the token masked. The request
    never goes through a proxy from the environment (``HTTP_PROXY``, ``ALL_PROXY``, ...).

    Args:
        vault_url: Vault's address, like ``https://vault.example.com:8200``. Plain
            ``http://`` only to a loopback address or ``localhost`` (a dev server), since
            the token would cross the network unencrypted: any other is refused with
            :class:`~cloudkit_trio.ConfigError`.
        role: The role in the AWS secrets engine: letters, digits, ``_``, ``-``, ``.`` and
            ``@``, not ``.`` or ``..``; anything else is a :class:`~cloudkit_trio.ConfigError`.
        token: The Vault token; read from ``VAULT_TOKEN`` at each call when omitted, so a
            rotated token is picked up.
        mount: Where the AWS secrets engine is mounted (``aws`` by default): segments
            like the role's, joined by ``/``, so the token is only ever sent below
            ``/v1/<mount>/creds/``.
        namespace: The Vault Enterprise namespace, sent as ``X-Vault-Namespace``.
        transport: An ``httpx.AsyncBaseTransport`` to use (custom TLS trust, tests); the
            caller keeps ownership of it. A fresh connection is made per call otherwise.
        timeout: Seconds allowed for connecting, and for each read, per call.
        environ: The environment to read ``VAULT_TOKEN`` from; ``os.environ`` when omitted.

    .. versionadded:: 0.1.0
    """

    def __init__(
        self,
        vault_url: str,
        role: str,
        *,
        token: str | None = None,
        mount: str = "aws",
        namespace: str | None = None,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        base = _base_url(vault_url)
        _segments(role, "role", several=False)
        mount_parts = _segments(mount, "mount", several=True)
        if token is not None and not header_safe(token):
            raise ConfigError("token must be a non-empty printable ASCII string", field="token")
        if namespace is not None and not header_safe(namespace):
            raise ConfigError(
                "namespace must be a non-empty printable ASCII string", field="namespace"
            )
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport, got {type(transport).__name__}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.role = role
        self.mount = "/".join(mount_parts)
        self.namespace = namespace
        self.timeout = float(timeout)
        self._token = token
        self._transport = transport
        self._environ = environ
        prefix = base.raw_path.decode("ascii").rstrip("/")
        path = "/".join((*mount_parts, "creds", role))
        self.vault_url = f"{base.scheme}://{base.netloc.decode('ascii')}{prefix}"
        self._url = f"{self.vault_url}/v1/{path}"
        self._lookup_url = f"{self.vault_url}/v1/auth/token/lookup-self"
        self._source = f"Vault at {self.vault_url} (role {role!r})"

    def _current_token(self) -> str:
        if self._token is not None:
            return self._token
        env = os.environ if self._environ is None else self._environ
        token = env.get(_TOKEN_VAR, "").strip()
        if not token:
            raise MissingCredentials(
                f"no Vault token for {self._source}: pass token= or set {_TOKEN_VAR}"
            )
        if not header_safe(token):
            raise MissingCredentials(
                f"{_TOKEN_VAR} is not a usable Vault token for {self._source}: "
                "it must be printable ASCII"
            )
        return token

    def _headers(self) -> dict[str, str]:
        headers = {"X-Vault-Token": self._current_token(), "Accept": "application/json"}
        if self.namespace is not None:
            headers["X-Vault-Namespace"] = self.namespace
        return headers

    async def is_valid(self) -> bool:
        """Whether Vault accepts the token, asked with ``GET /v1/auth/token/lookup-self``.

        Unlike :meth:`get_credentials` this mints no lease (and so no new IAM user or role
        session): a health check must not create cloud identities.
        """
        try:
            await fetch_json(
                f"Vault at {self.vault_url}",
                self._lookup_url,
                headers=self._headers(),
                transport=self._transport,
                http_timeout=self.timeout,
            )
        except CloudError:
            return False
        return True

    async def get_credentials(self) -> Credentials:
        headers = self._headers()
        document, arrived = await fetch_json(
            self._source,
            self._url,
            headers=headers,
            transport=self._transport,
            http_timeout=self.timeout,
        )
        data = document.get("data")
        if not isinstance(data, dict):
            raise SerializationError(f"{self._source} answered without a 'data' object")
        lease = document.get("lease_duration")
        if isinstance(lease, bool) or not isinstance(lease, int) or lease < 0:
            raise SerializationError(
                f"{self._source} answered without a 'lease_duration' of whole seconds"
            )
        expires_at: dt.datetime | None = None
        if lease:
            try:
                expires_at = arrived + dt.timedelta(seconds=lease)
            except OverflowError:
                expires_at = None
            if expires_at is None:
                raise SerializationError(
                    f"{self._source} answered with a 'lease_duration' that ends after the year 9999"
                )
        return Credentials(
            required_text(data, "access_key", self._source),
            required_text(data, "secret_key", self._source),
            optional_text(data, "security_token", self._source),
            expires_at,
        )

    def __repr__(self) -> str:
        return f"VaultAuthProvider({self.vault_url!r}, role={self.role!r})"
