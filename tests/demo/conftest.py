"""Fixtures of the demo's tests: moto's S3 server, started as the AWS tests start it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from ..aws._moto import MotoServer, run_moto_server


@pytest.fixture(scope="session")
def moto_s3() -> Iterator[MotoServer]:
    """moto's S3 server on a free 127.0.0.1 port with authentication on, one per session."""
    with run_moto_server() as server:
        yield server
