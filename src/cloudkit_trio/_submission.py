"""Operation messages: what callers send to the runtime, and what it sends back."""

from __future__ import annotations

from collections.abc import Hashable

import attrs
import trio

from ._errors import CloudError
from ._operation import Operation, Response

__all__ = ["Reply", "Submission"]


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
