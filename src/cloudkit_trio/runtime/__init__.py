"""The resilience actors' public records: breaker states, snapshots, statistics, metric names.

The actors themselves (credential refresher, breaker registry, metrics aggregator, router)
are run by :class:`cloudkit_trio.CloudContext`; this module exposes what you can observe.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._aggregator import AggregatorStatistics
from ._breaker import BreakerEvent, BreakerSnapshot, BreakerState
from ._credentials import CredentialsSnapshot
from ._events import RuntimeMetric
from ._router import RouterStatistics
from ._runner import RunnerStatistics
from ._shared import SharedSnapshot

__all__ = [
    "AggregatorStatistics",
    "BreakerEvent",
    "BreakerSnapshot",
    "BreakerState",
    "CredentialsSnapshot",
    "RouterStatistics",
    "RunnerStatistics",
    "RuntimeMetric",
    "SharedSnapshot",
]

publish(__name__, globals(), __all__)
