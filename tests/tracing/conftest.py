"""Tracing tests run only with the ``tracing`` extra; every one records to a private provider."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk.trace", reason="the 'tracing' extra is not installed")

from ._support import Recorder


@pytest.fixture
def recorder() -> Recorder:
    """A TracerProvider of the test's own (never the global one) and what it exported."""
    return Recorder()
