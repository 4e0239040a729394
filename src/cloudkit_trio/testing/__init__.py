"""Test doubles for code that uses cloudkit_trio: fault injection, fake endpoints, recording SPIs.

Two ways to make calls fail on purpose: :class:`FaultyTransport` fails them in memory,
without a socket; a :class:`FaultPlan` served by :class:`FakeEndpoint` fails them over
real loopback HTTP, on a seeded schedule, with :class:`FakeS3` and :class:`FakeVault` to
stand in for object storage and a credentials service.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._endpoint import FakeEndpoint, error_response
from ._faults import Fault, FaultyTransport
from ._http import FakeRequest, FakeResponse
from ._plan import EndpointFaults, FaultPlan, FaultWindow, Phase
from ._recording import CapturingLogger, RecordedInstrument, RecordingMetrics
from ._redis import LocalRedis
from ._s3 import FakeS3
from ._switch import fast_retries, fast_retries_enabled, set_fast_retries
from ._vault import CredentialState, FakeVault

__all__ = [
    "CapturingLogger",
    "CredentialState",
    "EndpointFaults",
    "FakeEndpoint",
    "FakeRequest",
    "FakeResponse",
    "FakeS3",
    "FakeVault",
    "Fault",
    "FaultPlan",
    "FaultWindow",
    "FaultyTransport",
    "LocalRedis",
    "Phase",
    "RecordedInstrument",
    "RecordingMetrics",
    "error_response",
    "fast_retries",
    "fast_retries_enabled",
    "set_fast_retries",
]

publish(__name__, globals(), __all__)
