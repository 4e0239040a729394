"""Amazon Web Services: Signature Version 4 signing and the credential providers AWS users need.

:class:`SigV4Signer` signs ``httpx`` requests and presigns URLs; it satisfies
:class:`cloudkit_trio.transport.RequestSigner`, the hook the runtime calls before each
attempt. The providers implement :class:`~cloudkit_trio.AuthProvider`: :class:`VaultAuthProvider`,
:class:`ProfileAuthProvider`, :class:`ContainerAuthProvider`, and
:func:`default_aws_chain` puts the usual ones in order.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._chain import default_aws_chain
from ._container import ContainerAuthProvider
from ._profile import ProfileAuthProvider
from ._sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, SigV4Signer
from ._vault import VaultAuthProvider

__all__ = [
    "ContainerAuthProvider",
    "EMPTY_SHA256",
    "ProfileAuthProvider",
    "SigV4Signer",
    "UNSIGNED_PAYLOAD",
    "VaultAuthProvider",
    "default_aws_chain",
]

publish(__name__, globals(), __all__)
