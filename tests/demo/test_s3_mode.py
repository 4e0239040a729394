"""``demo --s3``: the embedded S3 endpoint on its own, end to end runs against it and against
moto's S3, the flags that go with it, and how its findings reach the summary."""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import signal
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

import cloudkit_trio as ck
from cloudkit_trio.aws import S3, SigV4Signer
from cloudkit_trio.demo import main
from cloudkit_trio.demo._credentials import TokenLedger, TokenState
from cloudkit_trio.demo._faults import Fault, FaultPlan, RunClock
from cloudkit_trio.demo._run import run_demo
from cloudkit_trio.demo._s3_app import S3App
from cloudkit_trio.demo._s3_mode import listing_page_size
from cloudkit_trio.demo._settings import DemoSettings, Timing
from cloudkit_trio.demo._summary import Summary
from cloudkit_trio.demo._target import Check, TargetReport
from cloudkit_trio.demo._view import JsonView, PlainView
from cloudkit_trio.transport import error_from_response

if TYPE_CHECKING:
    from cloudkit_trio.demo._credentials import IssuedCredentials
    from cloudkit_trio.demo._progress import Progress

    from ..aws._moto import MotoServer

TIMING = Timing.for_duration(20.0)
BASE = "http://s3.test"
BUCKET = "demo-bucket"


def s3_plan(fault_rate: float = 0.1) -> FaultPlan:
    return FaultPlan.build(
        seed=1, fault_rate=fault_rate, timing=TIMING, endpoints=("s3",), outage_endpoint=None
    )


def make_app(fault_rate: float = 0.0, lease: int = 3600) -> S3App:
    clock = RunClock()
    clock.begin(trio.current_time())
    return S3App(plan=s3_plan(fault_rate), ledger=TokenLedger(lease), clock=clock, timing=TIMING)


def credentials_of(issued: IssuedCredentials) -> ck.Credentials:
    return ck.Credentials(issued.access_key, issued.secret_key, issued.session_token)


class Signed:
    """An httpx client on the app that signs each request as the runtime would."""

    def __init__(self, app: S3App, issued: IssuedCredentials, region: str = "us-east-1") -> None:
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE)
        self.signer = SigV4Signer("s3", region)
        self.credentials = credentials_of(issued)

    async def send(self, method: str, path: str, body: bytes = b"") -> httpx.Response:
        request = self.client.build_request(method, path, content=body)
        self.signer.sign(request, self.credentials)
        return await self.client.send(request)


@asynccontextmanager
async def s3_on(app: S3App, issued: IssuedCredentials) -> AsyncIterator[S3]:
    """The library's S3 client on a running context whose transport is the app itself."""
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(region="us-east-1", endpoint=BASE))
        .auth_provider(ck.StaticAuthProvider(credentials_of(issued)))
        .signer(S3.signer("us-east-1"))
        .retry_policy(ck.NoRetry())
        .transport(httpx.ASGITransport(app=app))
        .logger(ck.NoopLogger())
        .build()
    )
    async with context as cloud:
        yield S3(cloud)


def code_of(response: httpx.Response) -> str | None:
    error = error_from_response(response.status_code, response.headers, response.content)
    return None if error is None else error.code


def number_with(plan: FaultPlan, elapsed: float, *faults: Fault | None) -> int:
    """An operation number whose put attempts the plan answers with ``faults``, in order."""
    return next(
        n
        for n in range(10_000)
        if all(
            plan.decide("s3", f"{n:06d}", attempt, elapsed) is fault
            for attempt, fault in enumerate(faults, start=1)
        )
    )


class TestEmbeddedS3Listing:
    async def test_pages_follow_continuation_tokens_under_a_prefix(self) -> None:
        """ListObjectsV2 pages through a prefix in key order, max-keys at a time, with
        continuation tokens the S3 client follows; start-after and odd keys work too."""
        app = make_app()
        issued = app.ledger.issue(trio.current_time())
        odd = ["a/ü 1+2.txt", "a/x&y<z>"]
        async with s3_on(app, issued) as s3:
            await s3.create_bucket(BUCKET)
            for n in range(23):
                await s3.put_object(BUCKET, f"a/{n:03d}", b"x" * n)
            for key in [*odd, "b/000", "a"]:
                await s3.put_object(BUCKET, key, b"odd")
            pages = [page async for page in s3.list_objects_v2(BUCKET, prefix="a/", page_size=10)]
            listed = [summary.key async for summary in s3.iter_objects(BUCKET, prefix="a/")]
            after = [
                summary.key
                async for summary in s3.iter_objects(BUCKET, prefix="a/", start_after="a/020")
            ]
        assert [len(page.objects) for page in pages] == [10, 10, 5]
        assert [page.is_truncated for page in pages] == [True, True, False]
        assert [page.key_count for page in pages] == [10, 10, 5]
        expected = sorted([f"a/{n:03d}" for n in range(23)] + odd)
        assert [s.key for page in pages for s in page.objects] == expected == listed
        assert after == ["a/021", "a/022", *sorted(odd)]
        assert pages[0].objects[5].size == 5
        assert pages[0].objects[5].etag == hashlib.md5(b"xxxxx").hexdigest()
        assert len(app.store.bucket(BUCKET) or ()) == 23 + len(odd) + 2

    async def test_s3_error_bodies(self) -> None:
        """Missing buckets, a second create, a bad continuation token, unsupported listings:
        S3's status, XML code and message, as the runtime classifies them."""
        app = make_app()
        issued = app.ledger.issue(trio.current_time())
        async with s3_on(app, issued) as s3:
            with pytest.raises(ck.NotFound) as missing:
                await s3.put_object("no-such-bucket", "k", b"")
            assert not await s3.bucket_exists("no-such-bucket")
            await s3.create_bucket(BUCKET)
            assert await s3.bucket_exists(BUCKET)
            with pytest.raises(ck.AlreadyExists) as again:
                await s3.create_bucket(BUCKET)
        assert missing.value.code == "NoSuchBucket" and missing.value.status_code == 404
        assert again.value.code == "BucketAlreadyOwnedByYou" and again.value.status_code == 409
        signed = Signed(app, issued)
        async with signed.client:
            bad_token = await signed.send("GET", f"/{BUCKET}?list-type=2&continuation-token=%25%25")
            version_1 = await signed.send("GET", f"/{BUCKET}")
            no_bucket = await signed.send("GET", "/other-bucket?list-type=2")
        assert (bad_token.status_code, code_of(bad_token)) == (400, "InvalidArgument")
        assert (version_1.status_code, code_of(version_1)) == (501, "NotImplemented")
        assert (no_bucket.status_code, code_of(no_bucket)) == (404, "NoSuchBucket")
        assert no_bucket.headers["content-type"] == "application/xml"
        assert b"<Resource>/other-bucket</Resource><RequestId>" in no_bucket.content
        assert no_bucket.headers["x-amz-request-id"] in no_bucket.text


class TestEmbeddedS3Authentication:
    async def test_unsigned_and_malformed_requests_are_refused(self) -> None:
        """No Authorization is AccessDenied; another scheme or another region is
        AuthorizationHeaderMalformed; a body that does not match its declared hash is
        XAmzContentSHA256Mismatch. Nothing is stored."""
        app = make_app()
        issued = app.ledger.issue(trio.current_time())
        app.store.create_bucket(BUCKET, now=dt.datetime.now(dt.UTC))
        signed = Signed(app, issued)
        elsewhere = Signed(app, issued, region="eu-west-1")
        async with signed.client, elsewhere.client:
            anonymous = await signed.client.put(f"/{BUCKET}/k", content=b"hi")
            bearer = await signed.client.put(
                f"/{BUCKET}/k", content=b"hi", headers={"Authorization": "Bearer abc"}
            )
            wrong_region = await elsewhere.send("PUT", f"/{BUCKET}/k", b"hi")
            request = signed.client.build_request("PUT", f"/{BUCKET}/k", content=b"hi")
            signed.signer.sign(request, signed.credentials)
            request.headers["X-Amz-Content-SHA256"] = "0" * 64
            tampered = await signed.client.send(request)
        assert (anonymous.status_code, code_of(anonymous)) == (403, "AccessDenied")
        assert (bearer.status_code, code_of(bearer)) == (400, "AuthorizationHeaderMalformed")
        assert wrong_region.status_code == 400
        assert b"the region 'eu-west-1' is wrong; expecting 'us-east-1'" in wrong_region.content
        assert (tampered.status_code, code_of(tampered)) == (400, "XAmzContentSHA256Mismatch")
        assert len(app.store.bucket(BUCKET) or ()) == 0

    async def test_keys_and_tokens_the_vault_did_not_issue(self, autojump_clock: Any) -> None:
        """An unknown access key is InvalidAccessKeyId, a token not issued with the key is
        InvalidToken, a token past its lease ExpiredToken: the runtime's InvalidCredentials
        and ExpiredCredentials."""
        app = make_app(lease=2)
        ledger = app.ledger
        issued = ledger.issue(trio.current_time())
        other = ledger.issue(trio.current_time())
        stranger = ck.Credentials("AKIASTRANGER", "secret", other.session_token)
        swapped = ck.Credentials(issued.access_key, issued.secret_key, other.session_token)
        signed = Signed(app, issued)
        async with signed.client:
            responses = {}
            for name, credentials in (("stranger", stranger), ("swapped", swapped)):
                request = signed.client.build_request("PUT", f"/{BUCKET}")
                signed.signer.sign(request, credentials)
                responses[name] = await signed.client.send(request)
            await trio.sleep(3)
            responses["expired"] = await signed.send("PUT", f"/{BUCKET}")
        classified = {
            name: error_from_response(r.status_code, r.headers, r.content)
            for name, r in responses.items()
        }
        assert isinstance(classified["stranger"], ck.InvalidCredentials)
        assert classified["stranger"].code == "InvalidAccessKeyId"
        assert isinstance(classified["swapped"], ck.InvalidCredentials)
        assert classified["swapped"].code == "InvalidToken"
        assert isinstance(classified["expired"], ck.ExpiredCredentials)
        assert app.injected == Counter({"expired_token": 1})
        assert ledger.check_key("AKIASTRANGER", other.session_token, 0.0) is TokenState.UNKNOWN_KEY


class TestEmbeddedS3Faults:
    async def test_faults_come_before_the_object_is_stored(self, autojump_clock: Any) -> None:
        """Each injected error is an S3 error document (SlowDown and ServiceUnavailable
        with Retry-After where asked), and the object of a faulted put does not exist
        until a later attempt is answered 200; a slow answer still stores it."""
        app = make_app(fault_rate=0.5)
        issued = app.ledger.issue(trio.current_time())
        app.store.create_bucket(BUCKET, now=dt.datetime.now(dt.UTC))
        expected = {
            Fault.SERVER_ERROR: (500, "InternalError", None),
            Fault.UNAVAILABLE: (503, "ServiceUnavailable", "1"),
            Fault.RATE_LIMITED: (429, "SlowDown", "1"),
        }
        signed = Signed(app, issued)
        bucket = app.store.bucket(BUCKET)
        assert bucket is not None
        async with signed.client:
            for fault, (status, code, retry_after) in expected.items():
                key = f"demo/run/{number_with(app.plan, 0.0, fault, None):06d}"
                first = await signed.send("PUT", f"/{BUCKET}/{key}", b"payload")
                assert (first.status_code, code_of(first)) == (status, code)
                assert first.headers.get("retry-after") == retry_after
                assert bucket.get(key) is None
                retried = await signed.send("PUT", f"/{BUCKET}/{key}", b"payload")
                assert retried.status_code == 200
                assert bucket.get(key) is not None
            slow_key = f"demo/run/{number_with(app.plan, 0.0, Fault.SLOW):06d}"
            before = trio.current_time()
            slow = await signed.send("PUT", f"/{BUCKET}/{slow_key}", b"payload")
            assert trio.current_time() - before >= TIMING.slow
        assert slow.status_code == 200 and bucket.get(slow_key) is not None
        assert slow.headers["etag"] == f'"{hashlib.md5(b"payload").hexdigest()}"'

    async def test_a_burst_answers_slowdown(self, autojump_clock: Any) -> None:
        """During the endpoint's error burst, puts meet 503 SlowDown, which the runtime
        treats as rate limiting, or 500 InternalError."""
        app = make_app(fault_rate=0.1)
        burst = app.plan.bursts["s3"]
        app.clock.started_at = trio.current_time() - burst.start
        issued = app.ledger.issue(trio.current_time())
        app.store.create_bucket(BUCKET, now=dt.datetime.now(dt.UTC))
        n = number_with(app.plan, burst.start, Fault.BURST_503)
        signed = Signed(app, issued)
        async with signed.client:
            response = await signed.send("PUT", f"/{BUCKET}/demo/run/{n:06d}", b"x")
        error = error_from_response(response.status_code, response.headers, response.content)
        assert response.status_code == 503 and isinstance(error, ck.RateLimited)
        assert error.code == "SlowDown"
        assert app.injected == Counter({"burst_503": 1})


class TestS3Runs:
    def test_embedded_listed_equals_uploaded(self, capsys: pytest.CaptureFixture[str]) -> None:
        """A short --s3 run answers every put, retries injected faults, and lists exactly the
        puts that succeeded, in several pages."""
        status = main(["demo", "--s3", "--operations", "200", "--rate", "200", "--json"])
        summary = json.loads(capsys.readouterr().out)
        s3 = summary["s3"]
        assert status == 0
        assert summary["mode"] == "s3-embedded"
        assert summary["submitted"] == summary["replied"] == 200
        assert summary["via_execute"] == summary["via_channel"] == 100
        assert s3["listed"] == s3["uploaded"] == summary["succeeded"]
        assert s3["pages"] > 1 and s3["page_size"] == listing_page_size(200) == 20
        assert s3["bucket"] == "cloudkit-demo-1" and s3["prefix"].startswith("demo/")
        assert summary["retries"] > 0 and sum(summary["injected"].values()) > 0
        assert summary["credential_fetches"] >= 1
        assert summary["invariant"] == {
            "submitted_equals_replied": True,
            "succeeded_plus_failed_equals_replied": True,
            "listed_equals_uploaded": True,
        }

    def test_against_moto(
        self,
        moto_s3: MotoServer,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """--s3 --endpoint drives moto's S3 (signatures checked) with the key from the
        environment: the bucket is created, then found on a second run, and each run lists
        its own puts."""
        for name in ("CLOUD_ACCESS_KEY", "CLOUD_SECRET_KEY", "CLOUD_SESSION_TOKEN",
                     "AWS_SESSION_TOKEN", "AWS_PROFILE", "AWS_DEFAULT_REGION",
                     "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
                     "AWS_CONTAINER_CREDENTIALS_FULL_URI"):  # fmt: skip
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", moto_s3.secret_key)
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        # The shared files must not be a real ~/.aws: empty ones of the test's own.
        for name in ("AWS_SHARED_CREDENTIALS_FILE", "AWS_CONFIG_FILE"):
            path = tmp_path / name.lower()
            path.write_text("")
            monkeypatch.setenv(name, str(path))
        bucket = f"demo-{uuid.uuid4().hex[:12]}"
        runs = []
        for operations in ("50", "7"):
            status = main(["demo", "--s3", "--endpoint", moto_s3.url, "--bucket", bucket,
                           "--operations", operations, "--json"])  # fmt: skip
            runs.append((status, json.loads(capsys.readouterr().out)))
        (first_status, first), (second_status, second) = runs
        assert first_status == second_status == 0
        assert first["mode"] == "s3-endpoint" and first["injected"] == {}
        assert first["s3"]["listed"] == first["s3"]["uploaded"] == first["succeeded"] == 50
        assert first["s3"]["pages"] == 10
        assert second["s3"]["listed"] == second["succeeded"] == 7
        assert first["s3"]["prefix"] != second["s3"]["prefix"]
        assert first["s3"]["listed_equals_uploaded"] is True
        # Reported, not required, against a bucket that others may write to.
        assert "listed_equals_uploaded" not in first["invariant"]

    def test_moto_refusing_the_key_is_one_line(
        self,
        moto_s3: MotoServer,
        monkeypatch: pytest.MonkeyPatch,
        tmp_path: Path,
        capsys: pytest.CaptureFixture[str],
    ) -> None:
        """A bucket that cannot be made ready (a wrong secret) stops the run before it
        starts: exit 1, the reason on stderr, nothing on stdout, no secret anywhere."""
        monkeypatch.setenv("AWS_ACCESS_KEY_ID", moto_s3.access_key)
        monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "not-the-secret-123")
        monkeypatch.setenv("AWS_REGION", "us-east-1")
        monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
        monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
        status = main(["demo", "--s3", "--endpoint", moto_s3.url, "--operations", "5", "--json"])
        captured = capsys.readouterr()
        assert status == 1 and captured.out == ""
        assert captured.err.startswith("cloudkit-trio demo: cannot use bucket 'cloudkit-demo-1'")
        assert "InvalidCredentials" in captured.err and "SignatureDoesNotMatch" in captured.err
        assert "not-the-secret-123" not in captured.err
        assert len(captured.err.strip().splitlines()) == 1


class TestS3Interrupted:
    async def test_ctrl_c_skips_the_listing(self) -> None:
        """After Ctrl-C every put submitted is still answered, but the context is closed:
        nothing is listed, and the summary carries no S3 report or check."""

        class CtrlC(JsonView):
            sent = False

            def update(self, progress: Progress) -> None:
                if not self.sent and progress.replied >= 20:
                    self.sent = True
                    signal.raise_signal(signal.SIGINT)

        view = CtrlC(io.StringIO())
        settings = DemoSettings(operations=400, rate=200, fault_rate=0.0, s3=True)
        with trio.fail_after(30):
            summary = await run_demo(settings, view)
        assert view.sent and summary.interrupted and summary.exit_status == 130
        assert summary.mode == "s3-embedded"
        assert summary.submitted == summary.replied < 400
        assert summary.report is None and summary.checks == ()
        assert "s3" not in summary.to_json()


class TestS3Flags:
    @pytest.mark.parametrize(
        ("argv", "message"),
        [
            (["demo", "--bucket", "my-bucket"], "--bucket applies only with --s3"),
            (["demo", "--s3", "--bucket", "My_Bucket"], "argument --bucket: invalid S3 bucket name 'My_Bucket'"),
            (["demo", "--s3", "--bucket", "ab"], "must be 3 to 63 characters long"),
            (["demo", "--s3", "--endpoint", "http://127.0.0.1:9000/{n}"], "with --s3 it is the S3 service's base URL"),
            (["demo", "--s3", "--endpoint", "http://127.0.0.1:9000/?x=1"], "argument --endpoint: the S3 endpoint must not have a query"),
            (["demo", "--s3", "--seed", "9" * 60], "makes too long a bucket name; choose a --bucket"),
        ],
    )  # fmt: skip
    def test_exit_2_with_a_clear_message(
        self, argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
    ) -> None:
        """Flags that do not go together, or a bucket S3 would refuse, exit 2 before
        anything runs, with usage and the reason on stderr."""
        assert main(argv) == 2
        captured = capsys.readouterr()
        assert captured.out == ""
        assert "usage: cloudkit-trio demo" in captured.err
        assert message in captured.err

    def test_help_names_the_flags(self, capsys: pytest.CaptureFixture[str]) -> None:
        """--help describes --s3 and --bucket."""
        assert main(["demo", "--help"]) == 0
        out = capsys.readouterr().out
        assert "--s3" in out and "--bucket NAME" in out


def summary_with(report: TargetReport | None) -> Summary:
    return Summary(
        mode="s3-embedded", target="an embedded S3 endpoint", seed=1, operations=10,
        concurrency=4, rate=100.0, fault_rate=0.1, planned_duration=0.1, elapsed=0.2,
        submitted=10, replied=10, succeeded=9, failed=1, via_execute=5, via_channel=5,
        retried_operations=2, failures={"ProviderError": 1}, retries=3, retries_by_error={},
        rejected_by_breaker=0, credential_fetches=1, credential_refresh_failures=0,
        injected={}, endpoints=(), interrupted=False, report=report,
    )  # fmt: skip


def report(listed: int, *, binding: bool) -> TargetReport:
    return TargetReport(
        key="s3",
        document={"listed": listed, "uploaded": 9},
        rows=(("s3 listed", str(listed), "in 2 pages"),),
        checks=(
            Check(
                name="listed_equals_uploaded",
                statement=f"listed == uploaded: {listed} == 9",
                holds=listed == 9,
                binding=binding,
            ),
        ),
    )


class TestReportInTheSummary:
    @pytest.mark.parametrize(
        ("listed", "binding", "status", "verdict"),
        [
            (9, True, 0, "holds"),
            (8, True, 1, "VIOLATED"),
            (10, False, 0, "differs (reported only"),
        ],
    )
    def test_checks_decide_the_exit_status_when_binding(
        self, listed: int, binding: bool, status: int, verdict: str
    ) -> None:
        """A binding check that fails makes the exit status 1; one that is only reported
        does not. The plain view prints the report's rows and a line per check."""
        summary = summary_with(report(listed, binding=binding))
        assert summary.exit_status == status
        stream = io.StringIO()
        PlainView(stream).finish(summary)
        lines = stream.getvalue().splitlines()
        assert f"  {'s3 listed':<22}{listed:>8}  in 2 pages" in lines
        assert lines[-1].startswith(f"check listed == uploaded: {listed} == 9: {verdict}")

    def test_json_carries_the_report(self) -> None:
        """The report's document goes under its key; binding checks join the invariant."""
        for binding in (True, False):
            stream = io.StringIO()
            JsonView(stream).finish(summary_with(report(9, binding=binding)))
            document = json.loads(stream.getvalue())
            assert document["s3"] == {"listed": 9, "uploaded": 9}
            assert ("listed_equals_uploaded" in document["invariant"]) is binding
        stream = io.StringIO()
        JsonView(stream).finish(summary_with(None))
        assert "s3" not in json.loads(stream.getvalue())
