"""The one masking function: names, URLs, echoed text and log-line control characters."""

from __future__ import annotations

import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from cloudkit_trio._masking import (
    MASK,
    escape_controls,
    is_secret_name,
    mask_fields,
    mask_headers,
    mask_text,
    mask_url,
    secret_values,
)


class TestNames:
    @pytest.mark.parametrize(
        "name",
        [
            "Authorization",
            "X-Amz-Security-Token",
            "X-Api-Key",
            "X-Auth-Token",
            "x-amz-server-side-encryption-customer-key",
            "X-Amz-Signature",
            "access_token",
            "client_secret",
            "password",
        ],
    )
    def test_secret_names(self, name: str) -> None:
        """Headers, fields and parameters that hold secrets are recognised by name."""
        assert is_secret_name(name)

    @pytest.mark.parametrize(
        "name", ["X-Amz-Date", "X-Amz-Content-SHA256", "X-Amz-Credential", "Content-Type"]
    )
    def test_public_names(self, name: str) -> None:
        """Names that carry no secret (the access key id is not one) stay readable."""
        assert not is_secret_name(name)

    def test_headers_and_fields(self) -> None:
        """Mappings keep their keys and lose their secret values."""
        assert mask_headers({"X-Api-Key": "k", "Accept": "a"}) == {"X-Api-Key": MASK, "Accept": "a"}
        assert mask_fields({"token": "t", "error": "token=abcd", "n": 3}) == {
            "token": MASK,
            "error": f"token={MASK}",
            "n": 3,
        }


class TestUrls:
    def test_presigned_url(self) -> None:
        """A presigned URL keeps everything but its signature and session token."""
        url = (
            "https://b.s3.amazonaws.com/k?X-Amz-Credential=AKID%2F20250101"
            "&X-Amz-Signature=abcdef&X-Amz-Security-Token=tok"
        )
        masked = mask_url(url)
        assert "abcdef" not in masked and "tok" not in masked
        assert "X-Amz-Credential=AKID" in masked

    def test_user_info(self) -> None:
        """User-info is masked, the host and port kept."""
        assert mask_url("http://user:pw@host:9000/p") == f"http://{MASK}@host:9000/p"

    def test_plain_url_is_unchanged(self) -> None:
        """A URL with nothing secret comes back as it was."""
        assert mask_url("http://host/p?a=1&b=2") == "http://host/p?a=1&b=2"

    def test_unparsable(self) -> None:
        """A URL that cannot be parsed is not echoed."""
        assert mask_url("http://[::1/x?token=abc") == "<unparsable URL>"


class TestText:
    def test_echoed_secrets(self) -> None:
        """Secrets a server quotes back are masked in every usual shape."""
        text = mask_text(
            'access_token=abc123; {"password": "hunter2"} X-Vault-Token: s.abcdef '
            "Authorization: Bearer eyJhbGciOi"
        )
        for secret in ("abc123", "hunter2", "s.abcdef", "eyJhbGciOi"):
            assert secret not in text

    @given(
        secret=st.text(alphabet=st.characters(codec="ascii", categories=["L", "N"]), min_size=4),
        before=st.text(max_size=40),
        after=st.text(max_size=40),
    )
    def test_known_secret_never_survives(self, secret: str, before: str, after: str) -> None:
        """A known secret's value is masked wherever it stands in the text."""
        assert secret not in mask_text(before + secret + after, [secret]).replace(MASK, "")

    def test_controls_are_escaped(self) -> None:
        """CR, LF and NUL cannot start a forged log line."""
        assert escape_controls("code\nforged\r\x00") == "code\\nforged\\r\\x00"
        assert escape_controls("plain") == "plain"

    def test_unicode_line_breaks_are_escaped(self) -> None:
        """NEL and the Unicode line and paragraph separators are escaped too."""
        assert escape_controls("a\x85b\u2028c\u2029d") == "a\\x85b\\u2028c\\u2029d"

    def test_xml_elements_and_quoted_tokens(self) -> None:
        """`<SignatureProvided>x</...>` and Vault's `invalid token "x"` are masked."""
        text = mask_text(
            '<SignatureProvided>sig12345</SignatureProvided> invalid token "hvs.abcdef"'
        )
        assert "sig12345" not in text and "hvs.abcdef" not in text
        assert "<SignatureProvided>***</SignatureProvided>" in text

    def test_longest_known_secret_first(self) -> None:
        """A secret that contains another is masked whole, not in pieces."""
        assert mask_text("x abcdefgh y", ["abcd", "abcdefgh"]) == f"x {MASK} y"

    @pytest.mark.parametrize(
        "hostile", ["a" * 8000, "token" * 2000, "x" * 8000 + "token", "token=" + " " * 8000]
    )
    def test_linear_time_on_hostile_text(self, hostile: str) -> None:
        """Masking an error body of thousands of word characters takes milliseconds, not
        the seconds a backtracking pattern took (a server chooses the body)."""
        start = time.perf_counter()
        mask_text(hostile)
        assert time.perf_counter() - start < 0.5


class TestSecretValues:
    def test_headers_and_their_parts(self) -> None:
        """A request's secret headers, their credential and SigV4 signature, and the secret
        query parameters of its URL."""
        found = secret_values(
            {
                "Authorization": "AWS4-HMAC-SHA256 Credential=AKID/x, SignedHeaders=host, "
                "Signature=deadbeef",
                "X-Amz-Security-Token": "tok-1234",
                "Accept": "application/json",
            },
            "https://h/k?X-Amz-Signature=cafe1234&part=1",
        )
        assert {"deadbeef", "tok-1234", "cafe1234"} <= set(found)
        assert "application/json" not in found and "AKID/x" not in found
        assert "eyJabc" in secret_values([("Authorization", "Bearer eyJabc")])

    def test_nested_fields_and_objects(self) -> None:
        """Tags dicts are masked by name; other objects are logged as their masked str()."""
        masked = mask_fields({"tags": {"token": "t", "ok": "v"}, "cause": ValueError("token=zz")})
        assert masked == {"tags": {"token": MASK, "ok": "v"}, "cause": f"token={MASK}"}
