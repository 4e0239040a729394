"""Show how the foundation pieces fit: configuration, credentials and a retry schedule.

Run it with ``python examples/quickstart.py``; it needs no network and no credentials.
"""

from __future__ import annotations

import trio

import cloudkit_trio as ck


async def main() -> None:
    config = ck.CloudConfig.from_env(ck.ProviderType.AWS)
    print(f"config:      {config}")

    credentials = ck.Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG", "session-token")
    print(f"credentials: {credentials}  (the secret and token never print)")

    policy = ck.ExponentialBackoff(max_attempts=config.max_retries + 1)
    error = ck.ServiceUnavailable("endpoint is down")
    for attempt in range(1, policy.max_attempts + 1):
        decision = policy.should_retry(error, attempt)
        print(f"after attempt {attempt}: {decision!r}")

    throttled = ck.RateLimited("slow down", retry_after=2.0)
    print(f"429 with Retry-After 2s: {policy.should_retry(throttled, 1)!r}")
    print(f"404 is final: {policy.should_retry(ck.NotFound('no such key'), 1)!r}")


if __name__ == "__main__":
    trio.run(main)
