"""No secret in any repr, str, log line or exception message (DESIGN.md §6.4)."""

from __future__ import annotations

import io
import logging

import pytest

import cloudkit_trio as ck

SECRET = "wJalrXUtnFEMI-K7MDENG-bPxRfiCYEXAMPLEKEY"
TOKEN = "FQoGZXIvYXdzEJr-session-token-EXAMPLE"


class TestNoSecrets:
    def test_credentials_and_providers(self) -> None:
        """Credentials and the providers that hold them never show secrets."""
        creds = ck.Credentials("AKIDEXAMPLE", SECRET, TOKEN)
        for obj in (
            creds,
            ck.StaticAuthProvider(creds),
            ck.ChainAuthProvider(ck.StaticAuthProvider(creds)),
        ):
            for text in (repr(obj), str(obj)):
                assert SECRET not in text and TOKEN not in text

    def test_config_parameters(self) -> None:
        """Config parameters whose names look secret are hidden in repr()."""
        config = ck.CloudConfig(parameters={"vault_token": TOKEN, "api_key": SECRET, "bucket": "b"})
        text = repr(config)
        assert SECRET not in text and TOKEN not in text and "'bucket': 'b'" in text

    def test_logs_redact_secret_fields(self, caplog: pytest.LogCaptureFixture) -> None:
        """Loggers redact fields named like secrets even if a caller passes one."""
        caplog.set_level(logging.INFO, logger="cloudkit_trio")
        stream = io.StringIO()
        for logger in (ck.StdlibLogger(), ck.StructuredLogger(stream)):
            logger.info("request", authorization=f"AWS4 Signature={SECRET}", session_token=TOKEN)
        text = caplog.text + stream.getvalue() + repr(caplog.records[0].__dict__)
        assert SECRET not in text and TOKEN not in text

    async def test_exception_messages(self) -> None:
        """Errors raised from secret-bearing inputs do not echo the secret."""
        with pytest.raises(ck.ConfigError) as config_error:
            ck.CloudConfig(endpoint=f"https://AKID:{SECRET}@127.0.0.1")
        with pytest.raises(TypeError) as creds_error:
            ck.Credentials("AKID", SECRET, 1)  # type: ignore[arg-type]
        for error in (config_error.value, creds_error.value):
            assert SECRET not in str(error) and SECRET not in repr(error)
