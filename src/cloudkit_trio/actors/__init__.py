"""Supervision trees and actors for Trio, with OTP semantics.

A :class:`Supervisor` starts its children in order, restarts them by a :class:`Strategy`
within a restart intensity, and stops them in reverse order with a per-child budget. A
:class:`DynamicSupervisor` runs many children from one template, and :func:`worker_pool`
is the recipe of N workers on one channel on top of it. An :class:`Actor` handles messages
from a bounded mailbox that its supervisor owns, so the :class:`ActorRef` callers hold
stays valid across restarts. Nothing here knows about clouds.
"""

from ._actor import Actor, ActorContext, ActorSpec, actor_child
from ._backoff import RandomSource, RestartBackoff
from ._dynamic import DynamicSupervisor, DynamicSupervisorHandle
from ._errors import (
    ActorStopped,
    CallTimeout,
    ChildNotFound,
    ChildRunning,
    ChildStartError,
    DuplicateChild,
    InvalidChildSpec,
    MailboxFull,
    RestartIntensityExceeded,
    SupervisionError,
    SupervisorNotRunning,
    TooManyChildren,
)
from ._exports import publish
from ._handle import SupervisorHandle
from ._logging import SupervisorLogger
from ._mailbox import ActorRef, Overflow
from ._pool import worker_pool
from ._snapshot import (
    ChildCounts,
    ChildInfo,
    Children,
    ChildState,
    EventHook,
    EventKind,
    FailureInfo,
    MailboxStatistics,
    SupervisorEvent,
    SupervisorSnapshot,
)
from ._spec import (
    IGNORE,
    AutoShutdown,
    ChildKind,
    ChildSpec,
    ChildTarget,
    Restart,
    Stoppable,
    StopSignal,
    Strategy,
)
from ._supervisor import Supervisor

__all__ = [
    "Actor",
    "ActorContext",
    "ActorRef",
    "ActorSpec",
    "ActorStopped",
    "AutoShutdown",
    "CallTimeout",
    "ChildCounts",
    "ChildInfo",
    "ChildKind",
    "ChildNotFound",
    "ChildRunning",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "ChildTarget",
    "Children",
    "DuplicateChild",
    "DynamicSupervisor",
    "DynamicSupervisorHandle",
    "EventHook",
    "EventKind",
    "FailureInfo",
    "IGNORE",
    "InvalidChildSpec",
    "MailboxFull",
    "MailboxStatistics",
    "Overflow",
    "RandomSource",
    "Restart",
    "RestartBackoff",
    "RestartIntensityExceeded",
    "StopSignal",
    "Stoppable",
    "Strategy",
    "SupervisionError",
    "Supervisor",
    "SupervisorEvent",
    "SupervisorHandle",
    "SupervisorLogger",
    "SupervisorNotRunning",
    "SupervisorSnapshot",
    "TooManyChildren",
    "actor_child",
    "worker_pool",
]

publish(__name__, globals(), __all__)
