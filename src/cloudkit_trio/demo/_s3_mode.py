"""``--s3``: every operation is a put_object of its own key, and the keys are listed after.

The two modes share one :class:`S3Workload`: the bucket is made ready before the first
operation, operation ``n`` puts ``demo/<run id>/<n:06d>`` (built with ``s3.operations``, so
the awaited half and the channel half are both S3 calls), and once every put is answered
the run's prefix is listed through :class:`~cloudkit_trio.aws.S3`, a few pages' worth.
Against the embedded endpoint, which stores an object only when it answers its put 200,
``listed == uploaded`` must hold; against a bucket of yours it is reported.
"""

from __future__ import annotations

import math
import os
import secrets
import time
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Final

import trio

from .._errors import (
    AlreadyExists,
    CloudError,
    ConfigError,
    InsufficientPermissions,
    NotFound,
)
from .._operation import Operation, endpoint_of
from ..aws import S3, S3Operations, default_aws_chain
from ._embedded import span, start_vault
from ._faults import FaultPlan, RunClock
from ._problems import DemoError
from ._s3_app import S3App
from ._server import serve_app
from ._target import Check, RunOutcome, Target, TargetEndpoint, TargetReport

if TYPE_CHECKING:
    from .._context import Cloud
    from ._settings import DemoSettings

__all__ = ["EmbeddedS3Mode", "RemoteS3Mode", "S3Workload", "listing_page_size", "new_run_id"]

#: The embedded endpoint's name, and the region it signs for.
EMBEDDED_ENDPOINT: Final = "s3"
EMBEDDED_REGION: Final = "us-east-1"
#: Where a real endpoint's region comes from, in this order, and the default.
REGION_VARIABLES: Final = ("AWS_REGION", "AWS_DEFAULT_REGION")
DEFAULT_REGION: Final = "us-east-1"
#: The listing after the run takes about this many pages.
LISTING_PAGES: Final = 10
_MAX_PAGE_SIZE: Final = 1000


def new_run_id() -> str:
    """``20240501-120000-3f2a1c``: the time (UTC) and a little randomness, so that runs
    against the same bucket never share keys."""
    return f"{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}-{secrets.token_hex(3)}"


def listing_page_size(operations: int) -> int:
    """Keys per page for a listing of ``operations`` objects in about ten pages."""
    return min(max(math.ceil(operations / LISTING_PAGES), 1), _MAX_PAGE_SIZE)


def _region(environ: Mapping[str, str]) -> tuple[str | None, str]:
    """The region to sign for, and the variable it came from (None for the default)."""
    for name in REGION_VARIABLES:
        value = environ.get(name, "").strip()
        if value:
            return name, value
    return None, DEFAULT_REGION


class S3Workload:
    """One run's S3 calls against one bucket.

    Args:
        operations: Where the bucket is (region, endpoint, addressing); the client the
            run uses is built on it in :meth:`prepare`.
        bucket: The bucket; created unless it exists.
        run_id: Makes this run's keys its own (``demo/<run id>/``).
        page_size: Keys per page of the listing after the run.
        binding: Whether ``listed == uploaded`` decides the exit status.
    """

    def __init__(
        self,
        *,
        operations: S3Operations,
        bucket: str,
        run_id: str,
        page_size: int,
        binding: bool,
    ) -> None:
        self.bucket = bucket
        self.run_id = run_id
        self.prefix = f"demo/{run_id}/"
        self.page_size = page_size
        self.binding = binding
        self._where = operations
        self._s3: S3 | None = None
        # Built now, so that a bad bucket name fails before anything starts. Puts go here
        # (with virtual-hosted addressing, to the bucket's own host).
        self.url = endpoint_of(operations.object_url(bucket, self.key(0)))

    def __repr__(self) -> str:
        return f"S3Workload(bucket={self.bucket!r}, prefix={self.prefix!r})"

    def key(self, n: int) -> str:
        return f"{self.prefix}{n:06d}"

    def operation(self, n: int) -> Operation:
        """Operation ``n``: a put of its own key, with a small body naming it."""
        if self._s3 is None:
            raise RuntimeError("the S3 workload was not prepared: call prepare(cloud) first")
        body = f"cloudkit-trio demo run {self.run_id}, operation {n}\n".encode()
        return self._s3.operations.put_object(
            self.bucket, self.key(n), body, content_type="text/plain"
        )

    async def prepare(self, cloud: Cloud) -> None:
        """Build the client on the running context and make sure the bucket exists.

        The bucket is probed with a listing of the run's prefix rather than a HEAD: a
        listing's errors carry S3's code (a HEAD's cannot), and listing is what the run
        needs permission for after it.
        """
        where = self._where
        s3 = S3(cloud, region=where.region, endpoint=where.endpoint, addressing=where.addressing)
        try:
            try:
                await anext(s3.list_objects_v2(self.bucket, prefix=self.prefix, page_size=1))
            except NotFound:
                await s3.create_bucket(self.bucket)
        except AlreadyExists as error:
            # Created by someone else between the two calls, or it is someone else's.
            if error.code != "BucketAlreadyOwnedByYou":
                raise DemoError(
                    f"bucket {self.bucket!r} belongs to someone else; choose another --bucket"
                ) from None
        except CloudError as error:
            hint = (
                "; if the bucket is someone else's, choose another --bucket"
                if isinstance(error, InsufficientPermissions)
                else ""
            )
            raise DemoError(
                f"cannot use bucket {self.bucket!r} at {where.endpoint}: "
                f"{type(error).__name__}: {error}{hint}"
            ) from None
        self._s3 = s3

    async def finish(self, cloud: Cloud, outcome: RunOutcome) -> TargetReport:
        """List the run's prefix and compare it with the puts that succeeded."""
        s3 = self._s3
        assert s3 is not None, "finish() comes after prepare()"
        listed = pages = 0
        failure: str | None = None
        try:
            async for page in s3.list_objects_v2(
                self.bucket, prefix=self.prefix, page_size=self.page_size
            ):
                pages += 1
                listed += len(page.objects)
        except CloudError as error:
            failure = f"{type(error).__name__}: {error}"
        uploaded = outcome.succeeded
        holds = failure is None and listed == uploaded
        if failure is None:
            statement = f"listed == uploaded: {listed} == {uploaded}"
            detail = f"{self.bucket}/{self.prefix} in {pages} pages of up to {self.page_size} keys"
        else:
            statement = f"listed == uploaded: the listing failed ({failure})"
            detail = f"listing failed after {pages} pages: {failure}"
        return TargetReport(
            key="s3",
            document={
                "bucket": self.bucket,
                "prefix": self.prefix,
                "uploaded": uploaded,
                "listed": listed if failure is None else None,
                "pages": pages,
                "page_size": self.page_size,
                "listed_equals_uploaded": holds,
                "listing_error": failure,
            },
            rows=(
                ("s3 uploaded", str(uploaded), "puts answered 200"),
                ("s3 listed", str(listed) if failure is None else "-", detail),
            ),
            checks=(
                Check(
                    name="listed_equals_uploaded",
                    statement=statement,
                    holds=holds,
                    binding=self.binding,
                ),
            ),
        )


class EmbeddedS3Mode:
    """``--s3``: an embedded S3 endpoint with the fault plan, and the embedded Vault.

    Requests are signed with SigV4 (``S3.signer``) using short-lived credentials that
    :class:`~cloudkit_trio.aws.VaultAuthProvider` fetches from the embedded Vault; the
    endpoint checks the access key and session token of each.
    """

    name = "s3-embedded"

    def __init__(self, settings: DemoSettings) -> None:
        self.settings = settings
        self.timing = settings.timing
        # One endpoint, and no outage: a put that cannot be stored fails, and a quarter of
        # the run failing would say little about S3. Bursts and random faults remain.
        self.plan = FaultPlan.build(
            seed=settings.seed,
            fault_rate=settings.fault_rate,
            timing=self.timing,
            endpoints=(EMBEDDED_ENDPOINT,),
            outage_endpoint=None,
        )

    async def start(self, nursery: trio.Nursery) -> Target:
        settings, timing = self.settings, self.timing
        clock = RunClock()
        ledger, provider = await start_vault(nursery, timing)
        app = S3App(
            plan=self.plan,
            ledger=ledger,
            clock=clock,
            timing=timing,
            name=EMBEDDED_ENDPOINT,
            region=EMBEDDED_REGION,
        )
        url: str = await nursery.start(partial(serve_app, app))
        workload = S3Workload(
            operations=S3Operations(region=EMBEDDED_REGION, endpoint=url),
            bucket=settings.bucket_name,
            run_id=new_run_id(),
            page_size=listing_page_size(settings.operations),
            binding=True,
        )

        def injected() -> Mapping[str, int]:
            return dict(app.injected)

        def requests() -> Mapping[str, int]:
            return {EMBEDDED_ENDPOINT: app.requests}

        return Target(
            title=f"an embedded S3 endpoint with injected faults, bucket {workload.bucket}",
            endpoints=(TargetEndpoint(name=EMBEDDED_ENDPOINT, url=url, role="storage"),),
            operation=workload.operation,
            prepare=workload.prepare,
            finish=workload.finish,
            auth_provider=provider,
            signer=S3.signer(EMBEDDED_REGION),
            begin=clock.begin,
            injected=injected,
            requests=requests,
            notes=self._notes(workload),
        )

    def _notes(self, workload: S3Workload) -> tuple[str, ...]:
        timing, plan = self.timing, self.plan
        notes = [
            f"puts of {workload.prefix}NNNNNN to bucket {workload.bucket}, SigV4-signed; the "
            "endpoint checks each request's signature shape, access key and session token"
        ]
        notes.extend(
            f"error burst: {name} answers 503 SlowDown and 500 InternalError {span(window, timing)}"
            for name, window in sorted(plan.bursts.items())
        )
        notes.append(
            f"credentials: {timing.lease} s leases from the embedded Vault; "
            "every third one revoked early (ExpiredToken)"
        )
        if self.settings.fault_rate:
            notes.append(
                f"random faults: {self.settings.fault_rate:.0%} of puts (500 InternalError, "
                "503 and 429 with Retry-After, resets, slow and stalled answers), each before "
                "the object is stored"
            )
        notes.append(
            f"after the run: the prefix is listed, {workload.page_size} keys a page, and "
            "must hold exactly the puts that succeeded"
        )
        return tuple(notes)


class RemoteS3Mode:
    """``--s3 --endpoint URL``: a real S3-compatible endpoint (AWS, MinIO, moto).

    Credentials come from :func:`~cloudkit_trio.aws.default_aws_chain`, the region from
    ``AWS_REGION`` or ``AWS_DEFAULT_REGION`` (us-east-1 without either). Nothing is
    injected; ``listed == uploaded`` is reported, not required, since the bucket is yours.
    """

    name = "s3-endpoint"

    def __init__(
        self, settings: DemoSettings, url: str, environ: Mapping[str, str] | None = None
    ) -> None:
        self.settings = settings
        self.url = url
        self._environ = environ

    async def start(self, nursery: trio.Nursery) -> Target:
        await trio.lowlevel.checkpoint()
        settings = self.settings
        environ = os.environ if self._environ is None else self._environ
        variable, region = _region(environ)
        try:
            operations = S3Operations(region=region, endpoint=self.url)
            workload = S3Workload(
                operations=operations,
                bucket=settings.bucket_name,
                run_id=new_run_id(),
                page_size=listing_page_size(settings.operations),
                binding=False,
            )
        except ConfigError as error:
            source = f" (the region comes from {variable})" if variable is not None else ""
            raise DemoError(f"cannot drive S3 at {self.url}: {error}{source}") from None
        region_source = variable if variable is not None else "the default"
        notes = (
            "no faults injected: the endpoint's own behaviour is what you see",
            f"puts of {workload.prefix}NNNNNN to bucket {workload.bucket} "
            "(created unless it exists)",
            f"region {region} ({region_source}); credentials from the default AWS chain "
            "(environment, shared files, container endpoint)",
            f"after the run: the prefix is listed, {workload.page_size} keys a page",
        )
        return Target(
            title=f"S3 at {operations.endpoint}, bucket {workload.bucket}",
            endpoints=(TargetEndpoint(name="s3", url=workload.url, role="yours"),),
            operation=workload.operation,
            prepare=workload.prepare,
            finish=workload.finish,
            auth_provider=default_aws_chain(environ=self._environ),
            signer=S3.signer(region),
            notes=notes,
        )
