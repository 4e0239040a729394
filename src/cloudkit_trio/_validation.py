"""The package's validators for numbers users pass in: durations and counts.

One definition of "seconds" (a finite int or float, never a bool) and of "a count", so
every field that takes one refuses the same values with the same :class:`ConfigError`.
"""

from __future__ import annotations

import math

from ._errors import ConfigError

__all__ = ["check_count", "check_seconds"]


def check_seconds(name: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as float seconds: finite, above zero (or at least zero with ``allow_zero``)."""
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or not math.isfinite(value)
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        bound = ">= 0" if allow_zero else "> 0"
        raise ConfigError(f"{name} must be seconds {bound}, got {value!r}", field=name, value=value)
    return float(value)


def check_count(name: str, value: object, *, minimum: int = 1) -> int:
    """``value`` as an int of at least ``minimum`` (bools refused)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ConfigError(
            f"{name} must be an int >= {minimum}, got {value!r}", field=name, value=value
        )
    return value
