"""Temporary AWS credentials from HashiCorp Vault's AWS secrets engine."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from typing import Final
from urllib.parse import quote

import httpx

from .._credentials import Credentials
from .._errors import CloudError, MissingCredentials, SerializationError
from ..spi._auth import AuthProvider
from ._fetch import fetch_json, header_safe, optional_text, required_text

__all__ = ["VaultAuthProvider"]

_TOKEN_VAR: Final = "VAULT_TOKEN"


def _base_url(vault_url: str) -> httpx.URL:
    if not isinstance(vault_url, str):
        raise TypeError(f"vault_url must be a str, got {type(vault_url).__name__}")
    try:
        url = httpx.URL(vault_url)
    except httpx.InvalidURL:
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ValueError("vault_url must be an absolute http:// or https:// URL")
    if url.query or url.fragment or url.userinfo:
        raise ValueError("vault_url must not carry a query, fragment or user name")
    return url


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
    - an answer without the fields above: :class:`~cloudkit_trio.SerializationError`.

    Args:
        vault_url: Vault's address, like ``https://vault.example.com:8200``.
        role: The role in the AWS secrets engine.
        token: The Vault token; read from ``VAULT_TOKEN`` at each call when omitted, so a
            rotated token is picked up.
        mount: Where the AWS secrets engine is mounted (``aws`` by default).
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
        if not isinstance(role, str) or not role or "/" in role:
            raise ValueError("role must be a non-empty role name without '/'")
        if not isinstance(mount, str) or not mount.strip("/"):
            raise ValueError("mount must be the non-empty path of the AWS secrets engine")
        if token is not None and not header_safe(token):
            raise ValueError("token must be a non-empty printable ASCII string")
        if namespace is not None and not header_safe(namespace):
            raise ValueError("namespace must be a non-empty printable ASCII string")
        if transport is not None and not isinstance(transport, httpx.AsyncBaseTransport):
            raise TypeError(
                f"transport must be an httpx.AsyncBaseTransport, got {type(transport).__name__}"
            )
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
            raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
        self.role = role
        self.mount = mount.strip("/")
        self.namespace = namespace
        self.timeout = float(timeout)
        self._token = token
        self._transport = transport
        self._environ = environ
        prefix = base.raw_path.decode("ascii").rstrip("/")
        path = "/".join(quote(part, safe="") for part in (*self.mount.split("/"), "creds", role))
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
        return Credentials(
            required_text(data, "access_key", self._source),
            required_text(data, "secret_key", self._source),
            optional_text(data, "security_token", self._source),
            arrived + dt.timedelta(seconds=lease) if lease else None,
        )

    def __repr__(self) -> str:
        return f"VaultAuthProvider({self.vault_url!r}, role={self.role!r})"
