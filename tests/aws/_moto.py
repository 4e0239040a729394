"""moto's standalone S3 server on 127.0.0.1, with request authentication switched on.

moto lets the first ``INITIAL_NO_AUTH_ACTION_COUNT`` requests through unsigned; those create
an IAM user with an allow-all policy and an access key. From then on every request must be
signed with that key, so a wrong secret gets ``SignatureDoesNotMatch``, as from AWS.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Final

import attrs

import cloudkit_trio as ck

REGION: Final = "us-east-1"
# create_user, put_user_policy, create_access_key.
_SETUP_CALLS: Final = 3
_STARTUP_BUDGET: Final = 30.0
_ALLOW_ALL: Final = json.dumps(
    {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "*", "Resource": "*"}]}
)


@attrs.frozen
class MotoServer:
    """A running moto server and the IAM access key it accepts."""

    port: int
    access_key: str
    secret_key: str = attrs.field(repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def credentials(self) -> ck.Credentials:
        return ck.Credentials(self.access_key, self.secret_key)


# moto's own entry point, plus a watchdog: the server exits when our end of its stdin
# closes, so a test run that is killed before its teardown leaves no server behind.
_GUARDED_SERVER: Final = """
import os, sys, threading

def exit_with_parent():
    sys.stdin.buffer.read()
    os._exit(0)

threading.Thread(target=exit_with_parent, daemon=True).start()
from moto.server import main
main(sys.argv[1:])
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_up(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + _STARTUP_BUDGET
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"moto_server exited early with status {process.returncode}")
        try:
            # The moto API is never authenticated and does not count against the
            # unauthenticated allowance.
            with urllib.request.urlopen(f"{url}/moto-api/data.json", timeout=1.0):
                return
        except (urllib.error.URLError, OSError):
            time.sleep(0.05)
    raise RuntimeError(f"moto_server did not answer within {_STARTUP_BUDGET:g}s")


def _create_access_key(url: str) -> tuple[str, str]:
    import botocore.session

    session = botocore.session.get_session()
    iam = session.create_client(
        "iam",
        region_name=REGION,
        endpoint_url=url,
        aws_access_key_id="setup",
        aws_secret_access_key="setup",
    )
    try:
        iam.create_user(UserName="cloudkit-tests")
        iam.put_user_policy(
            UserName="cloudkit-tests", PolicyName="allow-all", PolicyDocument=_ALLOW_ALL
        )
        key = iam.create_access_key(UserName="cloudkit-tests")["AccessKey"]
    finally:
        iam.close()
    return key["AccessKeyId"], key["SecretAccessKey"]


@contextmanager
def run_moto_server() -> Iterator[MotoServer]:
    """Start moto's server (``moto.server.main``) on a free loopback port; stop it on exit."""
    port = _free_port()
    env = {
        **os.environ,
        "INITIAL_NO_AUTH_ACTION_COUNT": str(_SETUP_CALLS),
        # Keep the server's own AWS calls (none expected) away from any real account.
        "AWS_ACCESS_KEY_ID": "moto",
        "AWS_SECRET_ACCESS_KEY": "moto",
        "AWS_DEFAULT_REGION": REGION,
    }
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            [sys.executable, "-c", _GUARDED_SERVER, "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdin=subprocess.PIPE,
            stdout=log,
            stderr=log,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            try:
                _wait_until_up(url, process)
                access_key, secret_key = _create_access_key(url)
            except Exception:
                log.seek(0)
                sys.stderr.write(log.read()[-4000:].decode("utf-8", "replace"))
                raise
            yield MotoServer(port, access_key, secret_key)
        finally:
            assert process.stdin is not None
            process.stdin.close()
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=10)
