"""Helpers for the thin public modules.

``publish`` is defined with the generic actor runtime (the lowest layer, which may import
nothing of ours) and re-exported here for the other packages.
"""

from __future__ import annotations

from .actors._exports import publish

__all__ = ["publish"]
