"""Helpers for the thin public modules.

It lives in the lowest layer, with the generic actor runtime, so that every package of the
distribution (actors included) can publish its names without importing anything above it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["publish"]


def publish(module_name: str, namespace: Mapping[str, object], names: Iterable[str]) -> None:
    """Rewrite ``__module__`` of re-exported classes and functions to the public module.

    Tracebacks, reprs and docs then say ``cloudkit_trio.CircuitOpenError`` instead of the
    private module it is defined in. Only objects defined in a private module of the same
    top-level package as ``module_name`` are touched.
    """
    root = module_name.partition(".")[0] + "."
    for name in names:
        obj = namespace[name]
        module = getattr(obj, "__module__", None)
        if (
            isinstance(module, str)
            and module.startswith(root)
            and ("._" in module or module.split(".")[-1].startswith("_"))
        ):
            try:
                obj.__module__ = module_name
            except (AttributeError, TypeError):  # pragma: no cover - builtins, constants
                continue
