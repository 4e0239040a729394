"""The default AWS credential chain."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

from ..spi._auth import AuthProvider, ChainAuthProvider, EnvAuthProvider
from ._container import ContainerAuthProvider
from ._profile import ProfileAuthProvider

if TYPE_CHECKING:
    import httpx

__all__ = ["default_aws_chain"]


def default_aws_chain(
    *,
    profile: str | None = None,
    environ: Mapping[str, str] | None = None,
    transport: httpx.AsyncBaseTransport | None = None,
) -> ChainAuthProvider:
    """The usual places AWS credentials come from, tried in order; the first answer wins.

    1. The environment (:class:`~cloudkit_trio.EnvAuthProvider`): ``CLOUD_ACCESS_KEY`` or
       ``AWS_ACCESS_KEY_ID``, ``CLOUD_SECRET_KEY`` or ``AWS_SECRET_ACCESS_KEY``, and the
       session token from ``CLOUD_SESSION_TOKEN`` or ``AWS_SESSION_TOKEN``. Skipped when
       ``profile`` is given: naming a profile means using it.
    2. The shared files (:class:`ProfileAuthProvider`): the ``profile`` argument, else
       ``AWS_PROFILE``, else ``default``; ``~/.aws/credentials`` before ``~/.aws/config``.
    3. The container credentials endpoint (:class:`ContainerAuthProvider`), when ECS or
       EKS set ``AWS_CONTAINER_CREDENTIALS_RELATIVE_URI`` or ``..._FULL_URI``.

    When every step fails, :class:`~cloudkit_trio.MissingCredentials` lists each step
    and why. A refresh asks the step that answered last, then walks the chain again.

    Args:
        profile: The profile to use; also skips the environment step.
        environ: The environment every step reads; ``os.environ`` when omitted.
        transport: The ``httpx.AsyncBaseTransport`` for the container endpoint.

    .. versionadded:: 0.1.0
    """
    steps: list[AuthProvider] = []
    if profile is None:
        steps.append(EnvAuthProvider(environ))
    steps.append(ProfileAuthProvider(profile, environ=environ))
    steps.append(ContainerAuthProvider(environ=environ, transport=transport))
    return ChainAuthProvider(*steps)
