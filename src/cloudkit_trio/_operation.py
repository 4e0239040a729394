"""Operations (what to do) and responses (what came back)."""

from __future__ import annotations

import json
import re
import types
from collections.abc import Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs
import httpx

from ._errors import ConfigError
from ._masking import mask_headers, mask_url
from ._provider import validate_region_code
from ._validation import check_headers, check_params, check_path, check_seconds, check_url

__all__ = ["Operation", "Response", "endpoint_of"]

_TOKEN: Final = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
# RFC 9110 §9.2.2: these methods are idempotent; the rest are not unless the caller says so.
_IDEMPOTENT_METHODS: Final = frozenset({"GET", "HEAD", "PUT", "DELETE", "OPTIONS", "TRACE"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}


def endpoint_of(url: str) -> str:
    """The endpoint key of ``url``: ``scheme://host:port`` with the default port made explicit.

    Circuit breakers, bulkheads and metrics are kept per endpoint.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port or _DEFAULT_PORTS.get(scheme, 0)
    return f"{scheme}://{host}:{port}"


def _check_name(_instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not isinstance(value, str) or not value:
        raise ConfigError(
            f"Operation.{attribute.name} must be a non-empty str, got {value!r}",
            field=attribute.name,
            value=value,
        )


def _upper(value: object) -> object:
    # ASCII only: "ß".upper() is "SS", which would turn a non-method into one.
    return value.upper() if isinstance(value, str) and value.isascii() else value


def _check_method(_instance: object, _attribute: object, value: str) -> None:
    if not isinstance(value, str) or not _TOKEN.fullmatch(value):
        raise ConfigError(
            f"Operation.method must be an HTTP method such as 'GET', got {value!r}",
            field="method",
            value=value,
        )


def _check_url(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None:
        check_url("Operation.url", value)


def _check_path(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None:
        check_path("Operation.path", value)


def _freeze_mapping(value: object) -> object:
    # Only mappings are frozen; anything else is left for the validator to refuse (a list
    # of strings must not become a dict of their characters).
    if value is None:
        return types.MappingProxyType({})
    if isinstance(value, Mapping):
        return types.MappingProxyType(dict(value))
    return value


def _check_headers(_instance: object, _attribute: object, value: object) -> None:
    check_headers("Operation.headers", value)


def _check_params(_instance: object, _attribute: object, value: object) -> None:
    check_params("Operation.params", value)


def _check_body(_instance: object, _attribute: object, value: bytes) -> None:
    if not isinstance(value, bytes | bytearray | memoryview):
        raise ConfigError(
            f"Operation.body must be bytes, got {type(value).__name__}",
            field="body",
            value=type(value).__name__,
        )


def _check_timeout(_instance: object, _attribute: object, value: float | None) -> None:
    if value is not None:
        check_seconds("Operation.timeout", value)


def _check_idempotent(_instance: object, _attribute: object, value: bool | None) -> None:
    if value is not None and not isinstance(value, bool):
        raise ConfigError(
            f"Operation.idempotent must be True, False or None, got {type(value).__name__}",
            field="idempotent",
            value=type(value).__name__,
        )


def _check_region(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None:
        validate_region_code(value, field="Operation.region")


def _url_repr(value: str | None) -> str:
    return repr(value if value is None else mask_url(value))


def _mapping_repr(value: Mapping[str, str]) -> str:
    return repr(mask_headers(value))


def _body_repr(value: bytes) -> str:
    return f"<{len(value)} bytes>"


@attrs.frozen(kw_only=True)
class Operation:
    """One call to a cloud API: what the runtime authenticates, retries, measures and sends.

    Give either an absolute ``url`` or a ``path`` resolved against the context's
    ``CloudConfig.endpoint``. ``timeout`` bounds the whole operation, every attempt and
    backoff included (each attempt is also bounded by ``CloudConfig.timeout``).
    ``idempotent`` defaults from the method (GET, HEAD, PUT, DELETE, OPTIONS, TRACE are);
    a non-idempotent operation is retried only when the request provably never reached the
    server. ``region`` is the region the request is signed for, when it is not the
    context's ``CloudConfig.region`` (a bucket in another region, a global endpoint).

    Args:
        service: The API the operation belongs to (``"s3"``, ``"sqs"``): what the request
            is signed for, and a label of its metrics and logs.
        name: The operation's name (``"put_object"``), a label of its metrics and logs.
        method: The HTTP method, upper-cased; ``"GET"`` by default.
        url: An absolute ``http(s)`` URL. Give this or ``path``, not both.
        path: A path joined to ``CloudConfig.endpoint``. Give this or ``url``, not both.
        params: Query parameters, ``str`` to ``str``, added to the URL.
        headers: Request headers, ``str`` to ``str``; secret-looking ones are masked in
            ``repr()`` and logs.
        body: The request body, as bytes (``bytes``, ``bytearray`` or ``memoryview``);
            encode text or JSON yourself.
        timeout: Seconds for the whole operation, retries and backoff included; ``None``
            leaves only each attempt's ``CloudConfig.timeout``.
        idempotent: Whether repeating the request is safe; ``None`` decides by the method.
        region: The region to sign for instead of the context's ``CloudConfig.region``.

    Invalid values raise :class:`ConfigError` naming the field.

    .. versionadded:: 0.1.0
    .. versionchanged:: 0.2.0
       ``region``.
    """

    service: str = attrs.field(validator=_check_name)
    name: str = attrs.field(validator=_check_name)
    method: str = attrs.field(default="GET", converter=_upper, validator=_check_method)
    url: str | None = attrs.field(default=None, validator=_check_url, repr=_url_repr)
    path: str | None = attrs.field(default=None, validator=_check_path, repr=_url_repr)
    params: Mapping[str, str] = attrs.field(
        factory=dict,
        converter=_freeze_mapping,
        validator=_check_params,
        repr=_mapping_repr,
        hash=False,
    )
    headers: Mapping[str, str] = attrs.field(
        factory=dict,
        converter=_freeze_mapping,
        validator=_check_headers,
        repr=_mapping_repr,
        hash=False,
    )
    body: bytes = attrs.field(default=b"", validator=_check_body, repr=_body_repr)
    timeout: float | None = attrs.field(default=None, validator=_check_timeout)
    idempotent: bool | None = attrs.field(default=None, validator=_check_idempotent)
    region: str | None = attrs.field(default=None, validator=_check_region)

    def __attrs_post_init__(self) -> None:
        if (self.url is None) == (self.path is None):
            raise ConfigError(
                "Operation needs exactly one of url= (absolute) or path= (relative to the "
                "configured endpoint)",
                field="url",
                value=self.url,
            )

    @property
    def is_idempotent(self) -> bool:
        """Whether the operation may be repeated safely: ``idempotent``, or by its method."""
        if self.idempotent is not None:
            return self.idempotent
        return self.method in _IDEMPOTENT_METHODS

    def resolve_url(self, endpoint: str | None) -> str:
        """The absolute URL to send to; ``path`` is joined to ``endpoint``."""
        if self.url is not None:
            return self.url
        assert self.path is not None
        if endpoint is None:
            raise ConfigError(
                f"operation {self.service}.{self.name} has a relative path "
                f"{mask_url(self.path)!r} but the CloudConfig has no endpoint; set "
                "CloudConfig(endpoint=...) or pass url=",
                field="endpoint",
                value=None,
                service=self.service,
                operation=self.name,
            )
        return endpoint.rstrip("/") + "/" + self.path.lstrip("/")


@attrs.frozen(eq=False)
class Response:
    """The final response of a successful operation (status below 300).

    ``execute()`` returns it with the whole body read; read ``content`` as bytes,
    ``text`` as a string, or call ``json()``.

    Attributes:
        status_code: The HTTP status of the last attempt.
        headers: The response headers.
        content: The body, decoded from any ``Content-Encoding``.
        url: The URL the last attempt was sent to.
        attempts: Attempts made, the successful one included.
        elapsed: Seconds from the first attempt to the response, backoff included.

    .. versionadded:: 0.1.0
    """

    status_code: int
    headers: httpx.Headers = attrs.field(repr=False)
    content: bytes = attrs.field(repr=_body_repr)
    url: str = attrs.field(repr=_url_repr)
    attempts: int = 1
    elapsed: float = 0.0

    @property
    def text(self) -> str:
        """The body decoded with the charset of ``Content-Type`` (UTF-8 by default)."""
        charset = httpx.Response(self.status_code, headers=self.headers).charset_encoding
        return self.content.decode(charset or "utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.content)
