"""What SigV4 signing costs: signed vs unsigned ``cloud.execute``, S3 PutObject vs peers, sign().

Run it with ``python benchmarks/signing.py`` (``--quick`` for a short run, ``--help`` for the
knobs). It starts its own server on 127.0.0.1 that answers every request as S3 answers
PutObject (200, an ETag, no body) once it has read the whole body: nginx with one worker
when installed (``apt-get install nginx-light``), its front reading the body and an
internal ``return 200`` answering; otherwise a Trio and h11 server in a subprocess, which
is then likely the bottleneck (the first line says which). It prints three tables, all
measured in the same run, so the ratios between their rows are what to read:

1. **Signed vs unsigned.** ``await cloud.execute(op)`` for an S3-style ``PUT /bucket/key``
   with a 1 KiB body, once with ``SigV4Signer("s3", "us-east-1")`` and once with
   ``NoAuthSigner()``, at concurrency 1 and 64 (N Trio tasks, each sending its share of
   ``--requests``).
2. **S3 PutObject, 1 KiB, signed.** The signed cloudkit_trio case at c=64 next to
   aiobotocore under asyncio (64 tasks, one client, 64 pooled connections) and boto3 (16
   threads, one client, 16 pooled connections). The peers run in their own virtual
   environment, created on first use at ``benchmarks/.venvs/aiobotocore`` with ``pip
   install aiobotocore boto3`` (one resolution, so boto3 matches aiobotocore's botocore
   pin) and reused afterwards; each measurement is a subprocess of that environment's
   Python, which prints its figures as one JSON line. The peers use path-style addressing,
   region us-east-1, fake static credentials and ``total_max_attempts=1`` (no retries);
   botocore's default CRC32 request checksum is turned off (``when_required``) so that
   every client does the same work, SHA-256 of the body plus the signature
   (``--botocore-checksums`` keeps botocore's default). botocore still sends ``Expect:
   100-continue`` with every PutObject, as it does against S3, and so waits for the
   server's 100 before it sends the body. ``--no-peers`` skips the peers.
3. **Signer profile.** What one ``SigV4Signer.sign()`` costs for the same 1 KiB S3 PUT and
   for a small JSON POST to SQS, and where the time goes: the signer's private helpers are
   timed one by one where they exist, the fastest of a few rounds (a part it cannot find or
   call prints ``n/a``; only ``sign()`` itself is relied on), with the signing key derived
   (first call of the day) and cached; "the rest" is ``sign()`` less the parts above it.
   Then cProfile over a bounded loop of ``sign()`` calls shows what ``sign()`` calls by
   share of its inclusive time, and the functions with the largest share of own time.

Every load case is warmed up before it is measured, and the cases run in alternating
order (forward, then backward) over ``--reps`` repetitions; the tables show medians, and
each ratio is computed per repetition before its median is taken. The figures are:

* ``req/s``: requests completed per second of wall clock in the measured phase;
* ``p50``/``p99``: latency of one request as its caller sees it, in microseconds;
* ``CPU µs/req``: CPU time of the client process (``time.process_time()``: all its
  threads, user and system) over the measured phase, divided by the requests. The server
  runs in its own process and is not counted. A peer subprocess measures its own.

The last lines summarise the ratios. Servers and subprocesses are stopped on exit, on
errors and on Ctrl-C. Only 127.0.0.1 is contacted (and PyPI, by pip, to create the peers'
environment).
"""

from __future__ import annotations

import argparse
import cProfile
import hashlib
import importlib
import importlib.metadata
import json
import math
import os
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

# The peers' workers run this same file in their own environment, which has neither trio,
# httpx nor cloudkit_trio: the module itself imports only the standard library, and the
# parts that measure cloudkit_trio import what they need when they run.
if TYPE_CHECKING:
    import httpx

BODY = b"x" * 1024
BUCKET = "bucket"
KEY = "key"
REGION = "us-east-1"
ACCESS_KEY = "AKIDEXAMPLE"
SECRET_KEY = "secret"
SQS_BODY = json.dumps(
    {"QueueUrl": "http://127.0.0.1/000000000000/bench", "MessageBody": "hello"}
).encode()

PEER_VENV = Path(__file__).resolve().parent / ".venvs" / "aiobotocore"
# One resolution for both, so pip picks a boto3 whose botocore matches aiobotocore's pin.
PEER_REQUIREMENTS = ("aiobotocore", "boto3")
BOTO3_THREADS = 16
CONCURRENCIES = (1, 64)
PEER_CONCURRENCY = 64


@dataclass(frozen=True)
class Figures:
    """What one measurement of one load case yields."""

    requests_per_second: float
    p50_us: float
    p99_us: float
    cpu_us_per_request: float


# -- the server ----------------------------------------------------------------------------

#: S3's answer to PutObject: 200, the body's MD5 as ETag, no body (botocore parses a
#: 200's body for an embedded error, so http_transport's "ok" would fail every call).
_ETAG = '"' + hashlib.md5(BODY).hexdigest() + '"'

_NGINX_CONF = """\
worker_processes 1;
daemon off;
master_process on;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
{user}
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 1000000;
    keepalive_timeout 75s;
    # A 1 KiB body stays in memory: never written to disk, never refused.
    client_body_buffer_size 16k;
    client_max_body_size 1m;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    upstream answer {{
        server unix:{prefix}/answer.sock;
        keepalive 64;
    }}
    # The front reads the whole body before it answers, as S3 does. A bare "return 200"
    # answers as soon as the head arrives, and aiohttp, whose botocore sends "Expect:
    # 100-continue", then sometimes closes the connection under the body it is writing.
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            proxy_pass http://answer;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_pass_request_body off;
            proxy_set_header Content-Length "";
            proxy_buffering off;
        }}
    }}
    server {{
        listen unix:{prefix}/answer.sock;
        location / {{
            add_header ETag '{etag}' always;
            add_header x-amz-request-id bench always;
            return 200;
        }}
    }}
}}
"""


@contextmanager
def _put_server(kind: str) -> Iterator[tuple[str, str, Path]]:
    """Start a server on 127.0.0.1 that answers every request like S3's PutObject.

    nginx with one worker (``kind`` "nginx", or "auto" when installed); else a Trio and
    h11 server in a subprocess (``kind`` "fallback"), which then is likely the bottleneck.
    Yields its URL, a description and its error log; stops it afterwards.
    """
    # Helpers of the transport benchmark, by name: its module is outside this file's checks.
    transport = importlib.import_module("http_transport")
    port: int = transport._free_port()
    nginx: str | None = None if kind == "fallback" else transport._nginx_binary()
    if kind == "nginx" and nginx is None:
        raise RuntimeError("nginx is not installed (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="ck-bench-sign-") as prefix:
        if nginx is not None:
            Path(prefix).chmod(0o755)
            user = "user root;" if os.geteuid() == 0 else ""
            conf = Path(prefix) / "nginx.conf"
            conf.write_text(_NGINX_CONF.format(prefix=prefix, port=port, user=user, etag=_ETAG))
            command = [nginx, "-p", prefix, "-c", str(conf), "-e", f"{prefix}/error.log"]
            version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
            description = f"{version.stderr.strip().split('/')[-1]} nginx, 1 worker"
        else:
            command = [sys.executable, __file__, "--serve", str(port)]
            description = "fallback Trio server (no nginx found): it may be the bottleneck"
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            transport._wait_listening(port, process)
            yield f"http://127.0.0.1:{port}/", description, Path(prefix) / "error.log"
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _serve_fallback(port: int) -> None:
    """Answer every request, once its body is read, with S3's empty PutObject reply."""
    import h11
    import trio

    headers = [("Content-Length", "0"), ("ETag", _ETAG), ("x-amz-request-id", "bench")]

    async def handle(stream: trio.SocketStream) -> None:
        connection = h11.Connection(h11.SERVER)
        try:
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    if connection.they_are_waiting_for_100_continue:
                        continue_ = h11.InformationalResponse(status_code=100, headers=[])
                        await stream.send_all(connection.send(continue_))
                    connection.receive_data(await stream.receive_some(65536))
                elif type(event) is h11.EndOfMessage:
                    reply = connection.send(h11.Response(status_code=200, headers=headers))
                    await stream.send_all(reply + connection.send(h11.EndOfMessage()))
                    connection.start_next_cycle()
                elif type(event) is h11.ConnectionClosed:
                    return
        except (trio.BrokenResourceError, h11.ProtocolError):
            return

    await trio.serve_tcp(handle, port, host="127.0.0.1", backlog=4096)


# -- the peers' workers (run inside the peers' environment) -------------------------------


def _figures_of(latencies: list[float], wall: float, cpu: float) -> dict[str, float]:
    latencies.sort()
    done = len(latencies)
    return {
        "requests_per_second": done / wall,
        "p50_us": latencies[done // 2] * 1e6,
        "p99_us": latencies[min(done - 1, math.ceil(done * 0.99) - 1)] * 1e6,
        "cpu_us_per_request": cpu / done * 1e6,
    }


def _botocore_settings(pool: int, checksums: bool) -> dict[str, Any]:
    settings: dict[str, Any] = {
        "region_name": REGION,
        "max_pool_connections": pool,
        "retries": {"total_max_attempts": 1, "mode": "standard"},
        "s3": {"addressing_style": "path"},
    }
    if not checksums:
        settings["request_checksum_calculation"] = "when_required"
        settings["response_checksum_validation"] = "when_required"
    return settings


def _client_arguments(url: str) -> dict[str, str]:
    return {
        "endpoint_url": url,
        "region_name": REGION,
        "aws_access_key_id": ACCESS_KEY,
        "aws_secret_access_key": SECRET_KEY,
    }


def _check_put(response: Any) -> None:
    status = response["ResponseMetadata"]["HTTPStatusCode"]
    if status != 200:
        raise RuntimeError(f"PutObject answered {status}")


def _aiobotocore_worker(args: argparse.Namespace) -> dict[str, float]:
    import asyncio

    # Looked up by name: these packages exist only in the peers' environment.
    session_module = importlib.import_module("aiobotocore.session")
    config_module = importlib.import_module("aiobotocore.config")
    concurrency: int = args.concurrency
    latencies: list[float] = []

    async def main() -> dict[str, float]:
        config = config_module.AioConfig(**_botocore_settings(concurrency, args.checksums))
        session = session_module.get_session()
        async with session.create_client(
            "s3", config=config, **_client_arguments(args.url)
        ) as client:

            async def loop(count: int, record: bool) -> None:
                clock = time.perf_counter
                for _ in range(count):
                    start = clock()
                    response = await client.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)
                    if record:
                        latencies.append(clock() - start)
                    _check_put(response)

            warmup = max(1, args.warmup // concurrency)
            await asyncio.gather(*(loop(warmup, False) for _ in range(concurrency)))
            per_task = max(1, args.requests // concurrency)
            cpu = time.process_time()
            wall = time.perf_counter()
            await asyncio.gather(*(loop(per_task, True) for _ in range(concurrency)))
            wall = time.perf_counter() - wall
            cpu = time.process_time() - cpu
        return _figures_of(latencies, wall, cpu)

    return asyncio.run(main())


def _boto3_worker(args: argparse.Namespace) -> dict[str, float]:
    boto3 = importlib.import_module("boto3")
    config_module = importlib.import_module("botocore.config")
    threads: int = args.concurrency
    config = config_module.Config(**_botocore_settings(threads, args.checksums))
    client = boto3.session.Session().client("s3", config=config, **_client_arguments(args.url))

    def loop(count: int) -> list[float]:
        clock = time.perf_counter
        latencies = []
        for _ in range(count):
            start = clock()
            response = client.put_object(Bucket=BUCKET, Key=KEY, Body=BODY)
            latencies.append(clock() - start)
            _check_put(response)
        return latencies

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(loop, [max(1, args.warmup // threads)] * threads))
        per_thread = max(1, args.requests // threads)
        cpu = time.process_time()
        wall = time.perf_counter()
        parts = list(pool.map(loop, [per_thread] * threads))
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return _figures_of([x for part in parts for x in part], wall, cpu)


def _peer_worker(args: argparse.Namespace) -> None:
    worker = _aiobotocore_worker if args.peer == "aiobotocore" else _boto3_worker
    figures: dict[str, Any] = dict(worker(args))
    figures["versions"] = {
        name: importlib.metadata.version(name)
        for name in ("aiobotocore", "botocore", "boto3", "aiohttp")
    }
    print(json.dumps(figures), flush=True)


# -- the peers' environment and subprocesses ----------------------------------------------


def _peer_python() -> Path:
    """The peers' interpreter; creates their environment first when it is not complete."""
    python = PEER_VENV / "bin" / "python"
    marker = PEER_VENV / ".installed"
    wanted = " ".join(PEER_REQUIREMENTS) + "\n"
    if python.exists() and marker.exists() and marker.read_text() == wanted:
        return python
    print(f"creating {PEER_VENV} with {wanted.strip()} (first run only)...", file=sys.stderr)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(PEER_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    subprocess.run([*pip, *PEER_REQUIREMENTS], check=True, timeout=900)
    # Written last, so an interrupted install is redone rather than reused.
    marker.write_text(wanted)
    return python


def _peer_figures(
    python: Path, peer: str, url: str, args: argparse.Namespace
) -> tuple[Figures, dict[str, str]]:
    concurrency = BOTO3_THREADS if peer == "boto3" else PEER_CONCURRENCY
    command = [str(python), "-I", __file__, "--peer", peer, "--url", url]
    command += ["--requests", str(args.requests), "--warmup", str(args.warmup)]
    command += ["--concurrency", str(concurrency)]
    if args.botocore_checksums:
        command.append("--botocore-checksums")
    pipe = subprocess.PIPE
    with subprocess.Popen(command, stdout=pipe, stderr=pipe, text=True) as worker:
        try:
            stdout, stderr = worker.communicate(timeout=600)
        finally:
            # Interrupted or timed out: the worker goes too, and is waited for in full
            # (Popen's own exit gives it a quarter of a second on Ctrl-C).
            if worker.poll() is None:
                worker.kill()
            worker.wait()
    lines = stdout.strip().splitlines()
    if worker.returncode != 0 or not lines:
        raise RuntimeError(
            f"the {peer} worker failed with status {worker.returncode}:\n{stderr[-8000:]}"
        )
    found = json.loads(lines[-1])
    versions: dict[str, str] = found.pop("versions")
    return Figures(**found), versions


# -- cloudkit_trio ------------------------------------------------------------------------


def _cloudkit_figures(
    url: str, signed: bool, concurrency: int, args: argparse.Namespace
) -> Figures:
    import trio

    return trio.run(_measure_cloudkit, url, signed, concurrency, args.requests, args.warmup)


async def _measure_cloudkit(
    url: str, signed: bool, concurrency: int, requests: int, warmup: int
) -> Figures:
    """``cloud.execute`` of a signed or unsigned 1 KiB PUT by ``concurrency`` Trio tasks.

    The context's concurrency caps are raised so that they never bind.
    """
    import trio

    import cloudkit_trio as ck
    from cloudkit_trio.aws import SigV4Signer
    from cloudkit_trio.transport import NoAuthSigner

    # The explicit signer keeps the comparison the same whether or not AWS contexts
    # sign by default.
    signer = SigV4Signer("s3", REGION) if signed else NoAuthSigner()
    config = ck.CloudConfig(
        region=REGION,
        endpoint=url,
        max_retries=0,
        max_concurrency=max(256, concurrency),
        max_concurrency_per_endpoint=max(64, concurrency),
    )
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(config)
        .auth_provider(ck.StaticAuthProvider(ck.Credentials(ACCESS_KEY, SECRET_KEY)))
        .signer(signer)
        .build()
    )
    operation = ck.Operation(
        service="s3", name="put_object", method="PUT", path=f"/{BUCKET}/{KEY}", body=BODY
    )
    latencies: list[float] = []

    async def loop(cloud: ck.Cloud, count: int, record: bool) -> None:
        clock = time.perf_counter
        for _ in range(count):
            start = clock()
            response = await cloud.execute(operation)
            if record:
                latencies.append(clock() - start)
            if response.status_code != 200:
                raise RuntimeError(f"unexpected status {response.status_code}")

    async with context as cloud:
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(loop, cloud, max(1, warmup // concurrency), False)
        per_task = max(1, requests // concurrency)
        cpu = time.process_time()
        wall = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for _ in range(concurrency):
                nursery.start_soon(loop, cloud, per_task, True)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    return Figures(**_figures_of(latencies, wall, cpu))


# -- the load cases, interleaved ----------------------------------------------------------

#: (name, concurrency) of every load case, in their forward order.
Case = tuple[str, int]


def _cases(peers: bool) -> list[Case]:
    cases: list[Case] = []
    for concurrency in CONCURRENCIES:
        cases += [("unsigned", concurrency), ("signed", concurrency)]
    if peers:
        cases += [("aiobotocore", PEER_CONCURRENCY), ("boto3", BOTO3_THREADS)]
    return cases


def _run_cases(
    url: str, args: argparse.Namespace, python: Path | None
) -> tuple[dict[Case, list[Figures]], dict[str, str]]:
    cases = _cases(python is not None)
    results: dict[Case, list[Figures]] = {case: [] for case in cases}
    versions: dict[str, str] = {}
    for repetition in range(args.reps):
        order = cases if repetition % 2 == 0 else cases[::-1]
        for name, concurrency in order:
            if name in ("signed", "unsigned"):
                figures = _cloudkit_figures(url, name == "signed", concurrency, args)
            else:
                assert python is not None
                figures, versions = _peer_figures(python, name, url, args)
            results[name, concurrency].append(figures)
        print(f"  repetition {repetition + 1}/{args.reps} done", file=sys.stderr)
    return results, versions


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


def _ratios(
    results: dict[Case, list[Figures]], top: Case, bottom: Case
) -> tuple[float, float, float]:
    """Median per-repetition ratios top/bottom of req/s, CPU per request and p99."""
    pairs = list(zip(results.get(top, []), results.get(bottom, []), strict=False))
    return (
        _median([a.requests_per_second / b.requests_per_second for a, b in pairs]),
        _median([a.cpu_us_per_request / b.cpu_us_per_request for a, b in pairs]),
        _median([a.p99_us / b.p99_us for a, b in pairs]),
    )


def _print_case_table(results: dict[Case, list[Figures]], rows: list[tuple[str, Case]]) -> None:
    print("| case | c | req/s | p50 µs | p99 µs | CPU µs/req |")
    print("|---|---|---|---|---|---|")
    for label, case in rows:
        runs = results.get(case)
        if not runs:
            continue
        print(
            f"| {label} | {case[1]} "
            f"| {_median([f.requests_per_second for f in runs]):,.0f} "
            f"| {_median([f.p50_us for f in runs]):,.0f} "
            f"| {_median([f.p99_us for f in runs]):,.0f} "
            f"| {_median([f.cpu_us_per_request for f in runs]):,.0f} |"
        )


def _print_ratio_table(rows: list[tuple[str, tuple[float, float, float]]]) -> None:
    print("| ratio | req/s | CPU µs/req | p99 |")
    print("|---|---|---|---|")
    for label, (rate, cpu, p99) in rows:
        print(f"| {label} | {rate:.2f} | {cpu:.2f} | {p99:.2f} |")


# -- the signer profile -------------------------------------------------------------------


def _s3_request() -> httpx.Request:
    import httpx

    return httpx.Request("PUT", f"http://127.0.0.1:9000/{BUCKET}/{KEY}", content=BODY)


def _sqs_request() -> httpx.Request:
    import httpx

    headers = {
        "Content-Type": "application/x-amz-json-1.0",
        "X-Amz-Target": "AmazonSQS.SendMessage",
    }
    return httpx.Request("POST", "http://127.0.0.1:9000/", content=SQS_BODY, headers=headers)


#: Prepares one timing batch of the given size (fresh requests or signers, untimed) and
#: returns the call to time that many times.
Batch = Callable[[int], Callable[[], object]]


def _batch_us(batch: Batch, count: int) -> float:
    """µs per call of one batch of ``count`` calls, less the loop's own cost."""
    call = batch(count)
    empty = _nothing
    start = time.perf_counter_ns()
    for _ in range(count):
        empty()
    overhead = time.perf_counter_ns() - start
    start = time.perf_counter_ns()
    for _ in range(count):
        call()
    return max(0, time.perf_counter_ns() - start - overhead) / count / 1000


def _nothing() -> None:
    return None


def _repeat(call: Callable[[], object]) -> Batch:
    return lambda _count: call


#: One row of the breakdown: a label and, per request kind, µs per call (None: n/a).
Part = tuple[str, list[float | None]]

#: Rows of the breakdown that add up, with "the rest", to sign() with a cached key.
_SUMMED = (
    "  timestamp",
    "  credentials check (+ key and scope, where cached with it)",
    "  canonical: URL rewrite (_rewrite_url)",
    "  canonical: headers (_canonical_headers)",
    "  canonical: path + query",
    "  body hash (_payload_hash)",
    "  string-to-sign + HMAC (_signature)",
    "  header building: 3 sets + 2 pops on httpx.Headers (emulated)",
)
_TOTAL = "sign(), signing key cached"


def _signer_parts(
    make_signer: Callable[[], Any],
    make_request: Callable[[], httpx.Request],
    count: int,
    rounds: int,
) -> list[tuple[str, float | None]]:
    """The cost of ``sign()`` and of each private helper found, for one kind of request.

    The helpers are private and being reworked, so a part may be measured in more than
    one way: the first that works counts, and a part none of whose ways work is "n/a".
    Every part is timed once per round, the parts in turn, and the fastest round counts
    (other work on the machine only ever adds time).
    """
    import cloudkit_trio as ck

    credentials = ck.Credentials(ACCESS_KEY, SECRET_KEY)
    signer = make_signer()
    # The helpers live in the signer's defining module, whatever ``__module__`` says.
    helpers: dict[str, Any] = getattr(type(signer).sign, "__globals__", {})
    sample = make_request()
    signer.sign(sample, credentials)
    sample.headers.pop("Authorization", None)
    timestamp = sample.headers.get("X-Amz-Date", "20260101T000000Z")
    day = timestamp[:8]
    scope = f"{day}/{REGION}/{signer.service}/aws4_request"
    path_and_query: list[Any] = []

    def total() -> Batch:
        def batch(n: int) -> Callable[[], object]:
            queue = iter([make_request() for _ in range(n)])
            return lambda: signer.sign(next(queue), credentials)

        return batch

    def total_cold() -> Batch:
        def batch(n: int) -> Callable[[], object]:
            pairs = iter([(make_signer(), make_request()) for _ in range(n)])

            def call() -> None:
                cold, request = next(pairs)
                cold.sign(request, credentials)

            return call

        return batch

    def timestamp_method() -> Batch:
        method = signer._timestamp
        return _repeat(lambda: method(None))

    def timestamp_utc() -> Batch:
        utc, pattern = helpers["_utc"], helpers["_TIMESTAMP"]
        return _repeat(lambda: utc(None).strftime(pattern))

    def prepare() -> Batch:
        method = signer._prepare
        return _repeat(lambda: method(credentials, day))

    def check() -> Batch:
        function = helpers["_check_credentials"]
        return _repeat(lambda: function(credentials))

    def rewrite() -> Batch:
        method = signer._rewrite_url
        path_and_query[:] = method(sample)
        return _repeat(lambda: method(sample))

    def canonical_headers() -> Batch:
        function = helpers["_canonical_headers"]
        return _repeat(lambda: function(sample.headers.multi_items()))

    def path_query() -> Batch:
        canonical_path, canonical_query = signer._canonical_path, helpers["_canonical_query"]
        path, query = path_and_query

        def call() -> None:
            canonical_path(path)
            canonical_query((name, value or "") for name, value in query)

        return _repeat(call)

    def payload() -> Batch:
        return _repeat(lambda: signer._payload_hash(sample))

    def canonical_text() -> str:
        # A canonical request of the real size and shape; its exact bytes do not matter.
        block, signed = helpers["_canonical_headers"](sample.headers.multi_items())
        return "\n".join((sample.method, sample.url.path, "", block, signed, "0" * 64))

    def signature_function() -> Batch:
        # Given the derived key and the scope (which _prepare computed).
        function, text = helpers["_signature"], canonical_text()
        key = signer._signing_key(SECRET_KEY, day)
        return _repeat(lambda: function(key, timestamp, scope, text))

    def signature_method() -> Batch:
        # Looks the cached key up and builds the scope itself.
        method, text = signer._signature, canonical_text()
        return _repeat(lambda: method(SECRET_KEY, timestamp, text))

    def header_edits() -> Batch:
        # The header edits of a signature, done to a copy: not the signer's code, so it
        # stays measurable when the signer changes, and shows what httpx charges for them.
        headers = sample.headers.copy()
        digest = sample.headers.get("X-Amz-Content-SHA256", "0" * 64)
        authorization = f"AWS4-HMAC-SHA256 Credential={ACCESS_KEY}/{scope}, " + (
            "SignedHeaders=content-length;host;x-amz-content-sha256;x-amz-date, Signature="
            + "0" * 64
        )

        def call() -> None:
            headers.pop("Authorization", None)
            headers.pop("X-Amz-Security-Token", None)
            headers["X-Amz-Date"] = timestamp
            headers["X-Amz-Content-SHA256"] = digest
            headers["Authorization"] = authorization

        return _repeat(call)

    def key_cold() -> Batch:
        def batch(n: int) -> Callable[[], object]:
            signers = iter([make_signer() for _ in range(n)])
            return lambda: next(signers)._signing_key(SECRET_KEY, day)

        return batch

    def key_cached() -> Batch:
        return _repeat(lambda: signer._signing_key(SECRET_KEY, day))

    plan: list[tuple[str, list[Callable[[], Batch]], int]] = [
        (_TOTAL, [total], count),
        ("sign(), new signer (key derived)", [total_cold], max(1, count // 4)),
        (_SUMMED[0], [timestamp_method, timestamp_utc], count),
        (_SUMMED[1], [prepare, check], count),
        (_SUMMED[2], [rewrite], count),
        (_SUMMED[3], [canonical_headers], count),
        (_SUMMED[4], [path_query], count),
        (_SUMMED[5], [payload], count),
        (_SUMMED[6], [signature_function, signature_method], count),
        (_SUMMED[7], [header_edits], count),
        ("  signing key, first of the day (_signing_key)", [key_cold], max(1, count // 4)),
        ("  signing key, cached (_signing_key)", [key_cached], count),
    ]
    batches: dict[str, tuple[Batch, int]] = {}
    for label, ways, size in plan:
        for build in ways:
            # A helper that is missing or has changed its signature raises here, and the
            # next way (or "n/a") takes over instead of the benchmark stopping.
            try:
                batch = build()
                batch(1)()
            except Exception:
                continue
            batches[label] = (batch, size)
            break
    timings: dict[str, list[float]] = {label: [] for label in batches}
    for _ in range(rounds):
        for label, (batch, size) in batches.items():
            timings[label].append(_batch_us(batch, size))
    fastest: dict[str, float | None] = {label: None for label, _, _ in plan}
    fastest.update({label: min(values) for label, values in timings.items()})
    summed = [fastest[label] for label in _SUMMED]
    whole = fastest[_TOTAL]
    rest = None
    if whole is not None and None not in summed:
        rest = whole - sum(v for v in summed if v is not None)
    rows = list(fastest.items())
    rows.insert(len(_SUMMED) + 2, ("  the rest of sign() (by difference)", rest))
    return rows


#: A cProfile summary: (function, share, calls per sign()) rows, by own and by inclusive time.
Profile = tuple[list[tuple[str, float, float]], list[tuple[str, float, float]]]


def _top_functions(
    make_signer: Callable[[], Any], make_request: Callable[[], httpx.Request], count: int
) -> Profile:
    """cProfile over ``count`` sign() calls.

    Two views: every function by its share of the total own time (``tottime``), and the
    functions ``sign()`` calls directly by their share of its inclusive time (``cumtime``
    of the calls made from ``sign()``), which needs no knowledge of the signer's helpers.
    """
    import cloudkit_trio as ck

    credentials = ck.Credentials(ACCESS_KEY, SECRET_KEY)
    signer = make_signer()
    requests = [make_request() for _ in range(count)]
    profile = cProfile.Profile()
    profile.enable()
    for request in requests:
        signer.sign(request, credentials)
    profile.disable()
    # pstats keeps its table in an attribute that typeshed does not declare:
    # (file, line, name) -> (primitive calls, calls, tottime, cumtime, callers).
    table: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = getattr(
        pstats.Stats(profile), "stats", {}
    )

    def label(key: tuple[str, int, str]) -> str:
        file, line, name = key
        return name if file == "~" else f"{name} ({Path(file).name}:{line})"

    entries = {k: v for k, v in table.items() if "_lsprof.Profiler" not in k[2]}
    own_total = sum(entry[2] for entry in entries.values()) or math.nan
    by_own = [(label(k), v[2] / own_total, v[1] / count) for k, v in entries.items()]
    signs = [k for k in entries if k[2] == "sign"]
    by_callee: list[tuple[str, float, float]] = []
    if signs:
        sign = max(signs, key=lambda k: entries[k][3])
        inclusive = entries[sign][3] or math.nan
        by_callee.append((label(sign) + ", its own code", entries[sign][2] / inclusive, 1.0))
        for key, entry in entries.items():
            from_sign = entry[4].get(sign)
            if from_sign is not None:
                by_callee.append((label(key), from_sign[3] / inclusive, from_sign[1] / count))
    by_own.sort(key=lambda row: row[1], reverse=True)
    by_callee.sort(key=lambda row: row[1], reverse=True)
    return by_own, by_callee


def _signer_profile(count: int) -> tuple[list[Part], dict[str, Profile]]:
    from cloudkit_trio.aws import SigV4Signer

    kinds: list[tuple[str, Callable[[], Any], Callable[[], httpx.Request]]] = [
        ("s3 PUT 1 KiB", lambda: SigV4Signer("s3", REGION), _s3_request),
        ("sqs JSON POST", lambda: SigV4Signer("sqs", REGION), _sqs_request),
    ]
    columns = [_signer_parts(signer, request, count, 7) for _, signer, request in kinds]
    parts: list[Part] = [
        (label, [column[index][1] for column in columns])
        for index, (label, _) in enumerate(columns[0])
    ]
    profiles = {
        label: _top_functions(signer, request, min(count, 3000)) for label, signer, request in kinds
    }
    return parts, profiles


def _print_profile(parts: list[Part], profiles: dict[str, Profile]) -> None:
    def cell(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    print("| part of sign() | s3 PUT 1 KiB µs | sqs JSON POST µs |")
    print("|---|---|---|")
    for label, values in parts:
        print(f"| {label} | " + " | ".join(cell(v) for v in values) + " |")
    for label, (by_own, by_callee) in profiles.items():
        for title, rows, limit in (
            ("what sign() calls, by share of its inclusive time", by_callee, 12),
            ("top functions by share of own time (tottime)", by_own, 8),
        ):
            print()
            print(f"cProfile, {label}: {title}")
            print("| function | share | calls per sign() |")
            print("|---|---|---|")
            for name, share, calls in rows[:limit]:
                print(f"| {name} | {share:.0%} | {calls:g} |")


# -- the report ---------------------------------------------------------------------------


def _report(
    results: dict[Case, list[Figures]],
    parts: list[Part],
    profiles: dict[str, Profile],
) -> None:
    print()
    print("## 1. cloud.execute, PUT 1 KiB: signed (SigV4Signer) vs unsigned (NoAuthSigner)")
    rows = [(f"cloudkit {n}", (n, c)) for c in CONCURRENCIES for n in ("unsigned", "signed")]
    _print_case_table(results, rows)
    print()
    signing = {c: _ratios(results, ("signed", c), ("unsigned", c)) for c in CONCURRENCIES}
    _print_ratio_table([(f"signed/unsigned c={c}", signing[c]) for c in CONCURRENCIES])

    peers = ("aiobotocore", PEER_CONCURRENCY) in results
    cloudkit = ("signed", PEER_CONCURRENCY)
    aio = _ratios(results, cloudkit, ("aiobotocore", PEER_CONCURRENCY))
    boto = _ratios(results, cloudkit, ("boto3", BOTO3_THREADS))
    if peers:
        print()
        print(f"## 2. S3 PutObject, 1 KiB, signed, c={PEER_CONCURRENCY} (boto3: threads)")
        _print_case_table(
            results,
            [
                ("cloudkit_trio (trio)", cloudkit),
                ("aiobotocore (asyncio)", ("aiobotocore", PEER_CONCURRENCY)),
                ("boto3 (threads)", ("boto3", BOTO3_THREADS)),
            ],
        )
        print()
        _print_ratio_table([("cloudkit/aiobotocore", aio), ("cloudkit/boto3", boto)])

    print()
    print("## 3. SigV4Signer.sign(): per call, and where the time goes")
    _print_profile(parts, profiles)

    print()
    for c in CONCURRENCIES:
        rate, cpu, p99 = signing[c]
        print(f"signing_c{c} signed/unsigned req_s={rate:.2f} cpu={cpu:.2f} p99={p99:.2f}")
    if peers:
        for label, (rate, cpu, p99) in (("aiobotocore", aio), (f"boto3x{BOTO3_THREADS}", boto)):
            print(
                f"s3_put_c{PEER_CONCURRENCY} cloudkit/{label} "
                f"req_s={rate:.2f} cpu={cpu:.2f} p99={p99:.2f}"
            )
    total = dict(parts).get(_TOTAL, [None, None])
    print(
        "sign_us "
        + " ".join(
            f"{kind}={'n/a' if v is None else f'{v:.1f}'}"
            for kind, v in zip(("s3_put_1k", "sqs_json"), total, strict=True)
        )
    )


def _parse() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--requests", type=int, help="requests per load case (default 3000)")
    parser.add_argument("--warmup", type=int, help="unmeasured requests first (default 300)")
    parser.add_argument("--reps", type=int, help="repetitions (default 3)")
    parser.add_argument("--quick", action="store_true", help="a short run, noisier figures")
    parser.add_argument("--no-peers", action="store_true", help="skip aiobotocore and boto3")
    parser.add_argument(
        "--botocore-checksums",
        action="store_true",
        help="keep botocore's default CRC32 request checksum (off: SHA-256 only, like ours)",
    )
    parser.add_argument(
        "--server",
        choices=["auto", "nginx", "fallback"],
        default="auto",
        help="which loopback server to start (auto: nginx when installed)",
    )
    parser.add_argument("--sign-calls", type=int, help="sign() calls per timing round")
    # The peers' worker mode, used by this script's own subprocesses.
    parser.add_argument("--peer", choices=["aiobotocore", "boto3"], help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--concurrency", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    args.checksums = args.botocore_checksums
    quick = args.quick
    for name, normal, short in (
        ("requests", 3000, 600),
        ("warmup", 300, 100),
        ("reps", 3, 2),
        ("sign_calls", 4000, 1000),
    ):
        if getattr(args, name) is None:
            setattr(args, name, short if quick else normal)
    return args


def main() -> None:
    args = _parse()
    if args.serve is not None:
        import trio

        trio.run(_serve_fallback, args.serve)
        return
    if args.peer is not None:
        _peer_worker(args)
        return
    import httpx
    import trio

    python = None if args.no_peers else _peer_python()
    with _put_server(args.server) as (url, description, log):
        print(
            f"server: {description}; {args.requests} requests per case, {args.reps} "
            f"repetitions; Python {sys.version.split()[0]}, trio {trio.__version__}, "
            f"httpx {httpx.__version__}, cloudkit_trio "
            f"{importlib.metadata.version('cloudkit-trio')}; {os.cpu_count()} CPUs"
        )
        try:
            results, versions = _run_cases(url, args, python)
        except RuntimeError:
            if log.exists():
                print(f"the server's log:\n{log.read_text()[-3000:]}", file=sys.stderr)
            raise
    if versions:
        print("peers: " + ", ".join(f"{name} {v}" for name, v in sorted(versions.items())))
        if not args.botocore_checksums:
            print("peers: botocore request checksums off (when_required), as for cloudkit")
    print("signer profile...", file=sys.stderr)
    parts, profiles = _signer_profile(args.sign_calls)
    _report(results, parts, profiles)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        # The servers and workers have been stopped on the way out.
        print("interrupted", file=sys.stderr)
        sys.exit(130)
