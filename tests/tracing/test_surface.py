"""cloudkit_trio.tracing's public surface, pinned like the other public modules'."""

from __future__ import annotations

import inspect

import cloudkit_trio.tracing as tracing


class TestSurface:
    def test_exported_names(self) -> None:
        """Exactly these names, sorted, each resolvable, each saying it is public."""
        assert tracing.__all__ == ["INSTRUMENTATION_SCOPE", "SpanAttribute", "SpanEvent"]
        assert tracing.INSTRUMENTATION_SCOPE == "cloudkit_trio"
        for name in tracing.__all__:
            obj = getattr(tracing, name)
            if inspect.isclass(obj):
                assert obj.__module__ == "cloudkit_trio.tracing", name
