"""The SigV4 signing name of each AWS service, and which of them sign by S3's rules.

Users name a service the way botocore's clients do (``"sesv2"``, ``"stepfunctions"``,
``"elbv2"``), but a signature's credential scope carries the service's *signing name*
(``"ses"``, ``"states"``, ``"elasticloadbalancing"``); sign with the wrong one and AWS answers
``SignatureDoesNotMatch`` or ``InvalidSignatureException``. Most services sign under their own
name, so only the exceptions are listed.

The table is data, copied from the service models botocore ships: for each service, the
model's ``metadata.signingName``, or its ``endpointPrefix`` when there is none (the rule
botocore's ``ServiceModel.signing_name`` follows), kept when it differs from the service
name. ``tests/aws/test_signing_names.py`` checks every entry, and every service botocore
knows, against the installed botocore, so a new service with its own signing name shows up
as a failing test rather than as a rejected signature.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

__all__ = ["signing_name", "uses_s3_rules"]

#: Service name -> signing name, for the services whose two names differ (botocore 1.44.8).
_BOTOCORE_SIGNING_NAMES: Final[Mapping[str, str]] = MappingProxyType(
    {
        "abuse-signal": "abuse",
        "accessanalyzer": "access-analyzer",
        "account-access-runtime": "account-access",
        "agent-registry-control": "agent-registry",
        "amp": "aps",
        "apigatewaymanagementapi": "execute-api",
        "apigatewayv2": "apigateway",
        "appconfigdata": "appconfig",
        "appintegrations": "app-integrations",
        "application-insights": "applicationinsights",
        "applicationcostprofiler": "application-cost-profiler",
        "backupsearch": "backup-search",
        "bedrock-agent": "bedrock",
        "bedrock-agent-runtime": "bedrock",
        "bedrock-agentcore-control": "bedrock-agentcore",
        "bedrock-data-automation": "bedrock",
        "bedrock-data-automation-runtime": "bedrock",
        "bedrock-runtime": "bedrock",
        "chime-sdk-identity": "chime",
        "chime-sdk-media-pipelines": "chime",
        "chime-sdk-meetings": "chime",
        "chime-sdk-messaging": "chime",
        "chime-sdk-voice": "chime",
        "cleanroomsml": "cleanrooms-ml",
        "cloudcontrol": "cloudcontrolapi",
        "cloudhsmv2": "cloudhsm",
        "cloudsearchdomain": "cloudsearch",
        "cloudwatch": "monitoring",
        "cloudwatchomni": "cloudwatch",
        "codeguruprofiler": "codeguru-profiler",
        "compute-optimizer-automation": "aco-automation",
        "connect-contact-lens": "connect",
        "connectcampaigns": "connect-campaigns",
        "connectcampaignsv2": "connect-campaigns",
        "connectcases": "cases",
        "connecthealth": "health-agent",
        "connectparticipant": "execute-api",
        "connectscheduling": "connect",
        "customer-profiles": "profile",
        "devops-agent": "aidevops",
        "docdb": "rds",
        "dynamodbstreams": "dynamodb",
        "efs": "elasticfilesystem",
        "elb": "elasticloadbalancing",
        "elbv2": "elasticloadbalancing",
        "elementalinference": "elemental-inference",
        "emr": "elasticmapreduce",
        "endusermessaging": "end-user-messaging",
        "eventbridgev2": "events",
        "forecastquery": "forecast",
        "greengrassv2": "greengrass",
        "iam-toolbox": "iam",
        "iot-data": "iotdata",
        "iot-managed-integrations": "iotmanagedintegrations",
        "iotsecuretunneling": "IoTSecuredTunneling",
        "ivs-realtime": "ivs",
        "keyspaces": "cassandra",
        "keyspacesstreams": "cassandra",
        "kinesis-video-archived-media": "kinesisvideo",
        "kinesis-video-media": "kinesisvideo",
        "kinesis-video-signaling": "kinesisvideo",
        "kinesis-video-webrtc-storage": "kinesisvideo",
        "kinesisanalyticsv2": "kinesisanalytics",
        "lambda-core": "lambda",
        "lambda-microvms": "lambda",
        "lambda-web": "lambda",
        "launch-wizard": "launchwizard",
        "lex-models": "lex",
        "lex-runtime": "lex",
        "lexv2-models": "lex",
        "lexv2-runtime": "lex",
        "location": "geo",
        "mailmanager": "ses",
        "marketplace-agreement": "aws-marketplace",
        "marketplace-catalog": "aws-marketplace",
        "marketplace-deployment": "aws-marketplace",
        "marketplace-discovery": "aws-marketplace",
        "marketplace-entitlement": "aws-marketplace",
        "marketplace-reporting": "aws-marketplace",
        "mediastore-data": "mediastore",
        "meteringmarketplace": "aws-marketplace",
        "migration-hub-refactor-spaces": "refactor-spaces",
        "migrationhub-config": "mgh",
        "migrationhuborchestrator": "migrationhub-orchestrator",
        "migrationhubstrategy": "migrationhub-strategy",
        "mturk": "mturk-requester",
        "mwaa": "airflow",
        "mwaa-serverless": "airflow-serverless",
        "neptune": "rds",
        "neptunedata": "neptune-db",
        "notificationscontacts": "notifications-contacts",
        "opensearch": "es",
        "opensearchmemory": "osm",
        "opensearchserverless": "aoss",
        "partnercentral-revenue-measurement": "partnercentral",
        "payment-cryptography-data": "payment-cryptography",
        "personalize-events": "personalize",
        "personalize-runtime": "personalize",
        "pinpoint": "mobiletargeting",
        "pinpoint-email": "ses",
        "pinpoint-sms-voice": "sms-voice",
        "pinpoint-sms-voice-v2": "sms-voice",
        "pricing-plan-manager": "pricingplanmanager",
        "qconnect": "wisdom",
        "resiliencehubv2": "resiliencehub",
        "resourcegroupstaggingapi": "tagging",
        "s3control": "s3",
        "s3outposts": "s3-outposts",
        "sagemaker-a2i-runtime": "sagemaker",
        "sagemaker-edge": "sagemaker",
        "sagemaker-featurestore-runtime": "sagemaker",
        "sagemaker-gateway-runtime": "sagemaker",
        "sagemaker-inference-router-runtime": "sagemaker",
        "sagemaker-metrics": "sagemaker",
        "sagemaker-runtime": "sagemaker",
        "sagemakerjobruntime": "sagemaker",
        "sagemakertrainingsessionruntime": "sagemaker",
        "service-quotas": "servicequotas",
        "servicecatalog-appregistry": "servicecatalog",
        "sesv2": "ses",
        "signer-data": "signer",
        "simpledbv2": "sdb",
        "socialmessaging": "social-messaging",
        "sso": "awsssoportal",
        "sso-admin": "sso",
        "sso-oidc": "sso-oauth",
        "stepfunctions": "states",
        "supplychain": "scn",
        "support-app": "supportapp",
        "taxsettings": "tax",
        "timestream-query": "timestream",
        "timestream-write": "timestream",
        "voice-id": "voiceid",
        "workspaces-thin-client": "thinclient",
    }
)

# Names people write that are not botocore service names: the service's short name in its
# ARNs and CLI docs. ("elb" and "emr", the other usual suspects, are botocore's own names
# and already in the table above.)
_ALIASES: Final[Mapping[str, str]] = MappingProxyType({"sfn": "states"})

# Both in one mapping, so that a lookup is a single ``get``.
_SIGNING_NAMES: Final[Mapping[str, str]] = MappingProxyType({**_BOTOCORE_SIGNING_NAMES, **_ALIASES})

#: The clients botocore signs with its S3 signer (``S3SigV4Auth``, signature version
#: ``s3v4``): ``s3control`` says so in its model, ``s3`` is chosen in botocore's client code.
_S3V4_SERVICES: Final = frozenset({"s3", "s3control"})

# The signing names those two clients' endpoint rules sign with. Requests signed under any
# of them follow S3's rules: the path is signed exactly as sent (an object key may hold "//"
# or "%2F"), and X-Amz-Content-SHA256 travels on every request.
_S3_FAMILY: Final = frozenset({"s3", "s3-object-lambda", "s3-outposts", "s3express"})


def signing_name(service: str) -> str:
    """The name ``service`` signs its requests under: ``"sesv2"`` -> ``"ses"``.

    ``service`` is the name as an ``Operation`` or a botocore client spells it. A name the
    table does not list, which includes every service whose signing name is its own name
    and any service newer than the table, is returned unchanged.

    .. versionadded:: 0.2.0
    """
    return _SIGNING_NAMES.get(service, service)


def uses_s3_rules(signing_name: str) -> bool:
    """Whether requests signed under ``signing_name`` follow S3's rules, not the generic ones.

    True for the S3 family (``s3``, ``s3-object-lambda``, ``s3-outposts``, ``s3express``):
    the path is signed exactly as sent and every request carries ``X-Amz-Content-SHA256``.
    Every other service removes dot segments from the signed path, encodes it twice, and
    sees the payload hash only inside the signature. Takes a signing name, not a service
    name: ``uses_s3_rules(signing_name("s3control"))`` is true.

    .. versionadded:: 0.2.0
    """
    return signing_name in _S3_FAMILY
