"""Where an operation goes: parsed targets (cached) and the request built for them.

Parsing a URL costs several microseconds and most operations repeat a few URLs, so parsed
targets are memoised (``httpx.URL`` is immutable), within a bound.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

import httpx

from .._operation import endpoint_of

if TYPE_CHECKING:
    from .._operation import Operation

__all__ = ["Target", "Targets"]

_MAX_TARGETS: Final = 1024
# Headers that frame a request body; a caller who sets one is taken at their word.
_FRAMING: Final = frozenset({"content-length", "transfer-encoding"})
# httpx (and curl) send Content-Length: 0 for these methods even without a body.
_EMPTY_BODY_NEEDS_LENGTH: Final = frozenset({"POST", "PUT", "PATCH"})


class Target:
    """A parsed operation URL."""

    __slots__ = ("endpoint", "host", "url")

    def __init__(self, endpoint: str, url: httpx.URL, host: str) -> None:
        self.endpoint = endpoint
        self.url = url
        #: The Host header's value.
        self.host = host


class Targets:
    """The cache of parsed targets, and the request builder."""

    __slots__ = ("_base", "_targets", "_timeouts")

    def __init__(self, base_endpoint: str | None, timeouts: dict[str, float | None]) -> None:
        self._base = base_endpoint
        self._timeouts = timeouts
        self._targets: dict[str, Target] = {}

    def resolve(self, operation: Operation) -> tuple[str, Target]:
        url = operation.resolve_url(self._base)
        target = self._targets.get(url)
        if target is None:
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            parsed = httpx.URL(url)
            target = self._targets[url] = Target(
                endpoint_of(url), parsed, parsed.netloc.decode("ascii")
            )
        return url, target

    def request(self, operation: Operation, target: Target) -> httpx.Request:
        # httpx.Request(content=...) would encode the body and prepare the Host and
        # Content-Length headers through several generic layers; for an in-memory body
        # the result is the same list of headers, built here at half the cost.
        url = target.url if not operation.params else httpx.URL(target.url, params=operation.params)
        body = operation.body
        headers: list[tuple[str, str]] = [("Host", target.host)]
        framed = False
        if operation.headers:
            for name in operation.headers:
                lowered = name.lower()
                if lowered == "host":
                    headers.clear()
                elif lowered in _FRAMING:
                    framed = True
            headers.extend(operation.headers.items())
        if not framed:
            if body:
                headers.append(("Content-Length", str(len(body))))
            elif operation.method in _EMPTY_BODY_NEEDS_LENGTH:
                headers.append(("Content-Length", "0"))
        request = httpx.Request(
            operation.method,
            url,
            headers=headers,
            stream=httpx.ByteStream(bytes(body)),
            extensions={"timeout": self._timeouts},
        )
        # Signers read request.content (SigV4 hashes it).
        request.read()
        return request
