"""Signing names and S3's rules: the table is held against the service models botocore ships."""

from __future__ import annotations

import json
from collections.abc import Iterator

import attrs
import botocore.session
import pytest

from cloudkit_trio.aws._signing_names import (
    _ALIASES,
    _BOTOCORE_SIGNING_NAMES,
    _S3V4_SERVICES,
    signing_name,
    uses_s3_rules,
)


@attrs.frozen
class Service:
    """What botocore says about one service."""

    signing_name: str
    signature_version: str | None


@pytest.fixture(scope="module")
def botocore_services() -> dict[str, Service]:
    # Loading every model takes seconds; the tests below share one pass.
    session = botocore.session.get_session()
    services = {}
    for name in session.get_available_services():
        model = session.get_service_model(name)
        # ServiceModel.signing_name: metadata.signingName, else the endpoint prefix.
        services[name] = Service(model.signing_name, model.signature_version)
    return services


def _signing_names_in(rules: object) -> Iterator[str]:
    """Every ``signingName`` an endpoint rule set's auth schemes name."""
    if isinstance(rules, dict):
        if isinstance(rules.get("signingName"), str):
            yield rules["signingName"]
        for value in rules.values():
            yield from _signing_names_in(value)
    elif isinstance(rules, list):
        for value in rules:
            yield from _signing_names_in(value)


class TestSigningName:
    def test_every_botocore_service(self, botocore_services: dict[str, Service]) -> None:
        """Each service botocore knows signs under the name its model gives."""
        ours = {name: signing_name(name) for name in botocore_services}
        theirs = {name: service.signing_name for name, service in botocore_services.items()}
        assert ours == theirs

    def test_table_lists_only_names_that_differ(
        self, botocore_services: dict[str, Service]
    ) -> None:
        """An entry is a service whose signing name is not its own (a newer botocore may add)."""
        for name, signs_as in _BOTOCORE_SIGNING_NAMES.items():
            assert signs_as != name
            if name in botocore_services:
                assert botocore_services[name].signing_name == signs_as

    def test_aliases(self, botocore_services: dict[str, Service]) -> None:
        """The short names people write map like botocore's own names for the service."""
        assert signing_name("sfn") == signing_name("stepfunctions") == "states"
        assert signing_name("elb") == signing_name("elbv2") == "elasticloadbalancing"
        assert signing_name("emr") == "elasticmapreduce"
        # An alias never hides a real service name.
        assert not set(_ALIASES) & set(botocore_services)

    @pytest.mark.parametrize("name", ["sqs", "s3", "execute-api", "my-private-api", "", "SESv2"])
    def test_unknown_and_own_names_map_to_themselves(self, name: str) -> None:
        """A name without an entry, known or not, is its own signing name."""
        assert signing_name(name) == name


class TestS3Rules:
    def test_the_s3v4_services(self, botocore_services: dict[str, Service]) -> None:
        """botocore's S3 signer signs s3 (chosen in its client code) and s3control (its model)."""
        s3v4 = {name for name, s in botocore_services.items() if s.signature_version == "s3v4"}
        assert s3v4 | {"s3"} == _S3V4_SERVICES
        # s3's model still names the retired signature; botocore overrides it for the client.
        assert botocore_services["s3"].signature_version == "s3"

    def test_the_s3_family(self) -> None:
        """S3's rules hold for every signing name the S3 clients' endpoint rules sign with."""
        loader = botocore.session.get_session().get_component("data_loader")
        family: set[str] = set()
        for name in _S3V4_SERVICES:
            rules = loader.load_service_model(name, "endpoint-rule-set-1")
            family.update(_signing_names_in(json.loads(json.dumps(rules))))
        assert family == {"s3", "s3-object-lambda", "s3-outposts", "s3express"}
        assert all(uses_s3_rules(name) for name in family)
        assert all(uses_s3_rules(signing_name(name)) for name in _S3V4_SERVICES)

    @pytest.mark.parametrize("name", ["sqs", "s3control", "s3outposts", "S3", "execute-api"])
    def test_other_signing_names_use_the_generic_rules(self, name: str) -> None:
        """Only signing names are matched: the service name s3control is not one."""
        assert not uses_s3_rules(name)
