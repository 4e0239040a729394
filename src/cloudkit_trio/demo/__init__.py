"""``cloudkit-trio demo``: the runtime at work, with no setup, and a verdict on what it did.

The demo serves fake endpoints and a fake Vault from :mod:`cloudkit_trio.testing` inside
its own Trio run, drives operations through :class:`~cloudkit_trio.CloudContext` (half with
``cloud.execute``, half through the channel API), shows retries, circuit breakers and
credential refreshes as they happen, and ends with a verdict that decides the exit status.
It is built on the public API only. Importing this module does not import rich; the
``demo`` extra (``pip install 'cloudkit-trio[demo]'``) provides it for the live view.

.. versionadded:: 0.1.0
"""

from ._cli import main

__all__ = ["main"]

# Tracebacks and the reference say where users import it from.
main.__module__ = __name__
