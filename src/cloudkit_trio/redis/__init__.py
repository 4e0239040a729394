"""Endpoint state shared across processes through Redis (``pip install 'cloudkit-trio[redis]'``).

:class:`RedisState` implements :class:`cloudkit_trio.spi.SharedState` on coredis, which
runs natively on Trio.
"""

from .._exports import publish

try:
    import coredis  # noqa: F401 - checked here, so the error names the extra
except ImportError:  # pragma: no cover - the extra is installed wherever this is tested
    raise ImportError(
        "cloudkit_trio.redis needs the 'redis' extra: pip install 'cloudkit-trio[redis]'"
    ) from None

from ._state import RedisState

__all__ = ["RedisState"]

publish(__name__, globals(), __all__)
