"""One operation in flight: its deadline, its target and the wait it is in now.

A :class:`Flight` is created when an operation is admitted and ended exactly once. It is
also the token its concurrency slots are borrowed under, and what a deadline or shutdown
that cuts the operation short reads to say which wait ran out (``waiting_for``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    import httpx
    import trio

    from .._operation import Operation
    from ..transport._signing import RequestSigner
    from ._admission import Gate

__all__ = ["Flight", "Wait"]


class Wait:
    """What an operation is waiting for: ``OperationTimeout.waiting_for`` values."""

    QUEUE: Final = "queue"
    CAPACITY: Final = "capacity"
    CREDENTIALS: Final = "credentials"
    ATTEMPT: Final = "attempt"
    BACKOFF: Final = "backoff"
    BODY: Final = "body"
    RATE_LIMIT: Final = "rate_limit"
    #: Not a wait: refused at admission, the deadline left being shorter than the
    #: endpoint's recent latency.
    ADMISSION: Final = "admission"

    #: The waits a deadline can run out in (``snapshot().deadlines_expired``); a refusal
    #: at admission is counted apart (``snapshot().shed``).
    ALL: Final = (QUEUE, CAPACITY, CREDENTIALS, ATTEMPT, BACKOFF, BODY, RATE_LIMIT)


class Flight:
    """The runtime's record of one operation between admission and its end."""

    __slots__ = (
        "attempt_ended",
        "bulkhead",
        "deadline",
        "endpoint",
        "gate",
        "operation",
        "plan_deadline",
        "request",
        "retry_suppressed",
        "signer",
        "start",
        "url",
        "waiting_for",
    )

    def __init__(
        self,
        operation: Operation,
        *,
        start: float,
        deadline: float,
        plan_deadline: float,
        url: str,
        endpoint: str,
        request: httpx.Request,
        signer: RequestSigner,
        gate: Gate,
    ) -> None:
        self.operation = operation
        self.start = start
        #: The operation's own deadline: when the runtime cuts it short.
        self.deadline = deadline
        #: The earliest of that and the caller's enclosing Trio deadline: nothing (a retry,
        #: a backoff) is started that could not finish before it.
        self.plan_deadline = min(deadline, plan_deadline)
        self.url = url
        self.endpoint = endpoint
        self.request = request
        #: Signs every attempt of this operation.
        self.signer = signer
        #: The endpoint's admission decisions, and its bulkhead.
        self.gate = gate
        self.bulkhead: trio.CapacityLimiter = gate.bulkhead
        self.waiting_for = Wait.CAPACITY
        #: The retry budget refused a retry the policy wanted.
        self.retry_suppressed = False
        #: When the last attempt ended (``trio.current_time()``), or the start before one.
        self.attempt_ended = start
