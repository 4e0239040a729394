"""``cloudkit-trio demo``: the runtime at work, with no setup.

The demo serves fault-injecting endpoints and a Vault inside its own Trio run, drives
operations through :class:`~cloudkit_trio.CloudContext` (half with ``cloud.execute``, half
through the channel API) and shows retries, circuit breakers and credential refreshes as
they happen. Importing this module imports neither hypercorn nor rich; the ``demo`` extra
(``pip install 'cloudkit-trio[demo]'``) provides them when the command runs.

.. versionadded:: 0.1.0
"""

from .._exports import publish
from ._cli import main

__all__ = ["main"]

publish(__name__, globals(), __all__)
