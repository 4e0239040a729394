"""Which cloud a context talks to, and where."""

from __future__ import annotations

import enum
import re
from typing import Final

import attrs

from ._errors import ConfigError

__all__ = ["ProviderType", "Region"]


class ProviderType(enum.Enum):
    """The cloud provider a :class:`~cloudkit_trio.CloudContext` talks to.

    ``str(ProviderType.AWS)`` is ``"aws"``: the lowercase form is what appears in log
    lines, metric labels and error context.

    .. versionadded:: 0.1.0
    """

    AWS = "aws"
    AZURE = "azure"
    GCP = "gcp"
    ORACLE = "oracle"

    def __str__(self) -> str:
        return self.value

    @classmethod
    def parse(cls, value: str | ProviderType) -> ProviderType:
        """Accept a member or its case-insensitive name (``"aws"``, ``"AWS"``)."""
        if isinstance(value, ProviderType):
            return value
        try:
            return cls(value.strip().lower())
        except ValueError:
            names = ", ".join(member.value for member in cls)
            raise ConfigError(
                f"unknown provider {value!r}; expected one of: {names}",
                field="provider",
                value=value,
            ) from None


# Region codes across the providers are lowercase words joined by dashes and may carry
# digits (us-east-1, westeurope, europe-west4, eu-frankfurt-1): that is what we accept.
_REGION_CODE: Final = re.compile(r"[a-z][a-z0-9]*(?:-[a-z0-9]+)*")


def validate_region_code(code: str, *, field: str = "region") -> str:
    """Return ``code`` if it is a well-formed region code, else raise :class:`ConfigError`."""
    if not isinstance(code, str) or not _REGION_CODE.fullmatch(code) or len(code) > 64:
        raise ConfigError(
            f"{field} must be a region code such as 'us-east-1', got {code!r}",
            field=field,
            value=code,
        )
    return code


def _parse_provider(value: str | ProviderType) -> ProviderType:
    return ProviderType.parse(value)


def _check_code(_instance: object, _attribute: object, value: str) -> None:
    validate_region_code(value)


@attrs.frozen
class Region:
    """A provider region: ``Region(ProviderType.AWS, "eu-west-1")``.

    ``str(region)`` is the code, so a region can be used wherever a code string is expected.

    .. versionadded:: 0.1.0
    """

    provider: ProviderType = attrs.field(converter=_parse_provider)
    code: str = attrs.field(validator=_check_code)
    name: str | None = None

    def __str__(self) -> str:
        return self.code

    @classmethod
    def aws(cls, code: str = "us-east-1") -> Region:
        """An AWS region (``us-east-1`` unless given)."""
        return cls(ProviderType.AWS, code)

    @classmethod
    def azure(cls, code: str) -> Region:
        """An Azure region such as ``westeurope``."""
        return cls(ProviderType.AZURE, code)

    @classmethod
    def gcp(cls, code: str) -> Region:
        """A Google Cloud region such as ``europe-west4``."""
        return cls(ProviderType.GCP, code)

    @classmethod
    def oracle(cls, code: str) -> Region:
        """An Oracle Cloud region such as ``eu-frankfurt-1``."""
        return cls(ProviderType.ORACLE, code)
