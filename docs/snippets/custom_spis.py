"""One implementation of each extension point, used by one context (docs/spi.md)."""

from __future__ import annotations

import httpx
import trio

import cloudkit_trio as ck


# --8<-- [start:auth-provider]
class VaultedKeys(ck.AuthProvider):
    """Credentials from a secret store of yours; refresh_credentials and is_valid are
    inherited (refresh gets again; valid means obtainable and not expired)."""

    def __init__(self, read_secret: dict[str, str]) -> None:
        self._store = read_secret
        self.fetches = 0

    async def get_credentials(self) -> ck.Credentials:
        self.fetches += 1
        await trio.lowlevel.checkpoint()  # a real store is asked over the network
        return ck.Credentials(self._store["key"], self._store["secret"])


# --8<-- [end:auth-provider]


# --8<-- [start:retry-policy]
class RetryUnavailableOnly:
    """Retry only ServiceUnavailable, twice, a quarter second apart (or the server's
    Retry-After when it asks for longer)."""

    @property
    def max_attempts(self) -> int:  # all attempts, the first included
        return 3

    def should_retry(self, error: ck.CloudError, attempt: int) -> ck.RetryDecision:
        if isinstance(error, ck.ServiceUnavailable) and attempt < self.max_attempts:
            return ck.Retry(max(0.25, error.retry_after or 0.0))
        return ck.DO_NOT_RETRY


# --8<-- [end:retry-policy]


# --8<-- [start:metrics-collector]
class CountingMetrics(ck.MetricsCollector):
    """Counts operations by outcome; the runtime's aggregator calls it, never an
    operation's own task, so a slow collector does not slow operations down."""

    def __init__(self) -> None:
        self.outcomes: dict[str, int] = {}

    async def record(self, metrics: ck.OperationMetrics) -> None:
        outcome = str(metrics.outcome.value)
        self.outcomes[outcome] = self.outcomes.get(outcome, 0) + 1

    async def increment_counter(
        self, name: str, value: float = 1.0, tags: ck.spi.Tags | None = None
    ) -> None:
        pass

    async def record_gauge(self, name: str, value: float, tags: ck.spi.Tags | None = None) -> None:
        pass

    async def record_histogram(
        self, name: str, value: float, tags: ck.spi.Tags | None = None
    ) -> None:
        pass


# --8<-- [end:metrics-collector]


# --8<-- [start:logger]
class ListLogger(ck.Logger):
    """Keeps WARN and above; subclassing Logger brings trace/debug/info/warn/error,
    which build no LogEntry when is_enabled says no."""

    def __init__(self) -> None:
        self.entries: list[ck.LogEntry] = []

    def is_enabled(self, level: ck.LogLevel) -> bool:
        return level >= ck.LogLevel.WARN

    def log(self, entry: ck.LogEntry) -> None:
        self.entries.append(entry)


# --8<-- [end:logger]


async def main() -> None:
    answers = [503]

    def endpoint(request: httpx.Request) -> httpx.Response:
        return httpx.Response(answers.pop() if answers else 200)

    # --8<-- [start:wire]
    auth = VaultedKeys({"key": "AKID", "secret": "SECRET"})
    metrics = CountingMetrics()
    logger = ListLogger()
    context = (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
        .auth_provider(auth)
        .retry_policy(RetryUnavailableOnly())
        .metrics_collector(metrics)
        .logger(logger)
        .transport(httpx.MockTransport(endpoint))  # answers 503 once, then 200
        .build()
    )
    async with context as cloud:
        response = await cloud.execute(ck.Operation(service="s3", name="get_object", path="/b/k"))
    print(response.attempts, auth.fetches, metrics.outcomes)  # 2 1 {'success': 1}
    # --8<-- [end:wire]
    assert response.attempts == 2
    assert auth.fetches == 1
    assert metrics.outcomes == {"success": 1}, metrics.outcomes


if __name__ == "__main__":
    trio.run(main)
