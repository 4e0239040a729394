"""Which signer signs an operation: the context's one signer, or the one chosen for it.

A :class:`~cloudkit_trio.transport.RequestSigner` signs every operation alike; a
:class:`~cloudkit_trio.transport.PerServiceSigner` (AWS's default) is asked once per
operation for the signer of its service and region. Choosing is user code like signing,
and is contained the same way.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._errors import CloudError, InternalError
from ..transport._signing import PerServiceSigner, RequestSigner
from ._containment import Spi

if TYPE_CHECKING:
    from .._operation import Operation
    from ._containment import Containment

__all__ = ["Signers"]


class Signers:
    """Hands each operation its signer."""

    __slots__ = ("_chooser", "_containment", "_fixed", "_region", "needs_credentials")

    def __init__(
        self,
        signer: RequestSigner | PerServiceSigner,
        *,
        region: str,
        containment: Containment,
    ) -> None:
        self._region = region
        self._containment = containment
        # A chooser is asked per operation; a plain signer serves every one. An object
        # that is both is used as a chooser: choosing is the more specific promise.
        self._chooser: PerServiceSigner | None = None
        self._fixed: RequestSigner | None = None
        if isinstance(signer, PerServiceSigner):
            self._chooser = signer
        else:
            self._fixed = signer
        self.needs_credentials = bool(signer.needs_credentials)

    def for_operation(self, operation: Operation) -> RequestSigner:
        """The signer for every attempt of ``operation``."""
        fixed = self._fixed
        if fixed is not None:
            return fixed
        chooser = self._chooser
        assert chooser is not None
        try:
            chosen = chooser.for_operation(operation.service, operation.region or self._region)
        except CloudError:
            raise
        except Exception as exc:
            self._containment.failed(Spi.SIGNER, "for_operation", exc)
            raise InternalError(
                f"the request signer {type(chooser).__name__} raised {type(exc).__name__} "
                "while choosing a signer; the request was not sent"
            ) from exc
        if not isinstance(chosen, RequestSigner):
            garbage = TypeError(
                f"{type(chooser).__name__}.for_operation returned {type(chosen).__name__}, "
                "not a RequestSigner"
            )
            self._containment.failed(Spi.SIGNER, "for_operation", garbage)
            raise InternalError(f"{garbage}; the request was not sent")
        return chosen
