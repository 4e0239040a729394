"""Operation messages: what callers send to the runtime, and what it sends back."""

from __future__ import annotations

from collections.abc import Callable, Hashable

import attrs
import trio

from ._errors import CloudError
from ._operation import Operation, Response

__all__ = ["TRACE_CAPTURE", "Reply", "Submission", "TraceCapture"]


class TraceCapture:
    """Whether new submissions keep their caller's trace context, and how to read it.

    A submission runs on one of the runtime's tasks, not its caller's, so the trace it
    belongs to is read when it is made, on the caller's task. Process-wide rather than a
    context's own state because a :class:`Submission` is made before it reaches any
    context: while at least one traced context runs, every new submission keeps the
    context its tracer's ``capture`` returns (an immutable value, no copy); otherwise
    it keeps None and reading this is the whole cost.
    """

    __slots__ = ("_users", "capture")

    def __init__(self) -> None:
        self.capture: Callable[[], object] | None = None
        self._users = 0

    def start(self, capture: Callable[[], object]) -> None:
        """A traced context starts running: capture with ``capture`` from now on."""
        self._users += 1
        self.capture = capture

    def stop(self) -> None:
        """A traced context stopped; the last one to stop turns capturing off."""
        self._users = max(self._users - 1, 0)
        if not self._users:
            self.capture = None


TRACE_CAPTURE = TraceCapture()


def _captured_trace() -> object:
    capture = TRACE_CAPTURE.capture
    return None if capture is None else capture()


def _check_operation(_instance: object, _attribute: object, value: Operation) -> None:
    if not isinstance(value, Operation):
        raise TypeError(f"Submission.operation must be an Operation, got {type(value).__name__}")


def _check_reply_to(_instance: object, _attribute: object, value: object) -> None:
    if not isinstance(value, trio.MemorySendChannel):
        raise TypeError(
            "Submission.reply_to must be a trio.MemorySendChannel[Reply], "
            f"got {type(value).__name__}"
        )


@attrs.frozen
class Submission:
    """An operation sent through :meth:`Cloud.submit_channel`, with where to reply.

    The runtime sends exactly one :class:`Reply` to ``reply_to`` for every submission it
    accepts, carrying ``correlation_id`` back. Give ``reply_to`` room for your in-flight
    submissions (or a reader that keeps up): the runtime waits for space, and during
    shutdown waits only a bounded time before counting the reply as undeliverable.

    .. versionadded:: 0.1.0
    """

    operation: Operation = attrs.field(validator=_check_operation)
    reply_to: trio.MemorySendChannel[Reply] = attrs.field(validator=_check_reply_to, repr=False)
    correlation_id: Hashable | None = None
    #: The trace context current where the submission was made (while tracing is on).
    _trace_context: object = attrs.field(init=False, factory=_captured_trace, eq=False, repr=False)


@attrs.frozen
class Reply:
    """The one answer to a :class:`Submission`: a response or an error, never both.

    .. versionadded:: 0.1.0
    """

    correlation_id: Hashable | None
    response: Response | None = None
    error: CloudError | None = None

    def __attrs_post_init__(self) -> None:
        if (self.response is None) == (self.error is None):
            raise ValueError("a Reply carries exactly one of response and error")

    @property
    def ok(self) -> bool:
        """Whether the operation succeeded."""
        return self.error is None

    def result(self) -> Response:
        """The response, or raise the error."""
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response
