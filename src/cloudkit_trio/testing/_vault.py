"""A fake Vault: short-lived AWS credentials on 127.0.0.1, in the shape Vault's AWS engine uses.

:class:`FakeVault` answers ``GET /v1/<mount>/creds/<role>`` as Vault does, so the runtime
authenticates with the real :class:`~cloudkit_trio.aws.VaultAuthProvider`, and it keeps a
ledger of what it issued, so that a :class:`~cloudkit_trio.testing.FakeEndpoint` can refuse
expired or unknown credentials as a cloud service would.
"""

from __future__ import annotations

import enum
import hmac
import json
import secrets
import uuid
from typing import Final

import attrs
import trio

from ..aws import VaultAuthProvider
from ._http import FakeRequest, FakeResponse, serve_http

__all__ = ["CredentialState", "FakeVault"]

_LOOKUP_SELF: Final = "/v1/auth/token/lookup-self"
# Tokens older than this many leases are forgotten: no request holds one that long.
_REMEMBERED_LEASES: Final = 10


class CredentialState(enum.Enum):
    """What :meth:`FakeVault.check` finds a session token to be.

    .. versionadded:: 0.2.0
    """

    #: Issued, and still honoured.
    VALID = "valid"
    #: Issued, and past its lease (or revoked early).
    EXPIRED = "expired"
    #: Never issued (or no token at all).
    UNKNOWN = "unknown"


def _json(status: int, document: object) -> FakeResponse:
    return FakeResponse(
        status=status,
        body=json.dumps(document).encode(),
        headers={"content-type": "application/json"},
    )


@attrs.define(eq=False)
class FakeVault:
    """Vault's AWS secrets engine on a free port of 127.0.0.1, inside your nursery.

    ``url = await nursery.start(vault.serve)``, then give the runtime
    :meth:`auth_provider`. Each fetch issues new credentials with a lease of ``lease`` whole
    seconds (Trio time, so ``MockClock`` drives expiry). Every ``revoke_every``-th lease
    (0: none) stops being honoured after ``revoke_after`` of its lease, the way a rotated
    key does, so requests made with it are refused with ``ExpiredToken`` before the
    runtime expected it. A request without the right ``X-Vault-Token`` gets Vault's
    ``403 permission denied``.

    Attributes:
        issued: Credentials issued so far.
        url: Where it listens, once served.

    .. versionadded:: 0.2.0
    """

    lease: int = 60
    role: str = "test"
    mount: str = "aws"
    token: str = attrs.field(factory=lambda: secrets.token_urlsafe(24), repr=False)
    revoke_every: int = 0
    revoke_after: float = 0.5
    issued: int = attrs.field(default=0, init=False)
    url: str | None = attrs.field(default=None, init=False)
    # session token -> (issued at, honoured until)
    _tokens: dict[str, tuple[float, float]] = attrs.field(factory=dict, init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        if not (isinstance(self.lease, int) and self.lease >= 1):
            raise ValueError(
                f"lease must be a whole number of seconds >= 1 (Vault counts seconds), "
                f"got {self.lease!r}"
            )

    async def serve(self, *, task_status: trio.TaskStatus[str] = trio.TASK_STATUS_IGNORED) -> None:
        """Serve until cancelled; ``nursery.start`` hands back the URL."""
        async with trio.open_nursery() as nursery:
            self.url = await nursery.start(serve_http, self._handle)
            task_status.started(self.url)

    def auth_provider(self, *, timeout: float = 5.0) -> VaultAuthProvider:
        """A :class:`~cloudkit_trio.aws.VaultAuthProvider` for this Vault (once served)."""
        if self.url is None:
            raise RuntimeError("serve the FakeVault first: url = await nursery.start(vault.serve)")
        return VaultAuthProvider(
            self.url, self.role, token=self.token, mount=self.mount, timeout=timeout
        )

    def check(self, session_token: str | None, now: float | None = None) -> CredentialState:
        """Whether ``session_token`` is one this Vault issued and still honours at ``now``
        (``trio.current_time()`` by default)."""
        entry = None if session_token is None else self._tokens.get(session_token)
        if entry is None:
            return CredentialState.UNKNOWN
        now = trio.current_time() if now is None else now
        return CredentialState.VALID if now < entry[1] else CredentialState.EXPIRED

    def _issue(self, now: float) -> dict[str, str]:
        self.issued += 1
        revoked = self.revoke_every > 0 and self.issued % self.revoke_every == 0
        honoured = self.lease * (self.revoke_after if revoked else 1.0)
        forget_before = now - _REMEMBERED_LEASES * self.lease
        for token, (issued_at, _) in list(self._tokens.items()):
            if issued_at < forget_before:
                del self._tokens[token]
        session_token = secrets.token_urlsafe(32)
        self._tokens[session_token] = (now, now + honoured)
        return {
            "access_key": f"ASIAFAKE{self.issued:08d}",
            "secret_key": secrets.token_urlsafe(30),
            "security_token": session_token,
        }

    async def _handle(self, request: FakeRequest) -> FakeResponse:
        await trio.lowlevel.checkpoint()
        if request.method != "GET" or request.path not in (self._creds_path, _LOOKUP_SELF):
            return _json(404, {"errors": []})
        presented = request.headers.get("x-vault-token", "").encode()
        if not hmac.compare_digest(presented, self.token.encode()):
            return _json(403, {"errors": ["permission denied"]})
        if request.path == _LOOKUP_SELF:
            return _json(200, {"data": {"policies": ["test"], "ttl": 0, "renewable": False}})
        return _json(
            200,
            {
                "request_id": str(uuid.uuid4()),
                "lease_id": f"{self.mount}/creds/{self.role}/{uuid.uuid4().hex}",
                "renewable": False,
                "lease_duration": self.lease,
                "data": self._issue(trio.current_time()),
            },
        )

    @property
    def _creds_path(self) -> str:
        return f"/v1/{self.mount}/creds/{self.role}"
