"""The package's validators for numbers users pass in: durations, counts, ranges.

One definition of "seconds" (a finite int or float, never a bool), of "a count" and of
"a number in a range", so every field that takes one refuses the same values with the
same :class:`ConfigError` (also a ``ValueError``), naming the field.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from ._errors import ConfigError

__all__ = ["check_count", "check_number", "check_seconds", "count", "seconds"]


def check_number(
    name: str,
    value: object,
    *,
    minimum: float = -math.inf,
    maximum: float = math.inf,
    above: bool = False,
    field: str | None = None,
) -> float:
    """``value`` as a float: finite, at least ``minimum`` (above it with ``above``), at most
    ``maximum``. ``name`` is how the message names it (``"ExponentialBackoff.max_delay"``),
    ``field`` the error's ``field`` (default: the last part of ``name``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < minimum
        or (above and value == minimum)
        or value > maximum
    ):
        low = f"> {minimum:g}" if above else f">= {minimum:g}"
        bound = low if maximum == math.inf else f"{low} and <= {maximum:g}"
        if minimum == -math.inf:
            bound = f"<= {maximum:g}"
        raise ConfigError(
            f"{name} must be a finite number {bound}, got {value!r}",
            field=field or name.rsplit(".", 1)[-1],
            value=value,
        )
    return float(value)


def check_seconds(
    name: str, value: object, *, allow_zero: bool = False, field: str | None = None
) -> float:
    """``value`` as float seconds: finite, above zero (or at least zero with ``allow_zero``)."""
    return check_number(name, value, minimum=0.0, above=not allow_zero, field=field)


def check_count(
    name: str,
    value: object,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    field: str | None = None,
) -> int:
    """``value`` as an int of at least ``minimum`` and at most ``maximum`` (bools refused)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int)
        or value < minimum
        or (maximum is not None and value > maximum)
    ):
        bound = f">= {minimum}" if maximum is None else f"in {minimum}..{maximum}"
        raise ConfigError(
            f"{name} must be an int {bound}, got {value!r}",
            field=field or name.rsplit(".", 1)[-1],
            value=value,
        )
    return value


# attrs validators built on the same checks, for frozen records' fields.
_Validator = Callable[[Any, Any, Any], None]


def seconds(*, allow_zero: bool = False) -> _Validator:
    """An attrs validator: the field holds seconds (see :func:`check_seconds`)."""

    def validate(_instance: object, attribute: Any, value: object) -> None:
        check_seconds(attribute.name, value, allow_zero=allow_zero)

    return validate


def count(*, minimum: int = 1) -> _Validator:
    """An attrs validator: the field holds an int of at least ``minimum``."""

    def validate(_instance: object, attribute: Any, value: object) -> None:
        check_count(attribute.name, value, minimum=minimum)

    return validate
