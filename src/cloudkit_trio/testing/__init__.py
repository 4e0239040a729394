"""Test doubles for code that uses cloudkit_trio: fault injection and recording SPIs.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._faults import Fault, FaultyTransport
from ._recording import CapturingLogger, RecordedInstrument, RecordingMetrics
from ._redis import LocalRedis
from ._switch import fast_retries, fast_retries_enabled, set_fast_retries

__all__ = [
    "CapturingLogger",
    "Fault",
    "FaultyTransport",
    "LocalRedis",
    "RecordedInstrument",
    "RecordingMetrics",
    "fast_retries",
    "fast_retries_enabled",
    "set_fast_retries",
]

publish(__name__, globals(), __all__)
