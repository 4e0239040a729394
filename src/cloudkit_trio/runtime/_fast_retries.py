"""The process-wide testing switch behind :func:`cloudkit_trio.testing.fast_retries`.

One mutable record, read by the retry loop only when it is about to schedule a retry,
so an application that never turns it on pays one attribute read per retry and nothing
per attempt. It is process-wide rather than a context variable because operations
submitted through the channel run on the runtime's own tasks, which a context variable
set in a test would not reach.
"""

from __future__ import annotations

from typing import Final

import attrs

__all__ = ["FAST_RETRIES", "FastRetries"]


@attrs.define
class FastRetries:
    """Whether retries skip their backoff, and the cap on attempts while they do."""

    enabled: bool = False
    #: All attempts, the first included; None keeps each retry policy's own.
    attempts: int | None = None


FAST_RETRIES: Final = FastRetries()
