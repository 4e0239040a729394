"""Request signing: how credentials are put on a request, per provider."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    import httpx

    from .._credentials import Credentials

__all__ = ["BearerTokenSigner", "NoAuthSigner", "PerServiceSigner", "RequestSigner"]


@runtime_checkable
class RequestSigner(Protocol):
    """Puts credentials on a request, right before each attempt is sent.

    ``sign`` is synchronous and called once per attempt (a retry is signed again, with the
    then-current credentials and time). It may add or replace headers and the URL's query.
    When ``needs_credentials`` is false the runtime never asks the auth provider for
    anything, so unauthenticated endpoints work without credentials configured.

    .. versionadded:: 0.1.0
    """

    @property
    def needs_credentials(self) -> bool:
        """Whether :meth:`sign` uses credentials."""
        ...

    def sign(self, request: httpx.Request, credentials: Credentials | None) -> None:
        """Authenticate ``request`` in place."""
        ...


@runtime_checkable
class PerServiceSigner(Protocol):
    """Chooses the :class:`RequestSigner` for each operation, by its service and region.

    One context talks to many services, and some signatures name the service and region
    they are for (AWS's Signature Version 4 does). The runtime calls :meth:`for_operation`
    once per operation, with ``Operation.service`` and the operation's region
    (``Operation.region``, else ``CloudConfig.region``), and signs every attempt of that
    operation with the signer it returns. Calls repeat a few pairs, so an implementation
    should keep the signers it hands out rather than build one per call.

    .. versionadded:: 0.2.0
    """

    @property
    def needs_credentials(self) -> bool:
        """Whether the signers it returns use credentials."""
        ...

    def for_operation(self, service: str, region: str) -> RequestSigner:
        """The signer for an operation of ``service`` in ``region``."""
        ...


class NoAuthSigner:
    """Sends requests as they are; for public endpoints and pre-signed URLs.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    needs_credentials = False

    def sign(self, request: httpx.Request, credentials: Credentials | None) -> None:
        return None

    def __repr__(self) -> str:
        return "NoAuthSigner()"


class BearerTokenSigner:
    """Sends ``Authorization: Bearer <token>``: the session token, or else the secret key.

    Suits OAuth2 access tokens (Google Cloud, Azure AD) supplied through an
    :class:`~cloudkit_trio.AuthProvider` as the ``session_token`` of temporary credentials.

    .. versionadded:: 0.1.0
    """

    __slots__ = ()

    needs_credentials = True

    def sign(self, request: httpx.Request, credentials: Credentials | None) -> None:
        if credentials is None:
            raise TypeError("BearerTokenSigner needs credentials")
        token = credentials.session_token or credentials.secret_key
        request.headers["Authorization"] = f"Bearer {token}"

    def __repr__(self) -> str:
        return "BearerTokenSigner()"
