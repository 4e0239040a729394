"""The Redis backend of :class:`~cloudkit_trio.spi.SharedState`, on coredis (native on Trio).

Each operation is one server-side Lua script, so it is atomic however many processes run
it at once, and it reads the server's clock (``TIME``), so hosts with skewed clocks agree.
Every key is under ``namespace`` and expires; nothing grows without bound. Every call is
bounded by ``timeout`` (20 ms by default): past it, or on any error of the store, the call
raises :class:`~cloudkit_trio.spi.SharedStateUnavailable` and the caller decides locally.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from types import TracebackType
from typing import Any, Final, Self

import attrs
import coredis
import coredis.exceptions
import coredis.retry
import trio

from .._errors import ConfigError
from .._validation import check_seconds
from ..spi._shared_state import (
    ForcedState,
    Lease,
    SharedState,
    SharedStateUnavailable,
    SharedView,
)

__all__ = ["RedisState"]

# Time in milliseconds: the caller's clock when one is given (tests), else the server's.
_NOW: Final = """
local now
if ARGV[1] ~= '' then
    now = tonumber(ARGV[1])
else
    local t = redis.call('TIME')
    now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
end
"""

# KEYS[1] bucket, KEYS[2] the processes' demands; ARGV: now, rate (per second), burst,
# count, process, period (ms). A bucket is created full; it expires once it would have
# refilled anyway, so an idle key costs nothing. With a process named, the rate is shared
# max-min fairly among the processes that lease it, by the rate each was asked at (tokens
# per ms, stored with when it leased): a process gets its share of the rate for the time
# since its last lease (the fraction of a token it could not take is carried to the
# next), so the order in which processes lease does not decide who sends.
_LEASE: Final = (
    _NOW
    + """
local rate = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local count = tonumber(ARGV[4])
local process = ARGV[5]
local period = tonumber(ARGV[6])
local state = redis.call('HMGET', KEYS[1], 'tokens', 'at')
local tokens = tonumber(state[1])
local at = tonumber(state[2])
if tokens == nil or at == nil then
    tokens = burst
    at = now
end
if now > at then
    tokens = math.min(burst, tokens + (now - at) * rate / 1000)
    at = now
end
local allowed = count
local carry = 0
local demand = count / period
if process ~= '' then
    local entries = redis.call('HGETALL', KEYS[2])
    local demands = {}
    local last = nil
    for i = 1, #entries, 2 do
        local asked, since, left = string.match(entries[i + 1], '^([^:]*):([^:]*):([^:]*)$')
        asked = tonumber(asked) or 0
        since = tonumber(since)
        -- A process asked at a rate leases again once it has been asked for one more
        -- token: its demand counts for twice that long, and for no more than 30 periods.
        local live = 30 * period
        if asked > 0 then
            live = math.min(live, 2 * math.max(period, 1 / asked))
        end
        if since == nil or now - since > 30 * period then
            redis.call('HDEL', KEYS[2], entries[i])
        elseif entries[i] == process then
            last = since
            carry = tonumber(left) or 0
        elseif now - since <= live then
            table.insert(demands, asked)
        end
    end
    -- A process asks for what it was asked since its last lease: a quiet one leases
    -- seldom, and its demand is that count over the whole time, not over one period.
    local elapsed = period
    if last ~= nil then
        demand = count / math.max(now - last, period)
        elapsed = math.min(math.max(now - last, 0), 2 * period)
    end
    table.insert(demands, demand)
    table.sort(demands)
    local remaining = rate / 1000
    local level = nil
    for i = 1, #demands do
        local fair = remaining / (#demands - i + 1)
        if demands[i] > fair then
            level = fair
            break
        end
        remaining = remaining - demands[i]
    end
    local share = count / period
    if level ~= nil and level < share then
        share = level
    end
    local entitled = share * elapsed + carry
    allowed = math.min(count, math.floor(entitled))
    carry = math.min(entitled - allowed, 1)
end
local granted = math.min(allowed, math.floor(tokens))
if process ~= '' then
    carry = math.min(carry + allowed - granted, 1)
    redis.call('HSET', KEYS[2], process, tostring(demand) .. ':' .. now .. ':' .. tostring(carry))
    redis.call('PEXPIRE', KEYS[2], math.ceil(30 * period) + 1000)
end
tokens = tokens - granted
redis.call('HSET', KEYS[1], 'tokens', tostring(tokens), 'at', tostring(at))
redis.call('PEXPIRE', KEYS[1], math.ceil(burst * 1000 / rate) + 1000)
local wait = 0
if granted < count then
    wait = (1 - tokens) * 1000 / rate
end
return {granted, tostring(wait)}
"""
)

# KEYS[1] the endpoint's reports; ARGV: now, process, milliseconds, channel, endpoint
# (published: the change is pushed to every subscriber). The key lives as long
# as its latest report (relative to now: the clock may be the caller's, not the server's).
_REPORT_OPEN: Final = (
    _NOW
    + """
local expiry = now + tonumber(ARGV[3])
redis.call('ZADD', KEYS[1], expiry, ARGV[2])
local last = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
redis.call('PEXPIRE', KEYS[1], math.ceil(tonumber(last[2]) - now) + 1000)
redis.call('PUBLISH', ARGV[4], ARGV[5])
return 1
"""
)

# KEYS[1] the endpoint's reports; ARGV: now. Reports past their time are dropped first.
_OPEN_REPORTS: Final = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
return redis.call('ZCARD', KEYS[1])
"""
)

# KEYS: the endpoints' reports, then the overrides hash; ARGV: now, then the endpoints.
# Counts and overrides, in the order of the endpoints.
_VIEWS: Final = (
    _NOW
    + """
local overrides = KEYS[#KEYS]
local result = {}
for i = 1, #KEYS - 1 do
    redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
    result[#result + 1] = redis.call('ZCARD', KEYS[i])
    local forced = redis.call('HGET', overrides, ARGV[i + 1])
    if forced == false then forced = '' end
    result[#result + 1] = forced
end
return result
"""
)

# KEYS[1] the overrides hash; ARGV: endpoint, state, milliseconds, channel. Every override set
# renews the hash's life: overrides last ``override_ttl`` after the latest one was set.
_SET_OVERRIDE: Final = """
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
redis.call('PUBLISH', ARGV[4], ARGV[1])
return 1
"""

# KEYS[1] the overrides hash; ARGV: endpoint, channel.
_LIFT_OVERRIDE: Final = """
redis.call('HDEL', KEYS[1], ARGV[1])
redis.call('PUBLISH', ARGV[2], ARGV[1])
return 1
"""

# KEYS[1] the endpoint's reports; ARGV: channel, endpoint.
_RECOVERED: Final = """
redis.call('DEL', KEYS[1])
redis.call('PUBLISH', ARGV[1], ARGV[2])
return 1
"""

# KEYS[1] the probe lease, KEYS[2] the endpoint's reports; ARGV: now, process, ms. Granted
# only while somebody still reports the endpoint open: once a probe has succeeded (every
# report withdrawn) there is nothing left to probe, however late a process asks.
_ACQUIRE_PROBE: Final = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
if redis.call('ZCARD', KEYS[2]) == 0 then
    return 0
end
local holder = redis.call('GET', KEYS[1])
if holder == false or holder == ARGV[2] then
    redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
    return 1
end
return 0
"""
)

# KEYS[1] the probe lease; ARGV: process.
_RELEASE_PROBE: Final = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""

_DEFAULT_TIMEOUT: Final = 0.020
_DEFAULT_OVERRIDE_TTL: Final = 3600.0


async def _endpoints(pubsub: Any) -> AsyncIterator[str]:
    async for message in pubsub:
        if message and message.get("type") == "message":
            data = message["data"]
            yield data.decode() if isinstance(data, bytes) else str(data)


def _forced_state(text: str) -> ForcedState | None:
    try:
        return ForcedState(text)
    except ValueError:
        return None  # nothing, or somebody else's value under our key


class _NoScript(Exception):
    """The server does not have the script cached (internal)."""


@attrs.frozen
class _Script:
    source: str
    sha: str = attrs.field(init=False)

    @sha.default
    def _digest(self) -> str:
        return hashlib.sha1(self.source.encode()).hexdigest()  # Redis names scripts by SHA-1


class RedisState(SharedState):
    """Endpoint state shared through one Redis server.

    Args:
        url: ``redis://host:port/db`` (``rediss://`` for TLS; credentials in the URL are
            used to connect and never logged or shown).
        namespace: Prefix of every key, so several applications can share a server.
        timeout: Seconds any one call may take before the runtime decides locally.
        override_ttl: Seconds the manual overrides (:meth:`force`) last after the latest
            one was set, unless lifted: every key expires, and setting an override again
            renews them.
        clock: The time the scripts count in, seconds; None (the default) uses the Redis
            server's clock, the same for every host. Tests pass ``trio.current_time``
            to drive shared buckets with Trio's mock clock.

    Use it as an async context manager (it owns its connections), or hand it to the
    builder, which enters it in the context's supervision tree.

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        url: str = "redis://127.0.0.1:6379/0",
        *,
        namespace: str = "cloudkit",
        timeout: float = _DEFAULT_TIMEOUT,
        override_ttl: float = _DEFAULT_OVERRIDE_TTL,
        clock: Callable[[], float] | None = None,
    ) -> None:
        if not isinstance(url, str) or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(
                "RedisState.url must be a redis://, rediss:// or unix:// URL", field="url"
            )
        if not isinstance(namespace, str) or not namespace or any(c.isspace() for c in namespace):
            raise ConfigError(
                f"RedisState.namespace must be a non-empty word, got {namespace!r}",
                field="namespace",
                value=namespace,
            )
        self._timeout = check_seconds("RedisState.timeout", timeout)
        self._override_ttl = check_seconds("RedisState.override_ttl", override_ttl)
        self._namespace = namespace
        self._overrides = f"{namespace}:overrides"
        #: Where every change is published: the endpoint it is about.
        self._channel = f"{namespace}:changes"
        self._clock = clock
        self._client: coredis.Redis[bytes] = coredis.Redis.from_url(
            url,
            # Our own bound is the only one: no retries behind it, no longer socket waits.
            retry_policy=coredis.retry.NoRetryPolicy(),
            stream_timeout=self._timeout,
            connect_timeout=self._timeout,
        )
        self._scripts = {
            "lease": _Script(_LEASE),
            "report_open": _Script(_REPORT_OPEN),
            "open_reports": _Script(_OPEN_REPORTS),
            "views": _Script(_VIEWS),
            "set_override": _Script(_SET_OVERRIDE),
            "lift_override": _Script(_LIFT_OVERRIDE),
            "recovered": _Script(_RECOVERED),
            "acquire_probe": _Script(_ACQUIRE_PROBE),
            "release_probe": _Script(_RELEASE_PROBE),
        }
        self._entered = False

    def __repr__(self) -> str:
        # Never the URL: it may carry a password.
        return f"RedisState(namespace={self._namespace!r}, timeout={self._timeout:g})"

    async def __aenter__(self) -> Self:
        await self._client.__aenter__()
        self._entered = True
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._entered:
            self._entered = False
            await self._client.__aexit__(None, None, None)

    # -- the operations -------------------------------------------------------------------

    async def lease_tokens(
        self,
        key: str,
        *,
        rate: float,
        burst: int,
        count: int,
        process: str | None = None,
        period: float | None = None,
    ) -> Lease:
        if count <= 0:
            return Lease(0)
        fair = process is not None and period is not None and period > 0.0
        granted, wait = await self._run_keys(
            "lease",
            [self._key("bucket", key), self._key("demand", key)],
            rate,
            max(burst, 1),
            count,
            process if fair else "",
            period * 1000.0 if fair and period is not None else 0,
        )
        return Lease(int(granted), max(float(wait), 0.0) / 1000.0)

    async def report_open(self, endpoint: str, process: str, seconds: float) -> None:
        await self._run(
            "report_open",
            self._key("open", endpoint),
            process,
            math.ceil(seconds * 1000),
            self._channel,
            endpoint,
        )

    async def report_closed(self, endpoint: str, process: str) -> None:
        key = self._key("open", endpoint)
        await self._call(lambda: self._client.zrem(key, [process]))

    async def open_reports(self, endpoint: str) -> int:
        return int(await self._run("open_reports", self._key("open", endpoint)))

    async def recovered(self, endpoint: str) -> None:
        key = self._key("open", endpoint)
        await self._run("recovered", key, self._channel, endpoint, timed=False)

    async def views(self, endpoints: Sequence[str]) -> list[SharedView]:
        if not endpoints:
            return []
        keys = [self._key("open", e) for e in endpoints] + [self._overrides]
        flat = await self._run_keys("views", keys, *endpoints)
        views = []
        for index in range(0, len(flat), 2):
            forced = flat[index + 1]
            text = forced.decode() if isinstance(forced, bytes) else str(forced)
            views.append(SharedView(int(flat[index]), _forced_state(text)))
        return views

    @asynccontextmanager
    async def changes(self) -> AsyncIterator[AsyncIterator[str]]:
        """Subscribe to the namespace's changes; yields the endpoints as they change."""
        if not self._entered:
            raise SharedStateUnavailable("the Redis backend is not open (use it with async with)")
        try:
            async with self._client.pubsub(
                channels=[self._channel],
                ignore_subscribe_messages=True,
                # Our caller reconnects, at its own pace: no retries in here.
                retry_policy=coredis.retry.NoRetryPolicy(),
            ) as pubsub:
                yield _endpoints(pubsub)
        except (coredis.exceptions.RedisError, OSError, TimeoutError) as exc:
            raise SharedStateUnavailable(
                f"Redis subscription failed: {type(exc).__name__}"
            ) from None

    async def acquire_probe(self, endpoint: str, process: str, seconds: float) -> bool:
        keys = [self._key("probe", endpoint), self._key("open", endpoint)]
        held = await self._run_keys("acquire_probe", keys, process, math.ceil(seconds * 1000))
        return bool(held)

    async def release_probe(self, endpoint: str, process: str) -> None:
        await self._run("release_probe", self._key("probe", endpoint), process, timed=False)

    async def force(self, endpoint: str, state: ForcedState | None) -> None:
        key, channel = self._overrides, self._channel
        if state is None:
            await self._run_keys("lift_override", [key], endpoint, channel, timed=False)
        else:
            ttl = math.ceil(self._override_ttl * 1000)
            await self._run_keys(
                "set_override", [key], endpoint, state.value, ttl, channel, timed=False
            )

    async def forced(self, endpoint: str) -> ForcedState | None:
        key = self._overrides
        value = await self._call(lambda: self._client.hget(key, endpoint))
        if value is None:
            return None
        return _forced_state(value.decode() if isinstance(value, bytes) else str(value))

    async def overrides(self) -> dict[str, ForcedState]:
        key = self._overrides
        found = await self._call(lambda: self._client.hgetall(key))
        result = {}
        for name, value in found.items():
            endpoint = name.decode() if isinstance(name, bytes) else str(name)
            state = _forced_state(value.decode() if isinstance(value, bytes) else str(value))
            if state is not None:
                result[endpoint] = state
        return result

    # -- internals -----------------------------------------------------------------------

    def _key(self, kind: str, name: str) -> str:
        return f"{self._namespace}:{kind}:{name}"

    async def _run(self, name: str, key: str, *args: object, timed: bool = True) -> Any:
        """Run script ``name`` on ``key``; ``timed`` scripts get the clock first."""
        return await self._run_keys(name, [key], *args, timed=timed)

    async def _run_keys(self, name: str, keys: list[str], *args: object, timed: bool = True) -> Any:
        arguments: list[str | int | float] = []
        if timed:
            clock = self._clock
            arguments.append("" if clock is None else str(int(clock() * 1000)))
        arguments.extend(a if isinstance(a, int | float) else str(a) for a in args)
        script = self._scripts[name]
        try:
            return await self._call(lambda: self._client.evalsha(script.sha, keys, arguments))
        except _NoScript:
            # A server that restarted (or never saw it) does not know the script yet:
            # EVAL sends it and caches it there for the next EVALSHA.
            return await self._call(lambda: self._client.eval(script.source, keys, arguments))

    async def _call(self, command: Callable[[], Awaitable[Any]]) -> Any:
        """Send ``command()`` within the bound, mapping every failure of the store."""
        if not self._entered:
            raise SharedStateUnavailable("the Redis backend is not open (use it with async with)")
        with trio.move_on_after(self._timeout) as scope:
            try:
                return await command()
            except coredis.exceptions.NoScriptError:
                raise _NoScript from None
            except coredis.exceptions.ResponseError as exc:
                # The server refused the command: its message says why (no secret is
                # ever sent to Redis, so none can come back).
                raise SharedStateUnavailable(f"Redis refused a command: {exc}") from None
            except coredis.exceptions.RedisError as exc:
                raise SharedStateUnavailable(f"Redis failed: {type(exc).__name__}") from None
            except (OSError, TimeoutError) as exc:
                raise SharedStateUnavailable(f"Redis unreachable: {type(exc).__name__}") from None
        assert scope.cancelled_caught
        raise SharedStateUnavailable(f"Redis did not answer within {self._timeout * 1000:g} ms")
