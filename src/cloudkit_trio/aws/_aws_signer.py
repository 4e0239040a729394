"""Signature Version 4 for every AWS service: the default signer of an AWS context."""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import ClassVar, Final

from .._errors import ConfigError
from ._signing_names import signing_name, uses_s3_rules
from ._sigv4 import SigV4Signer

__all__ = ["AwsSigner"]

# Operations name a handful of services in a handful of regions; a program that makes up
# names as it goes must not grow this without bound.
_MAX_SIGNERS: Final = 256


class AwsSigner:
    """Signs each operation with SigV4 for its own service and region.

    This is what ``CloudContext.builder(ProviderType.AWS)`` uses unless ``.signer(...)``
    says otherwise, so one context talks to S3, STS, SQS, DynamoDB and any other SigV4
    service. For each operation it signs with a :class:`SigV4Signer` for:

    - the *signing name* of ``Operation.service``: the service name itself, except for
      the services whose signing name differs (``"sesv2"`` signs as ``"ses"``,
      ``"stepfunctions"`` and ``"sfn"`` as ``"states"``, ``"elbv2"`` as
      ``"elasticloadbalancing"``, ``"s3control"`` as ``"s3"``, ...; the table follows
      botocore's service models), or as ``signing_names`` says;
    - the operation's region: ``Operation.region``, else ``CloudConfig.region``.

    S3's rules apply when the signing name is ``s3`` (or another of the S3 family): the
    path is signed exactly as sent and every request carries ``X-Amz-Content-SHA256``.
    Every other service gets the generic rules: the path normalised and encoded twice,
    the body's hash inside the signature only.

    Args:
        unsigned_payload: For S3 only, send ``UNSIGNED-PAYLOAD`` instead of hashing each
            body (cheaper for large uploads; the body is then protected by TLS alone, so
            use it with ``https://`` endpoints). Other services always hash the body.
        sign_session_token: Put ``X-Amz-Security-Token`` inside the signature (the
            default, what every SDK does); ``False`` adds it after signing, for the few
            endpoints that require that.
        signing_names: Extra or overriding ``service -> signing name`` entries, for a
            service this library does not know or a private endpoint that signs as
            another.

    .. versionadded:: 0.2.0
    """

    __slots__ = ("_names", "_signers", "sign_session_token", "unsigned_payload")

    #: The runtime fetches credentials for every operation this signer signs.
    needs_credentials: ClassVar[bool] = True

    def __init__(
        self,
        *,
        unsigned_payload: bool = False,
        sign_session_token: bool = True,
        signing_names: Mapping[str, str] | None = None,
    ) -> None:
        for name, value in (
            ("unsigned_payload", unsigned_payload),
            ("sign_session_token", sign_session_token),
        ):
            if not isinstance(value, bool):
                raise TypeError(f"AwsSigner.{name} must be a bool, got {type(value).__name__}")
        names = dict(signing_names or {})
        for service, name in names.items():
            if not isinstance(service, str) or not isinstance(name, str) or not name:
                raise TypeError(
                    "AwsSigner.signing_names maps service names to signing names, both str"
                )
        self.unsigned_payload = unsigned_payload
        self.sign_session_token = sign_session_token
        self._names: Mapping[str, str] = MappingProxyType(names)
        self._signers: dict[tuple[str, str], SigV4Signer] = {}

    @property
    def signing_names(self) -> Mapping[str, str]:
        """The overrides given; every other service signs as :func:`signing_name` says."""
        return self._names

    def signing_name(self, service: str) -> str:
        """The name ``service`` signs as."""
        return self._names.get(service) or signing_name(service)

    def for_operation(self, service: str, region: str) -> SigV4Signer:
        """The signer for an operation of ``service`` in ``region`` (kept for reuse).

        Raises :class:`~cloudkit_trio.ConfigError` when the service or region cannot be
        signed for (empty, spaces, ``/``).
        """
        key = (service, region)
        signer = self._signers.get(key)
        if signer is None:
            name = self.signing_name(service)
            try:
                signer = SigV4Signer(
                    name,
                    region,
                    unsigned_payload=self.unsigned_payload and uses_s3_rules(name),
                    sign_session_token=self.sign_session_token,
                )
            except (TypeError, ValueError) as exc:
                raise ConfigError(
                    f"cannot sign for service {service!r} in region {region!r}: {exc}",
                    field="service",
                    value=service,
                ) from None
            if len(self._signers) >= _MAX_SIGNERS:
                self._signers.clear()
            self._signers[key] = signer
        return signer

    def __repr__(self) -> str:
        return (
            f"AwsSigner(unsigned_payload={self.unsigned_payload}, "
            f"sign_session_token={self.sign_session_token}, "
            f"signing_names={dict(self._names)!r})"
        )
