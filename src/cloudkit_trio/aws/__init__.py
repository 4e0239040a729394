"""Amazon Web Services: Signature Version 4, the credential providers, and an S3 client.

:class:`AwsSigner`, the default signer of an AWS context, signs each operation with
Signature Version 4 for its service and region; :class:`SigV4Signer` signs ``httpx``
requests for one service and presigns URLs (it satisfies
:class:`cloudkit_trio.transport.RequestSigner`, the hook the runtime calls before each
attempt). The providers implement :class:`~cloudkit_trio.AuthProvider`: :class:`VaultAuthProvider`,
:class:`ProfileAuthProvider`, :class:`ContainerAuthProvider`, and
:func:`default_aws_chain` puts the usual ones in order. :class:`S3` runs S3 calls through a
running :class:`~cloudkit_trio.Cloud`; :class:`S3Operations` builds them as operations for
the channel API and parses their answers into records.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._aws_signer import AwsSigner
from ._chain import default_aws_chain
from ._container import ContainerAuthProvider
from ._profile import ProfileAuthProvider
from ._s3 import S3, ObjectStream
from ._s3_names import Addressing
from ._s3_operations import S3Operations
from ._s3_records import (
    BucketSummary,
    ListPage,
    ObjectInfo,
    ObjectSummary,
    PutObjectResult,
    S3Object,
)
from ._signing_names import signing_name, uses_s3_rules
from ._sigv4 import EMPTY_SHA256, UNSIGNED_PAYLOAD, SigV4Signer
from ._vault import VaultAuthProvider

__all__ = [
    "Addressing",
    "AwsSigner",
    "BucketSummary",
    "ContainerAuthProvider",
    "EMPTY_SHA256",
    "ListPage",
    "ObjectInfo",
    "ObjectStream",
    "ObjectSummary",
    "ProfileAuthProvider",
    "PutObjectResult",
    "S3",
    "S3Object",
    "S3Operations",
    "SigV4Signer",
    "UNSIGNED_PAYLOAD",
    "VaultAuthProvider",
    "default_aws_chain",
    "signing_name",
    "uses_s3_rules",
]

publish(__name__, globals(), __all__)
