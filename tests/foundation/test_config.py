"""CloudConfig validation and the environment precedence."""

from __future__ import annotations

import math

import pytest

import cloudkit_trio as ck


class TestDefaults:
    def test_defaults(self) -> None:
        """The defaults are us-east-1, 30 s per attempt, 10 s to connect, 3 retries."""
        config = ck.CloudConfig()
        assert config.region == "us-east-1"
        assert config.endpoint is None
        assert (config.timeout, config.connect_timeout, config.max_retries) == (30.0, 10.0, 3)
        assert dict(config.parameters) == {}

    def test_frozen_and_keyword_only(self) -> None:
        """A config cannot be changed after construction nor built positionally."""
        config = ck.CloudConfig()
        with pytest.raises(AttributeError):
            config.region = "eu-west-1"  # type: ignore[misc]
        with pytest.raises(TypeError):
            ck.CloudConfig("eu-west-1")  # type: ignore[misc]

    def test_region_object_is_accepted(self) -> None:
        """A Region may be passed where a region code is expected."""
        assert ck.CloudConfig(region=ck.Region.aws("eu-west-1")).region == "eu-west-1"

    def test_parameters_are_read_only(self) -> None:
        """Provider parameters are frozen with the config."""
        config = ck.CloudConfig(parameters={"bucket": "b"})
        with pytest.raises(TypeError):
            config.parameters["bucket"] = "c"  # type: ignore[index]


class TestValidation:
    @pytest.mark.parametrize(
        ("field", "value"),
        [
            ("timeout", -1.0),
            ("timeout", 0),
            ("timeout", math.inf),
            ("timeout", math.nan),
            ("timeout", "30"),
            ("timeout", True),
            ("connect_timeout", -0.5),
            ("max_retries", -1),
            ("max_retries", 1.5),
            ("region", "US East 1"),
            ("region", ""),
            ("region", "us_east_1"),
            ("endpoint", "localhost:9000"),
            ("endpoint", "ftp://127.0.0.1"),
            ("endpoint", "http://"),
            ("endpoint", "http://127.0.0.1:notaport"),
            ("endpoint", "http://127.0.0.1/?x=1"),
            ("parameters", {"k": 1}),
        ],
    )
    def test_bad_values_raise_config_error_naming_field_and_value(
        self, field: str, value: object
    ) -> None:
        """Every invalid value raises ConfigError whose message names the field and value."""
        with pytest.raises(ck.ConfigError) as info:
            ck.CloudConfig(**{field: value})
        assert info.value.field == field
        assert field in str(info.value)
        if field != "parameters" and not isinstance(value, bool | float | int):
            # A URL that cannot be parsed is shown as "<unparsable URL>" (it might hold a
            # secret), with the offending part named.
            shown = (repr(value), type(value).__name__, "'notaport'")
            assert any(text in str(info.value) for text in shown)

    def test_config_error_is_catchable_as_value_error(self) -> None:
        """Misuse can be caught as the builtin ValueError."""
        with pytest.raises(ValueError, match="timeout"):
            ck.CloudConfig(timeout=-1)

    def test_endpoint_with_userinfo_is_rejected_without_echoing_the_password(self) -> None:
        """Credentials in an endpoint URL are refused, and the password is not echoed."""
        with pytest.raises(ck.ConfigError) as info:
            ck.CloudConfig(endpoint="http://user:hunter2@127.0.0.1:9000")
        assert "hunter2" not in str(info.value)
        assert "hunter2" not in repr(info.value.value)

    @pytest.mark.parametrize(
        "endpoint",
        ["http://127.0.0.1:9000", "https://s3.eu-west-1.amazonaws.com", "http://[::1]:80"],
    )
    def test_good_endpoints(self, endpoint: str) -> None:
        """Absolute http(s) URLs with a host are accepted."""
        assert ck.CloudConfig(endpoint=endpoint).endpoint == endpoint


class TestFromEnv:
    def test_defaults_when_environment_is_empty(self) -> None:
        """With nothing set, from_env gives the defaults."""
        assert ck.CloudConfig.from_env(environ={}) == ck.CloudConfig()

    def test_provider_variables(self) -> None:
        """AWS_REGION, AWS_ENDPOINT_URL and AWS_MAX_ATTEMPTS are read for AWS."""
        env = {
            "AWS_REGION": "eu-west-1",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:9000",
            "AWS_MAX_ATTEMPTS": "5",
        }
        config = ck.CloudConfig.from_env(ck.ProviderType.AWS, environ=env)
        assert config.region == "eu-west-1"
        assert config.endpoint == "http://127.0.0.1:9000"
        assert config.max_retries == 4

    def test_aws_default_region_is_a_fallback(self) -> None:
        """AWS_DEFAULT_REGION is used when AWS_REGION is not set."""
        config = ck.CloudConfig.from_env(environ={"AWS_DEFAULT_REGION": "ap-south-1"})
        assert config.region == "ap-south-1"

    def test_cloud_variables_win_over_provider_variables(self) -> None:
        """CLOUD_* variables take precedence over the provider's own."""
        env = {
            "AWS_REGION": "eu-west-1",
            "CLOUD_REGION": "us-west-2",
            "AWS_ENDPOINT_URL": "http://127.0.0.1:1",
            "CLOUD_ENDPOINT": "http://127.0.0.1:2",
            "AWS_MAX_ATTEMPTS": "9",
            "CLOUD_MAX_RETRIES": "1",
            "CLOUD_TIMEOUT": "12.5",
            "CLOUD_CONNECT_TIMEOUT": "2",
        }
        config = ck.CloudConfig.from_env(environ=env)
        assert config.region == "us-west-2"
        assert config.endpoint == "http://127.0.0.1:2"
        assert (config.max_retries, config.timeout, config.connect_timeout) == (1, 12.5, 2.0)

    def test_explicit_arguments_win_over_everything(self) -> None:
        """Keyword overrides beat every variable."""
        env = {"CLOUD_REGION": "us-west-2", "AWS_REGION": "eu-west-1", "CLOUD_TIMEOUT": "5"}
        config = ck.CloudConfig.from_env(environ=env, region="eu-central-1", timeout=7.0)
        assert (config.region, config.timeout) == ("eu-central-1", 7.0)

    def test_other_providers_do_not_read_aws_variables(self) -> None:
        """Provider variables belong to their provider only."""
        env = {"AWS_REGION": "eu-west-1", "OCI_REGION": "eu-frankfurt-1"}
        assert ck.CloudConfig.from_env("oracle", environ=env).region == "eu-frankfurt-1"
        assert ck.CloudConfig.from_env(ck.ProviderType.AZURE, environ=env).region == "us-east-1"

    def test_empty_variables_count_as_unset(self) -> None:
        """An empty variable falls through to the next source."""
        env = {"CLOUD_REGION": "  ", "AWS_REGION": "eu-west-1"}
        assert ck.CloudConfig.from_env(environ=env).region == "eu-west-1"

    @pytest.mark.parametrize(
        ("name", "raw"),
        [
            ("CLOUD_TIMEOUT", "abc"),
            ("CLOUD_TIMEOUT", "-1"),
            ("CLOUD_CONNECT_TIMEOUT", "0"),
            ("CLOUD_MAX_RETRIES", "three"),
            ("CLOUD_MAX_RETRIES", "-2"),
            ("AWS_MAX_ATTEMPTS", "x"),
            ("CLOUD_REGION", "Not A Region"),
        ],
    )
    def test_malformed_variables_name_the_variable(self, name: str, raw: str) -> None:
        """A malformed variable raises ConfigError naming the variable and its value."""
        with pytest.raises(ck.ConfigError) as info:
            ck.CloudConfig.from_env(environ={name: raw})
        assert name in str(info.value) and repr(raw) in str(info.value)
        assert info.value.field == name

    def test_malformed_endpoint_variable(self) -> None:
        """A bad endpoint from the environment fails validation naming the field."""
        with pytest.raises(ck.ConfigError, match="endpoint"):
            ck.CloudConfig.from_env(environ={"CLOUD_ENDPOINT": "not a url"})

    def test_unknown_override(self) -> None:
        """An override that is not a field is refused."""
        with pytest.raises(ck.ConfigError, match="regoin"):
            ck.CloudConfig.from_env(environ={}, regoin="eu-west-1")

    def test_reads_os_environ_by_default(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Without environ=, the process environment is read."""
        monkeypatch.setenv("CLOUD_REGION", "sa-east-1")
        assert ck.CloudConfig.from_env().region == "sa-east-1"


class TestProviderAndRegion:
    def test_lowercase_display(self) -> None:
        """Providers display in lowercase."""
        assert [str(p) for p in ck.ProviderType] == ["aws", "azure", "gcp", "oracle"]

    def test_parse(self) -> None:
        """Providers parse case-insensitively and reject unknown names."""
        assert ck.ProviderType.parse("AWS") is ck.ProviderType.AWS
        with pytest.raises(ck.ConfigError, match="'ibm'"):
            ck.ProviderType.parse("ibm")

    def test_region_constructors(self) -> None:
        """Region constructors tag the provider; str() is the code."""
        assert ck.Region.aws().code == "us-east-1"
        assert ck.Region.azure("westeurope").provider is ck.ProviderType.AZURE
        assert ck.Region.gcp("europe-west4").provider is ck.ProviderType.GCP
        assert str(ck.Region.oracle("eu-frankfurt-1")) == "eu-frankfurt-1"
        with pytest.raises(ck.ConfigError):
            ck.Region.aws("EU WEST")
