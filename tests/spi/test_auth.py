"""AuthProvider implementations: environment, static, chain."""

from __future__ import annotations

import datetime as dt

import pytest

import cloudkit_trio as ck


class TestEnvAuthProvider:
    async def test_reads_cloud_variables_first(self) -> None:
        """CLOUD_* variables win over the AWS ones."""
        env = {
            "CLOUD_ACCESS_KEY": "ck", "CLOUD_SECRET_KEY": "cs", "CLOUD_SESSION_TOKEN": "ct",
            "AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "as", "AWS_SESSION_TOKEN": "at",
        }  # fmt: skip
        creds = await ck.EnvAuthProvider(env).get_credentials()
        assert (creds.access_key, creds.secret_key, creds.session_token) == ("ck", "cs", "ct")

    async def test_falls_back_to_aws_variables(self) -> None:
        """AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and AWS_SESSION_TOKEN are read too."""
        env = {"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "as", "AWS_SESSION_TOKEN": "at"}
        creds = await ck.EnvAuthProvider(env).get_credentials()
        assert (creds.access_key, creds.secret_key, creds.session_token) == ("ak", "as", "at")

    @pytest.mark.parametrize(
        ("env", "named"),
        [
            (
                {},
                [
                    "CLOUD_ACCESS_KEY or AWS_ACCESS_KEY_ID",
                    "CLOUD_SECRET_KEY or AWS_SECRET_ACCESS_KEY",
                ],
            ),
            ({"AWS_ACCESS_KEY_ID": "ak"}, ["CLOUD_SECRET_KEY or AWS_SECRET_ACCESS_KEY"]),
            (
                {"CLOUD_ACCESS_KEY": "", "AWS_SECRET_ACCESS_KEY": "s"},
                ["CLOUD_ACCESS_KEY or AWS_ACCESS_KEY_ID"],
            ),
        ],
    )
    async def test_missing_keys_name_the_variables(
        self, env: dict[str, str], named: list[str]
    ) -> None:
        """A missing or empty key raises MissingCredentials naming what was looked for."""
        with pytest.raises(ck.MissingCredentials) as info:
            await ck.EnvAuthProvider(env).get_credentials()
        for text in named:
            assert text in str(info.value)

    async def test_missing_secret_is_not_echoed(self) -> None:
        """The error for a missing secret does not echo the access key's neighbours."""
        with pytest.raises(ck.MissingCredentials) as info:
            await ck.EnvAuthProvider({"AWS_SECRET_ACCESS_KEY": "s3cr3t"}).get_credentials()
        assert "s3cr3t" not in str(info.value)

    async def test_default_methods(self) -> None:
        """refresh_credentials fetches again; is_valid reports obtainability."""
        env = {"AWS_ACCESS_KEY_ID": "ak", "AWS_SECRET_ACCESS_KEY": "as"}
        provider = ck.EnvAuthProvider(env)
        assert (await provider.refresh_credentials()).access_key == "ak"
        assert await provider.is_valid()
        assert not await ck.EnvAuthProvider({}).is_valid()

    async def test_reads_process_environment(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without an explicit mapping, os.environ is read at each call."""
        monkeypatch.setenv("CLOUD_ACCESS_KEY", "ak")
        monkeypatch.setenv("CLOUD_SECRET_KEY", "as")
        assert (await ck.EnvAuthProvider().get_credentials()).access_key == "ak"


class TestStaticAndChain:
    async def test_static(self) -> None:
        """StaticAuthProvider returns what it was given; expired ones are not valid."""
        creds = ck.Credentials("AKID", "SECRET")
        assert await ck.StaticAuthProvider(creds).get_credentials() is creds
        expired = ck.Credentials(
            "AKID", "SECRET", expires_at=dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
        )
        assert not await ck.StaticAuthProvider(expired).is_valid()

    def test_static_needs_credentials(self) -> None:
        """StaticAuthProvider refuses anything but Credentials."""
        with pytest.raises(TypeError):
            ck.StaticAuthProvider(("AKID", "SECRET"))  # type: ignore[arg-type]

    async def test_first_provider_that_yields_wins(self) -> None:
        """The chain returns the first provider's credentials that succeed."""
        chain = ck.ChainAuthProvider(
            ck.EnvAuthProvider({}),
            ck.StaticAuthProvider(ck.Credentials("second", "S")),
            ck.StaticAuthProvider(ck.Credentials("third", "S")),
        )
        assert (await chain.get_credentials()).access_key == "second"

    async def test_all_failing_lists_each_reason(self) -> None:
        """When every provider fails, the error lists each provider and why."""

        class Broken(ck.AuthProvider):
            async def get_credentials(self) -> ck.Credentials:
                raise ck.TokenRefreshFailed("vault unreachable")

            def __repr__(self) -> str:
                return "Broken()"

        chain = ck.ChainAuthProvider(ck.EnvAuthProvider({}), Broken())
        with pytest.raises(ck.MissingCredentials) as info:
            await chain.get_credentials()
        text = str(info.value)
        assert "EnvAuthProvider()" in text and "AWS_ACCESS_KEY_ID" in text
        assert "Broken(): vault unreachable" in text
        assert isinstance(info.value.__cause__, ExceptionGroup)
        assert len(info.value.__cause__.exceptions) == 2

    async def test_refresh_goes_to_the_last_source(self) -> None:
        """A refresh asks the provider that answered last, falling back to the chain."""
        calls: list[str] = []

        class Counting(ck.AuthProvider):
            def __init__(self, name: str, fail_refresh: bool = False) -> None:
                self.name, self.fail_refresh = name, fail_refresh

            async def get_credentials(self) -> ck.Credentials:
                calls.append(f"get:{self.name}")
                return ck.Credentials(self.name, "S")

            async def refresh_credentials(self) -> ck.Credentials:
                calls.append(f"refresh:{self.name}")
                if self.fail_refresh:
                    raise ck.TokenRefreshFailed("gone")
                return ck.Credentials(self.name, "S")

        chain = ck.ChainAuthProvider(Counting("a", fail_refresh=True), Counting("b"))
        await chain.get_credentials()
        creds = await chain.refresh_credentials()
        assert calls == ["get:a", "refresh:a", "refresh:a", "refresh:b"]
        assert creds.access_key == "b"

    def test_chain_validates(self) -> None:
        """A chain needs at least one AuthProvider."""
        with pytest.raises(ValueError, match="at least one"):
            ck.ChainAuthProvider()
        with pytest.raises(TypeError):
            ck.ChainAuthProvider("env")  # type: ignore[arg-type]

    def test_protocol_is_runtime_checkable(self) -> None:
        """Built-in providers satisfy the AuthProvider protocol."""
        assert isinstance(ck.EnvAuthProvider(), ck.AuthProvider)
