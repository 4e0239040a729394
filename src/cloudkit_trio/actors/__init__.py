"""Supervision trees and actors for Trio, with OTP semantics.

A :class:`Supervisor` starts its children in order, restarts them by a :class:`Strategy`
within a restart intensity, and stops them in reverse order with a per-child budget. An
:class:`Actor` handles messages from a bounded mailbox that its supervisor owns, so the
:class:`ActorRef` callers hold stays valid across restarts. Nothing here knows about clouds.
"""

from ._actor import Actor, ActorContext, ActorSpec, actor_child
from ._backoff import RandomSource, RestartBackoff
from ._errors import (
    ActorStopped,
    CallTimeout,
    ChildNotFound,
    ChildRunning,
    ChildStartError,
    DuplicateChild,
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
from ._snapshot import (
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
from ._spec import ChildSpec, ChildTarget, Restart, Stoppable, StopSignal, Strategy
from ._supervisor import Supervisor

__all__ = [
    "Actor",
    "ActorContext",
    "ActorRef",
    "ActorSpec",
    "ActorStopped",
    "CallTimeout",
    "ChildInfo",
    "ChildNotFound",
    "ChildRunning",
    "ChildSpec",
    "ChildStartError",
    "ChildState",
    "ChildTarget",
    "Children",
    "DuplicateChild",
    "EventHook",
    "EventKind",
    "FailureInfo",
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
]

publish(__name__, globals(), __all__)
