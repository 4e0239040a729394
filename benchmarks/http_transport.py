"""HTTP client throughput on Trio against a loopback server: httpx, PooledTransport, bare h11.

Run it with ``python benchmarks/http_transport.py`` (``--help`` for the knobs). It starts its own
server on 127.0.0.1: nginx with one worker serving a 3-byte body when ``nginx`` is on the
PATH (or in /usr/sbin), otherwise a small Trio server in a subprocess, which then is likely
the bottleneck (the script says so). For every concurrency it measures, interleaved within
each repetition:

* ``httpx``: one shared ``httpx.AsyncClient`` with httpx's default transport;
* ``httpx+pooled``: one shared ``httpx.AsyncClient(transport=PooledTransport())``;
* ``pooled direct``: ``PooledTransport.handle_async_request`` without a client, as the
  runtime calls it: a new ``httpx.Request`` per call (from a URL parsed once), the body
  read with ``aread()``;
* ``pooled bare``: the same, with one prebuilt request and no ``aread()``: the transport's
  own cost;
* ``h11 loop``: one bare h11 connection per worker on a Trio socket (the floor);
* ``httpx, no I/O``: ``httpx.AsyncClient`` over a transport that answers from memory, the
  client's own cost per request, which bounds any transport used behind it;
* ``cloud.execute``: see :func:`cloud_execute_figures` (skipped until it returns figures).

Each cell is the median over the repetitions of: requests per second (wall clock), p50 and
p99 latency, and client CPU per request (``time.process_time``). Ratios are computed per
repetition, then their median is printed. Nothing here is asserted: targets are read off
the printed table.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import h11
import httpx
import trio

import cloudkit_trio
from cloudkit_trio.transport import NoAuthSigner, PooledTransport

BODY = b"ok\n"


@dataclass(frozen=True)
class Figures:
    """What one measurement of one case yields."""

    requests_per_second: float
    p50_us: float
    p99_us: float
    cpu_us_per_request: float


# -- the server ---------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _wait_listening(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with status {process.returncode}")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
        except OSError:
            time.sleep(0.05)
        else:
            return
    raise RuntimeError("the server did not start listening within 10 s")


def _nginx_binary() -> str | None:
    return shutil.which("nginx") or shutil.which("nginx", path="/usr/sbin:/usr/local/sbin")


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
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen 127.0.0.1:{port} backlog=4096;
        location / {{
            default_type text/plain;
            return 200 "ok\\n";
        }}
    }}
}}
"""


@contextmanager
def loopback_server(kind: str = "auto") -> Iterator[tuple[str, str]]:
    """Start a server on 127.0.0.1; yield its URL and a description; stop it afterwards.

    ``kind`` is ``"nginx"``, ``"fallback"`` or ``"auto"`` (nginx when installed).
    """
    port = _free_port()
    nginx = None if kind == "fallback" else _nginx_binary()
    if kind == "nginx" and nginx is None:
        raise RuntimeError("nginx is not installed")
    with tempfile.TemporaryDirectory(prefix="ck-bench-") as prefix:
        if nginx is not None:
            Path(prefix).chmod(0o755)
            user = "user root;" if os.geteuid() == 0 else ""
            conf = Path(prefix) / "nginx.conf"
            conf.write_text(_NGINX_CONF.format(prefix=prefix, port=port, user=user))
            command = [nginx, "-p", prefix, "-c", str(conf), "-e", f"{prefix}/error.log"]
            version = subprocess.run([nginx, "-v"], capture_output=True, text=True, check=False)
            description = f"{version.stderr.strip().split('/')[-1]} nginx, 1 worker"
        else:
            command = [sys.executable, __file__, "--serve", str(port)]
            description = "fallback Trio server (no nginx found): it may be the bottleneck"
        process = subprocess.Popen(command, stdin=subprocess.DEVNULL)
        try:
            _wait_listening(port, process)
            yield f"http://127.0.0.1:{port}/", description
        finally:
            process.terminate()
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


async def _serve_fallback(port: int) -> None:
    response = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n\r\nok\n"

    async def handle(stream: trio.SocketStream) -> None:
        buffer = b""
        try:
            while True:
                data = await stream.receive_some(65536)
                if not data:
                    return
                buffer += data
                count = buffer.count(b"\r\n\r\n")
                if count:
                    buffer = buffer[buffer.rfind(b"\r\n\r\n") + 4 :]
                    await stream.send_all(response * count)
        except trio.BrokenResourceError:
            return

    await trio.serve_tcp(handle, port, host="127.0.0.1", backlog=4096)


# -- the measurement ------------------------------------------------------------------------

#: Makes one request; built once per worker by a case's ``open_worker``.
Request = Callable[[], Awaitable[None]]


async def measure(
    open_worker: Callable[[], Awaitable[tuple[Request, Callable[[], Awaitable[None]]]]],
    concurrency: int,
    requests: int,
    warmup: int,
) -> Figures:
    """Run ``requests`` requests over ``concurrency`` workers after a warm-up; time them."""
    workers = [await open_worker() for _ in range(concurrency)]
    latencies: list[float] = []
    per_worker = max(1, requests // concurrency)

    async def run(one: Request, count: int, record: bool) -> None:
        clock = time.perf_counter
        for _ in range(count):
            start = clock()
            await one()
            if record:
                latencies.append(clock() - start)

    try:
        async with trio.open_nursery() as nursery:
            for one, _ in workers:
                nursery.start_soon(run, one, max(1, warmup // concurrency), False)
        cpu = time.process_time()
        wall = time.perf_counter()
        async with trio.open_nursery() as nursery:
            for one, _ in workers:
                nursery.start_soon(run, one, per_worker, True)
        wall = time.perf_counter() - wall
        cpu = time.process_time() - cpu
    finally:
        for _, close in workers:
            await close()
    latencies.sort()
    done = len(latencies)
    return Figures(
        requests_per_second=done / wall,
        p50_us=latencies[done // 2] * 1e6,
        p99_us=latencies[min(done - 1, math.ceil(done * 0.99) - 1)] * 1e6,
        cpu_us_per_request=cpu / done * 1e6,
    )


async def _noop() -> None:
    return None


async def httpx_figures(concurrency: int, url: str, requests: int, warmup: int) -> Figures:
    """One ``httpx.AsyncClient`` shared by every worker, httpx's default transport."""
    limits = httpx.Limits(max_connections=64, max_keepalive_connections=64)
    async with httpx.AsyncClient(limits=limits) as client:

        async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
            async def one() -> None:
                (await client.get(url)).raise_for_status()

            return one, _noop

        return await measure(open_worker, concurrency, requests, warmup)


async def pooled_client_figures(concurrency: int, url: str, requests: int, warmup: int) -> Figures:
    """One ``httpx.AsyncClient`` with a :class:`PooledTransport`, shared by every worker."""
    async with httpx.AsyncClient(transport=PooledTransport()) as client:

        async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
            async def one() -> None:
                (await client.get(url)).raise_for_status()

            return one, _noop

        return await measure(open_worker, concurrency, requests, warmup)


async def pooled_direct_figures(concurrency: int, url: str, requests: int, warmup: int) -> Figures:
    """``PooledTransport.handle_async_request`` without a client, as the runtime calls it.

    A new ``httpx.Request`` per call from a URL parsed once (the runtime caches parsed
    URLs), the body read with ``aread()``.
    """
    timeout = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    parsed = httpx.URL(url)
    async with PooledTransport() as transport:

        async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
            async def one() -> None:
                request = httpx.Request("GET", parsed, extensions={"timeout": timeout})
                response = await transport.handle_async_request(request)
                await response.aread()
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected status {response.status_code}")

            return one, _noop

        return await measure(open_worker, concurrency, requests, warmup)


async def pooled_bare_figures(concurrency: int, url: str, requests: int, warmup: int) -> Figures:
    """The transport's own cost: one prebuilt request sent again and again, no httpx reading.

    A 3-byte body arrives with its head, so the transport has read it (and given the
    connection back) before it returns; only httpx's Request and Response models are spared.
    """
    timeout = {"connect": 5.0, "read": 5.0, "write": 5.0, "pool": 5.0}
    request = httpx.Request("GET", url, extensions={"timeout": timeout})
    async with PooledTransport() as transport:

        async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
            async def one() -> None:
                response = await transport.handle_async_request(request)
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected status {response.status_code}")

            return one, _noop

        return await measure(open_worker, concurrency, requests, warmup)


class _CannedTransport(httpx.AsyncBaseTransport):
    """Answers every request from memory after one checkpoint: no network, no pool."""

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await trio.lowlevel.checkpoint()
        return httpx.Response(
            200,
            headers=[(b"Content-Type", b"text/plain"), (b"Content-Length", b"3")],
            stream=httpx.ByteStream(BODY),
            request=request,
        )


async def client_ceiling_figures(concurrency: int, url: str, requests: int, warmup: int) -> Figures:
    """``httpx.AsyncClient`` with a transport that does no I/O: the client's own cost.

    Its throughput bounds what any transport behind ``AsyncClient`` can reach.
    """
    async with httpx.AsyncClient(transport=_CannedTransport()) as client:

        async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
            async def one() -> None:
                (await client.get(url)).raise_for_status()

            return one, _noop

        return await measure(open_worker, concurrency, requests, warmup)


async def h11_figures(concurrency: int, url: str, requests: int, warmup: int) -> Figures:
    """The floor: one bare h11 connection per worker, no pool, no httpx."""
    parsed = httpx.URL(url)
    host, port = parsed.host, parsed.port or 80
    headers = [(b"Host", f"{host}:{port}".encode()), (b"Accept", b"*/*")]
    target = parsed.raw_path

    async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
        stream = await trio.open_tcp_stream(host, port)
        connection = h11.Connection(h11.CLIENT)

        async def one() -> None:
            data = connection.send(h11.Request(method=b"GET", target=target, headers=headers))
            await stream.send_all(data + connection.send(h11.EndOfMessage()))
            status = 0
            while True:
                event = connection.next_event()
                if event is h11.NEED_DATA:
                    connection.receive_data(await stream.receive_some(65536))
                elif type(event) is h11.Response:
                    status = event.status_code
                elif type(event) is h11.EndOfMessage:
                    break
            if status != 200:
                raise RuntimeError(f"unexpected status {status}")
            connection.start_next_cycle()

        return one, stream.aclose

    return await measure(open_worker, concurrency, requests, warmup)


async def cloud_execute_figures(
    concurrency: int, url: str, requests: int, warmup: int
) -> Figures | None:
    """``await cloud.execute(op)`` through the whole runtime, on its default transport.

    Credentials (static), the endpoint's breaker and admission, the retry policy, the
    metrics aggregator and the logger are all in the path; the concurrency caps are raised
    so they do not limit the figure. Signing is off (``NoAuthSigner``; AWS contexts sign
    by default), as the other rows sign nothing either.
    """
    config = cloudkit_trio.CloudConfig(
        max_concurrency=max(256, concurrency), max_concurrency_per_endpoint=max(64, concurrency)
    )
    context = (
        cloudkit_trio.CloudContext.builder(cloudkit_trio.ProviderType.AWS)
        .config(config)
        .auth_provider(
            cloudkit_trio.StaticAuthProvider(cloudkit_trio.Credentials("AKID", "SECRET"))
        )
        .signer(NoAuthSigner())
        .logger(cloudkit_trio.StdlibLogger())
        .build()
    )
    operation = cloudkit_trio.Operation(service="bench", name="get", url=url)
    async with context as cloud:

        async def open_worker() -> tuple[Request, Callable[[], Awaitable[None]]]:
            async def one() -> None:
                response = await cloud.execute(operation)
                if response.status_code != 200:
                    raise RuntimeError(f"unexpected status {response.status_code}")

            return one, _noop

        return await measure(open_worker, concurrency, requests, warmup)


Case = Callable[[int, str, int, int], Awaitable[Figures | None]]
CASES: dict[str, Case] = {
    "httpx": httpx_figures,
    "httpx+pooled": pooled_client_figures,
    "pooled direct": pooled_direct_figures,
    "pooled bare": pooled_bare_figures,
    "h11 loop": h11_figures,
    "httpx, no I/O": client_ceiling_figures,
    "cloud.execute": cloud_execute_figures,
}


# -- the report ---------------------------------------------------------------------------


def _median(values: list[float]) -> float:
    return statistics.median(values) if values else math.nan


async def run(args: argparse.Namespace, url: str) -> dict[tuple[str, int], list[Figures]]:
    results: dict[tuple[str, int], list[Figures]] = {}
    for repetition in range(args.reps):
        for concurrency in args.concurrency:
            for name, case in CASES.items():
                if args.cases and name not in args.cases:
                    continue
                figures = await case(concurrency, url, args.requests, args.warmup)
                if figures is not None:
                    results.setdefault((name, concurrency), []).append(figures)
        print(f"  repetition {repetition + 1}/{args.reps} done", file=sys.stderr)
    return results


def report(results: dict[tuple[str, int], list[Figures]], concurrencies: list[int]) -> None:
    print("| case | c | req/s | p50 µs | p99 µs | CPU µs/req | x httpx req/s | x h11 loop req/s |")
    print("|---|---|---|---|---|---|---|---|")
    for concurrency in concurrencies:
        base = results.get(("httpx", concurrency), [])
        floor = results.get(("h11 loop", concurrency), [])
        for name in CASES:
            runs = results.get((name, concurrency))
            if not runs:
                continue
            vs_httpx = [
                f.requests_per_second / b.requests_per_second
                for f, b in zip(runs, base, strict=False)
            ]
            vs_floor = [
                f.requests_per_second / b.requests_per_second
                for f, b in zip(runs, floor, strict=False)
            ]
            print(
                f"| {name} | {concurrency} "
                f"| {_median([f.requests_per_second for f in runs]):,.0f} "
                f"| {_median([f.p50_us for f in runs]):,.0f} "
                f"| {_median([f.p99_us for f in runs]):,.0f} "
                f"| {_median([f.cpu_us_per_request for f in runs]):,.0f} "
                f"| {_median(vs_httpx):.2f} | {_median(vs_floor):.2f} |"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per cell")
    parser.add_argument("--warmup", type=int, default=200, help="unmeasured requests first")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (medians reported)")
    parser.add_argument(
        "--concurrency", type=int, nargs="+", default=[1, 16, 64], help="workers per case"
    )
    parser.add_argument("--cases", nargs="+", choices=list(CASES), help="only these cases")
    parser.add_argument(
        "--server",
        choices=["auto", "nginx", "fallback"],
        default="auto",
        help="which loopback server to start (auto: nginx when installed)",
    )
    parser.add_argument("--url", help="measure this server instead of starting one")
    parser.add_argument("--serve", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve is not None:
        trio.run(_serve_fallback, args.serve)
        return
    server = _given(args.url) if args.url else loopback_server(args.server)
    with server as (url, description):
        print(
            f"server: {description}; {args.requests} requests per cell, "
            f"{args.reps} repetitions; Python {sys.version.split()[0]}, trio {trio.__version__}, "
            f"httpx {httpx.__version__}, h11 {importlib.metadata.version('h11')}"
        )
        results = trio.run(run, args, url)
    report(results, args.concurrency)


@contextmanager
def _given(url: str) -> Iterator[tuple[str, str]]:
    yield url, "given by --url"


if __name__ == "__main__":
    main()
