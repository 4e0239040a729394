"""``--s3``: every operation puts its own object, and the run's objects are listed after it.

Against the fake S3 (:class:`~cloudkit_trio.testing.FakeS3` behind a faulty
:class:`~cloudkit_trio.testing.FakeEndpoint`, SigV4 with credentials from the fake Vault),
an object exists exactly when its put was answered 200, so ``listed == uploaded`` must
hold. Against ``--endpoint`` (AWS, MinIO, moto: credentials from the default AWS chain)
it is reported only, since others may write to your bucket.
"""

from __future__ import annotations

import math
import secrets
import time
from typing import TYPE_CHECKING, Any, Final

import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import S3, S3Operations, default_aws_chain
from cloudkit_trio.testing import EndpointFaults, FakeEndpoint, FakeRequest, FakeS3, FaultPlan

from ._report import Check
from ._scenario import DemoError, Endpoint, Settings, Target, endpoint_key, start_vault

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["S3Workload", "start_s3"]

REGION: Final = "us-east-1"
REGION_VARIABLES: Final = ("AWS_REGION", "AWS_DEFAULT_REGION")


class S3Workload:
    """One run's puts to ``bucket`` under a prefix of its own, and the listing after."""

    def __init__(self, s3: S3Operations, bucket: str, operations: int, *, binding: bool) -> None:
        self.where = s3
        self.bucket = bucket
        self.prefix = (
            f"demo/{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}/"
        )
        self.page_size = min(max(math.ceil(operations / 10), 1), 1000)
        self.binding = binding
        self._s3: S3 | None = None

    def operation(self, n: int) -> ck.Operation:
        body = f"cloudkit-trio demo, operation {n}\n".encode()
        return self.where.put_object(
            self.bucket, f"{self.prefix}{n:06d}", body, content_type="text/plain"
        )

    async def prepare(self, cloud: ck.Cloud) -> None:
        """Make sure the bucket exists (a listing's errors carry S3's code, a HEAD's not)."""
        w = self.where
        s3 = S3(cloud, region=w.region, endpoint=w.endpoint, addressing=w.addressing)
        try:
            try:
                await anext(s3.list_objects_v2(self.bucket, prefix=self.prefix, page_size=1))
            except ck.NotFound:
                await s3.create_bucket(self.bucket)
        except ck.AlreadyExists as error:
            if error.code != "BucketAlreadyOwnedByYou":
                raise DemoError(
                    f"bucket {self.bucket!r} belongs to someone else; choose another --bucket"
                ) from None
        except ck.CloudError as error:
            raise DemoError(
                f"cannot use bucket {self.bucket!r} at {w.endpoint}: "
                f"{type(error).__name__}: {error}"
            ) from None
        self._s3 = s3

    async def finish(self, cloud: ck.Cloud, succeeded: int) -> tuple[Check, dict[str, Any]]:
        """List the run's prefix and compare it with the puts that succeeded."""
        assert self._s3 is not None, "finish() comes after prepare()"
        listed = pages = 0
        failure: str | None = None
        try:
            async for page in self._s3.list_objects_v2(
                self.bucket, prefix=self.prefix, page_size=self.page_size
            ):
                pages += 1
                listed += len(page.objects)
        except ck.CloudError as error:
            failure = f"{type(error).__name__}: {error}"
        holds = failure is None and listed == succeeded
        statement = (
            f"listed == uploaded: {listed} == {succeeded} "
            f"({pages} pages of {self.bucket}/{self.prefix})"
            if failure is None
            else f"listed == uploaded: the listing failed ({failure})"
        )
        document = {
            "bucket": self.bucket,
            "prefix": self.prefix,
            "uploaded": succeeded,
            "listed": None if failure is not None else listed,
            "pages": pages,
            "listing_error": failure,
        }
        check = Check(
            name="listed_equals_uploaded", holds=holds, statement=statement, binding=self.binding
        )
        return check, document


def _put_key(request: FakeRequest) -> str | None:
    # Only puts fail, and by the operation's number: the run's prefix changes from run to
    # run, the schedule should not.
    if request.method != "PUT" or request.path.count("/") < 3:
        return None
    return request.path.rpartition("/")[2]


async def start_s3(nursery: trio.Nursery, settings: Settings, environ: Mapping[str, str]) -> Target:
    """The fake S3 (no ``--endpoint``) or yours, and the workload for it."""
    if settings.endpoint is not None:
        await trio.lowlevel.checkpoint()
        region = next(
            (environ[v].strip() for v in REGION_VARIABLES if environ.get(v, "").strip()), REGION
        )
        try:
            where = S3Operations(region=region, endpoint=settings.endpoint)
        except ck.ConfigError as error:
            raise DemoError(f"cannot drive S3 at {settings.endpoint}: {error}") from None
        workload = S3Workload(where, settings.bucket_name, settings.operations, binding=False)
        url = where.object_url(settings.bucket_name, "x")
        return Target(
            mode="s3-endpoint",
            title=f"S3 at {where.endpoint}, bucket {workload.bucket}",
            endpoints=(Endpoint(name="s3", url=endpoint_key(url)),),
            operation=workload.operation,
            auth_provider=default_aws_chain(environ=environ),
            signer=S3.signer(region),
            notes=(
                "no faults injected: the endpoint's own behaviour is what you see",
                f"puts under {workload.prefix} in bucket {workload.bucket}, listed after the run",
                f"region {region}; credentials from the default AWS chain",
            ),
            workload=workload,
        )
    plan = FaultPlan(
        seed=settings.seed,
        endpoints={"s3": EndpointFaults(rate=settings.fault_rate, slow_down=True)},
    )
    vault = await start_vault(nursery, settings)
    fake = FakeEndpoint("s3", plan=plan, app=FakeS3(), vault=vault, fault_key=_put_key)
    url = await nursery.start(fake.serve)
    workload = S3Workload(
        S3Operations(region=REGION, endpoint=url),
        settings.bucket_name,
        settings.operations,
        binding=True,
    )
    return Target(
        mode="s3-embedded",
        title=f"a fake S3 endpoint with injected faults, bucket {workload.bucket}",
        endpoints=(Endpoint(name="s3", url=url, fake=fake),),
        operation=workload.operation,
        auth_provider=vault.auth_provider(timeout=settings.timing.attempt_timeout),
        signer=S3.signer(REGION),
        notes=(
            f"puts under {workload.prefix}, SigV4-signed with short-lived credentials "
            "from a fake Vault",
            f"random faults on {settings.fault_rate:.0%} of puts (500, 503, 503 SlowDown, "
            "resets, slow), each before the object is stored",
            "after the run the prefix is listed, and must hold exactly the puts that succeeded",
        ),
        workload=workload,
    )
