"""CloudConfig: validated, frozen settings, and where they come from."""

from __future__ import annotations

import math
import os
import types
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar

import attrs

from ._errors import ConfigError
from ._masking import mask_url
from ._provider import ProviderType, Region, validate_region_code
from ._validation import check_url, count, seconds

__all__ = ["CloudConfig"]

_T = TypeVar("_T")

DEFAULT_REGION: Final = "us-east-1"
DEFAULT_TIMEOUT: Final = 30.0
DEFAULT_CONNECT_TIMEOUT: Final = 10.0
DEFAULT_MAX_RETRIES: Final = 3
DEFAULT_QUEUE_SIZE: Final = 1024
DEFAULT_MAX_CONCURRENCY: Final = 256
DEFAULT_MAX_CONCURRENCY_PER_ENDPOINT: Final = 64
DEFAULT_METRICS_QUEUE_SIZE: Final = 10_000
DEFAULT_SHUTDOWN_GRACE: Final = 10.0
# Far above any API reply (S3 listings, DynamoDB pages, SQS batches: at most a few MiB), far
# below what it costs to hold one per concurrent operation; larger bodies want stream().
DEFAULT_MAX_RESPONSE_SIZE: Final = 64 * 1024 * 1024
# A body must be read within this when the caller set no deadline: five minutes moves 30 GB
# at 100 MB/s, yet a server dripping a byte at a time holds its slots for no longer.
DEFAULT_STREAM_TIMEOUT: Final = 300.0

# Provider variables, consulted after the CLOUD_* ones, in the order listed.
_PROVIDER_REGION_VARS: Final[Mapping[ProviderType, tuple[str, ...]]] = {
    ProviderType.AWS: ("AWS_REGION", "AWS_DEFAULT_REGION"),
    ProviderType.AZURE: ("AZURE_REGION",),
    ProviderType.GCP: ("GOOGLE_CLOUD_REGION", "CLOUDSDK_COMPUTE_REGION"),
    ProviderType.ORACLE: ("OCI_REGION",),
}
_PROVIDER_ENDPOINT_VARS: Final[Mapping[ProviderType, tuple[str, ...]]] = {
    ProviderType.AWS: ("AWS_ENDPOINT_URL",),
    ProviderType.AZURE: ("AZURE_STORAGE_ENDPOINT",),
    ProviderType.GCP: ("CLOUD_STORAGE_EMULATOR_HOST",),
    ProviderType.ORACLE: (),
}
# AWS counts attempts, we count retries: AWS_MAX_ATTEMPTS=4 means max_retries=3.
_AWS_MAX_ATTEMPTS: Final = "AWS_MAX_ATTEMPTS"

# Parameter names whose values are treated as secrets in repr().
_SENSITIVE_MARKERS: Final = ("secret", "token", "password", "credential", "key")


def redact_url(url: str) -> str:
    """``url`` safe to put in messages and logs: :func:`~cloudkit_trio._masking.mask_url`."""
    return mask_url(url)


def _to_region_code(value: str | Region) -> str:
    return value.code if isinstance(value, Region) else value


def _check_region(_instance: object, _attribute: object, value: str) -> None:
    validate_region_code(value)


def _check_endpoint(_instance: object, _attribute: object, value: str | None) -> None:
    if value is not None:
        check_url("endpoint", value, allow_query=False)


def _freeze_parameters(value: Mapping[str, str] | None) -> Mapping[str, str]:
    return types.MappingProxyType(dict(value or {}))


def _check_parameters(_instance: object, _attribute: object, value: Mapping[str, str]) -> None:
    for key, item in value.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise ConfigError(
                f"parameters must map str to str; the entry for {key!r} does not",
                field="parameters",
                value=key,
            )


def _is_sensitive(name: str) -> bool:
    lowered = name.lower()
    return any(marker in lowered for marker in _SENSITIVE_MARKERS)


def _parameters_repr(value: Mapping[str, str]) -> str:
    shown = {k: ("***" if _is_sensitive(k) else v) for k, v in value.items()}
    return repr(shown)


@attrs.frozen(kw_only=True)
class CloudConfig:
    """Settings shared by every operation of a context; validated when constructed.

    Args:
        region: The region code (``"us-east-1"``) or a :class:`Region`.
        endpoint: Base URL that operations with a relative ``path`` are sent to; ``None``
            means operations must carry absolute URLs.
        timeout: Budget in seconds for one attempt (connect, send, wait, read).
        connect_timeout: Budget in seconds for establishing a connection.
        max_retries: Retries after the first attempt for the default retry policy.
        parameters: Provider-specific settings; values whose names look secret
            (``*key*``, ``*token*``, ...) are hidden in ``repr()``.
        queue_size: Capacity of the submission queue; a full queue applies backpressure
            (``send`` waits, ``submit_nowait`` raises :class:`Overloaded`).
        max_concurrency: Operations running at once, ``execute`` and channel together.
        max_concurrency_per_endpoint: Operations running at once against one endpoint
            (scheme, host, port): a bulkhead, so one slow endpoint cannot take every slot.
        metrics_queue_size: Capacity of the metrics aggregator's queue; events past it
            are dropped and counted, never waited for.
        shutdown_grace: Seconds a graceful shutdown lets running and queued operations
            finish before cancelling them with :class:`ContextClosed`.
        max_response_size: Largest body, in bytes after decoding, that ``execute`` (and
            ``StreamingResponse.aread``) holds in memory; past it they raise
            :class:`ResponseTooLarge` having buffered no more than this. Error bodies are
            cut to it instead. Default 64 MiB; ``stream`` and ``aiter_bytes`` have no
            such limit.
        stream_timeout: Seconds a streamed body may take to read, from its headers on,
            when the caller set no deadline (no ``timeout=``, ``Operation.timeout`` or
            enclosing Trio deadline); past it a read raises :class:`OperationTimeout` with
            ``waiting_for="body"``. Default 300; give ``timeout=`` for longer downloads.

    Invalid values raise :class:`ConfigError` naming the field and the value.

    .. versionadded:: 0.1.0
    """

    region: str = attrs.field(
        default=DEFAULT_REGION, converter=_to_region_code, validator=_check_region
    )
    endpoint: str | None = attrs.field(default=None, validator=_check_endpoint)
    timeout: float = attrs.field(default=DEFAULT_TIMEOUT, validator=seconds())
    connect_timeout: float = attrs.field(default=DEFAULT_CONNECT_TIMEOUT, validator=seconds())
    max_retries: int = attrs.field(default=DEFAULT_MAX_RETRIES, validator=count(minimum=0))
    queue_size: int = attrs.field(default=DEFAULT_QUEUE_SIZE, validator=count())
    max_concurrency: int = attrs.field(default=DEFAULT_MAX_CONCURRENCY, validator=count())
    max_concurrency_per_endpoint: int = attrs.field(
        default=DEFAULT_MAX_CONCURRENCY_PER_ENDPOINT, validator=count()
    )
    metrics_queue_size: int = attrs.field(default=DEFAULT_METRICS_QUEUE_SIZE, validator=count())
    shutdown_grace: float = attrs.field(default=DEFAULT_SHUTDOWN_GRACE, validator=seconds())
    max_response_size: int = attrs.field(default=DEFAULT_MAX_RESPONSE_SIZE, validator=count())
    stream_timeout: float = attrs.field(default=DEFAULT_STREAM_TIMEOUT, validator=seconds())
    parameters: Mapping[str, str] = attrs.field(
        factory=dict,
        converter=_freeze_parameters,
        validator=_check_parameters,
        repr=_parameters_repr,
        hash=False,
    )

    @classmethod
    def from_env(
        cls,
        provider: ProviderType | str = ProviderType.AWS,
        *,
        environ: Mapping[str, str] | None = None,
        **overrides: Any,
    ) -> CloudConfig:
        """Build a config from the environment.

        Precedence, highest first: keyword ``overrides``; ``CLOUD_REGION``,
        ``CLOUD_ENDPOINT``, ``CLOUD_TIMEOUT``, ``CLOUD_CONNECT_TIMEOUT``,
        ``CLOUD_MAX_RETRIES``; the provider's own variables (for AWS: ``AWS_REGION``,
        ``AWS_DEFAULT_REGION``, ``AWS_ENDPOINT_URL``, ``AWS_MAX_ATTEMPTS``); the defaults
        (``us-east-1``, 30 s, 10 s to connect, 3 retries). Empty variables count as unset.

        Args:
            provider: Whose variables to consult after the ``CLOUD_*`` ones.
            environ: The environment to read; ``os.environ`` by default.
            overrides: Explicit field values, which win over everything.

        Raises:
            ConfigError: A variable or override is malformed; the message names it.
        """
        provider = ProviderType.parse(provider)
        env = os.environ if environ is None else environ
        unknown = set(overrides) - set(attrs.fields_dict(cls))
        if unknown:
            raise ConfigError(
                f"unknown CloudConfig field(s): {', '.join(sorted(unknown))}",
                field=sorted(unknown)[0],
            )

        def first(*names: str) -> tuple[str, str] | None:
            for name in names:
                value = env.get(name, "").strip()
                if value:
                    return name, value
            return None

        values: dict[str, Any] = {}
        if found := first("CLOUD_REGION", *_PROVIDER_REGION_VARS[provider]):
            values["region"] = _from_var(found, validate_region_code)
        if found := first("CLOUD_ENDPOINT", *_PROVIDER_ENDPOINT_VARS[provider]):
            values["endpoint"] = found[1]
        if found := first("CLOUD_TIMEOUT"):
            values["timeout"] = _from_var(found, _seconds)
        if found := first("CLOUD_CONNECT_TIMEOUT"):
            values["connect_timeout"] = _from_var(found, _seconds)
        if found := first("CLOUD_MAX_RETRIES"):
            values["max_retries"] = _from_var(found, _count)
        elif provider is ProviderType.AWS and (found := first(_AWS_MAX_ATTEMPTS)):
            values["max_retries"] = max(_from_var(found, _count) - 1, 0)
        values.update(overrides)
        return cls(**values)


def _from_var(found: tuple[str, str], parse: Callable[[str], _T]) -> _T:
    name, raw = found
    try:
        return parse(raw)
    except (ValueError, ConfigError) as error:
        raise ConfigError(
            f"environment variable {name}={raw!r} is invalid: {_reason(error)}",
            field=name,
            value=raw,
        ) from None


def _reason(error: Exception) -> str:
    return error.message if isinstance(error, ConfigError) else str(error)


def _seconds(raw: str) -> float:
    value = float(raw)
    if not math.isfinite(value) or value <= 0:
        raise ValueError("expected a number of seconds > 0")
    return value


def _count(raw: str) -> int:
    value = int(raw)
    if value < 0:
        raise ValueError("expected an integer >= 0")
    return value
