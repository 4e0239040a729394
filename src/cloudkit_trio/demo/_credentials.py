"""Short-lived credentials for the embedded endpoints, issued in the shape Vault uses.

The embedded Vault answers ``GET /v1/aws/creds/<role>`` like Vault's AWS secrets engine, so
the demo authenticates with the real :class:`~cloudkit_trio.aws.VaultAuthProvider`. Leases are
short, so credentials expire during the run; every third lease is revoked early, the way a
rotated key is, so that some requests are answered ``ExpiredToken`` and the runtime's
refresh-and-retry shows as well as its refresh ahead of expiry.
"""

from __future__ import annotations

import enum
import hmac
import json
import secrets
import uuid
from typing import TYPE_CHECKING, Final

import attrs
import trio

from ._asgi import EmbeddedApp, answer, header

if TYPE_CHECKING:
    from hypercorn.typing import ASGIReceiveCallable, ASGISendCallable, HTTPScope

__all__ = ["TokenLedger", "TokenState", "VaultApp"]

# Tokens older than this many leases are forgotten: no attempt holds one that long.
_REMEMBERED_LEASES: Final = 10


class TokenState(enum.Enum):
    VALID = "valid"
    EXPIRED = "expired"
    UNKNOWN = "unknown"
    #: An access key the ledger never issued (SigV4 requests name theirs).
    UNKNOWN_KEY = "unknown_key"


@attrs.frozen(repr=False)
class IssuedCredentials:
    access_key: str
    secret_key: str
    session_token: str

    def __repr__(self) -> str:
        return f"IssuedCredentials(access_key={self.access_key!r}, ...)"


@attrs.define(eq=False, repr=False)
class TokenLedger:
    """Which session tokens the endpoints accept, and until when (Trio time).

    A lease is honoured for ``lease`` seconds, except every ``revoke_every``-th one, which
    the endpoints stop accepting after ``revoke_after`` of its lease.
    """

    lease: int
    revoke_every: int = 3
    revoke_after: float = 0.6
    issued: int = 0
    # session token -> (issued at, honoured until, access key)
    _tokens: dict[str, tuple[float, float, str]] = attrs.field(factory=dict, init=False)
    # access key -> session token
    _keys: dict[str, str] = attrs.field(factory=dict, init=False)

    def issue(self, now: float) -> IssuedCredentials:
        self.issued += 1
        revoked_early = self.revoke_every > 0 and self.issued % self.revoke_every == 0
        honoured = self.lease * (self.revoke_after if revoked_early else 1.0)
        forget_before = now - _REMEMBERED_LEASES * self.lease
        for token, (issued_at, _, access_key) in list(self._tokens.items()):
            if issued_at < forget_before:
                del self._tokens[token]
                del self._keys[access_key]
        credentials = IssuedCredentials(
            access_key=f"ASIADEMO{self.issued:08d}",
            secret_key=secrets.token_urlsafe(30),
            session_token=secrets.token_urlsafe(32),
        )
        self._tokens[credentials.session_token] = (now, now + honoured, credentials.access_key)
        self._keys[credentials.access_key] = credentials.session_token
        return credentials

    def check(self, token: str | None, now: float) -> TokenState:
        if token is None:
            return TokenState.UNKNOWN
        entry = self._tokens.get(token)
        if entry is None:
            return TokenState.UNKNOWN
        return TokenState.VALID if now < entry[1] else TokenState.EXPIRED

    def check_key(self, access_key: str, token: str | None, now: float) -> TokenState:
        """Like :meth:`check`, for a request that names its access key as SigV4 does: the
        key must be one the ledger issued, and the token the one issued with it."""
        issued_token = self._keys.get(access_key)
        if issued_token is None:
            return TokenState.UNKNOWN_KEY
        if token is None or not hmac.compare_digest(token.encode(), issued_token.encode()):
            return TokenState.UNKNOWN
        return self.check(token, now)

    def __repr__(self) -> str:
        return f"TokenLedger(lease={self.lease}, issued={self.issued})"


_LOOKUP_SELF = "/v1/auth/token/lookup-self"


class VaultApp(EmbeddedApp):
    """An ASGI app that issues credentials from ``ledger`` the way Vault's AWS engine does.

    Only ``GET /v1/<mount>/creds/<role>`` with the right ``X-Vault-Token`` gets credentials,
    and ``GET /v1/auth/token/lookup-self`` describes that token (what
    ``VaultAuthProvider.is_valid()`` asks); a wrong token gets Vault's 403
    ``permission denied``, any other path a 404.
    """

    def __init__(
        self, ledger: TokenLedger, *, vault_token: str, mount: str = "aws", role: str = "demo"
    ) -> None:
        self.ledger = ledger
        self.role = role
        super().__init__()
        self._vault_token = vault_token.encode()
        self._path = f"/v1/{mount}/creds/{role}"

    def __repr__(self) -> str:
        return f"VaultApp(path={self._path!r})"

    async def handle(
        self, scope: HTTPScope, receive: ASGIReceiveCallable, send: ASGISendCallable
    ) -> None:
        path = scope["path"]
        if path not in (self._path, _LOOKUP_SELF) or scope["method"] != "GET":
            await _json(send, 404, {"errors": []})
            return
        presented = (header(scope["headers"], b"x-vault-token") or "").encode()
        if not hmac.compare_digest(presented, self._vault_token):
            await _json(send, 403, {"errors": ["permission denied"]})
            return
        if path == _LOOKUP_SELF:
            await _json(send, 200, {"data": {"policies": ["demo"], "ttl": 0, "renewable": False}})
            return
        credentials = self.ledger.issue(trio.current_time())
        await _json(
            send,
            200,
            {
                "request_id": str(uuid.uuid4()),
                "lease_id": f"aws/creds/{self.role}/{uuid.uuid4().hex}",
                "renewable": False,
                "lease_duration": self.ledger.lease,
                "data": {
                    "access_key": credentials.access_key,
                    "secret_key": credentials.secret_key,
                    "security_token": credentials.session_token,
                },
                "wrap_info": None,
                "warnings": None,
                "auth": None,
            },
        )


async def _json(send: ASGISendCallable, status: int, document: object) -> None:
    await answer(send, status, json.dumps(document).encode(), content_type=b"application/json")
