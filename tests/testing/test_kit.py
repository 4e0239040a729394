"""The testing kit's public names: documented, dated, and published where users import them."""

from __future__ import annotations

import inspect

import pytest

import cloudkit_trio.testing as testing

NEW = [
    "CredentialState", "EndpointFaults", "FakeEndpoint", "FakeRequest", "FakeResponse",
    "FakeS3", "FakeVault", "FaultPlan", "FaultWindow", "Phase", "error_response",
]  # fmt: skip


class TestKit:
    @pytest.mark.parametrize("name", NEW)
    def test_documented_and_dated(self, name: str) -> None:
        """Each new name is exported, says what it is, and since when."""
        assert name in testing.__all__
        obj = getattr(testing, name)
        doc = inspect.getdoc(obj) or ""
        assert ".. versionadded:: 0.2.0" in doc
        assert obj.__module__ == "cloudkit_trio.testing"

    def test_older_names_still_there(self) -> None:
        """What the kit exported before is still exported."""
        assert {
            "FaultyTransport",
            "Fault",
            "CapturingLogger",
            "RecordingMetrics",
            "LocalRedis",
        } <= set(testing.__all__)
