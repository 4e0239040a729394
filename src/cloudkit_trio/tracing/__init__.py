"""OpenTelemetry traces of every operation (``pip install 'cloudkit-trio[tracing]'``).

Turn it on with ``CloudContext.builder(...).tracing(tracer_provider)``: each operation is
a span, each attempt a CLIENT span under it (the HTTP client conventions), and the
runtime's decisions — a retry and its backoff, a retry the budget refused, an open
breaker, a refusal by admission, a credential refresh — events on the operation's span,
named in :class:`SpanEvent`. See the Observability guide.
"""

from .._exports import publish

try:
    import opentelemetry.trace  # noqa: F401 - checked here, so the error names the extra
except ImportError:  # pragma: no cover - the extra is installed wherever this is tested
    raise ImportError(
        "cloudkit_trio.tracing needs the 'tracing' extra: pip install 'cloudkit-trio[tracing]'"
    ) from None

from ._names import SpanAttribute, SpanEvent
from ._tracer import INSTRUMENTATION_SCOPE

__all__ = ["INSTRUMENTATION_SCOPE", "SpanAttribute", "SpanEvent"]

publish(__name__, globals(), __all__)
