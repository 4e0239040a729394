"""Credentials: frozen, expiring, and never showing their secrets."""

from __future__ import annotations

import datetime as dt

import pytest

import cloudkit_trio as ck

T0 = dt.datetime(2026, 1, 1, 12, 0, tzinfo=dt.UTC)


class TestCredentials:
    def test_positional_construction(self) -> None:
        """Credentials(access_key, secret_key, session_token=None, expires_at=None)."""
        creds = ck.Credentials("AKID", "SECRET")
        assert (creds.access_key, creds.secret_key) == ("AKID", "SECRET")
        assert creds.session_token is None and creds.expires_at is None

    def test_frozen(self) -> None:
        """Credentials cannot be mutated."""
        with pytest.raises(AttributeError):
            ck.Credentials("AKID", "SECRET").secret_key = "x"  # type: ignore[misc]

    def test_repr_and_str_hide_secret_and_token(self) -> None:
        """repr() and str() never show the secret key or the session token."""
        creds = ck.Credentials("AKID", "s3cr3t-value", "t0k3n-value", T0)
        for text in (repr(creds), str(creds), f"{creds}", repr([creds])):
            assert "s3cr3t-value" not in text and "t0k3n-value" not in text
            assert "AKID" in text and "2026-01-01T12:00:00+00:00" in text

    def test_expiry(self) -> None:
        """is_expired compares expires_at with now plus skew."""
        creds = ck.Credentials("AKID", "SECRET", expires_at=T0)
        assert not creds.is_expired(T0 - dt.timedelta(seconds=61), skew=60)
        assert creds.is_expired(T0 - dt.timedelta(seconds=59), skew=60)
        assert creds.is_expired(T0)
        assert not ck.Credentials("AKID", "SECRET").is_expired(T0, skew=1e6)

    def test_expiry_defaults_to_the_current_time(self) -> None:
        """Without now, the current UTC time is used."""
        past = ck.Credentials("AKID", "SECRET", expires_at=dt.datetime.now(dt.UTC))
        assert past.is_expired()

    @pytest.mark.parametrize(
        ("args", "error"),
        [
            (("", "SECRET"), ValueError),
            (("AKID", ""), ValueError),
            ((None, "SECRET"), TypeError),
            (("AKID", "SECRET", 5), TypeError),
            (("AKID", "SECRET", None, "2026-01-01"), TypeError),
            (("AKID", "SECRET", None, dt.datetime(2026, 1, 1)), ValueError),
        ],
    )
    def test_bad_arguments(self, args: tuple[object, ...], error: type[Exception]) -> None:
        """Empty keys, wrong types and naive expiry datetimes are refused."""
        with pytest.raises(error):
            ck.Credentials(*args)  # type: ignore[arg-type]

    def test_bad_argument_messages_do_not_echo_secrets(self) -> None:
        """Errors about a bad token never echo other secret values."""
        with pytest.raises(TypeError) as info:
            ck.Credentials("AKID", "s3cr3t", 12345)  # type: ignore[arg-type]
        assert "s3cr3t" not in str(info.value)
