"""HTTP execution: translating responses and failures into the error tree.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._classify import (
    ProviderCode,
    error_from_exception,
    error_from_response,
    parse_provider_code,
    parse_retry_after,
)
from ._h11_transport import PooledTransport, StreamOpener
from ._pool import TransportStatistics
from ._signing import BearerTokenSigner, NoAuthSigner, PerServiceSigner, RequestSigner

__all__ = [
    "BearerTokenSigner",
    "NoAuthSigner",
    "PerServiceSigner",
    "PooledTransport",
    "ProviderCode",
    "RequestSigner",
    "StreamOpener",
    "TransportStatistics",
    "error_from_exception",
    "error_from_response",
    "parse_provider_code",
    "parse_retry_after",
]

publish(__name__, globals(), __all__)
