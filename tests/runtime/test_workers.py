"""cloud.supervisor is the users' own subtree: its own intensity, escalation with its cause."""

from __future__ import annotations

import httpx
import pytest
import trio
import trio.testing

import cloudkit_trio as ck
from cloudkit_trio.actors import (
    ChildSpec,
    EventKind,
    Restart,
    RestartIntensityExceeded,
    Strategy,
    SupervisorEvent,
    worker_pool,
)
from cloudkit_trio.runtime._assembly import _restart_label
from cloudkit_trio.testing import RecordingMetrics

from ._support import Script, context, op


def crasher(every: float = 0.1) -> object:
    async def run(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        await trio.sleep(every)
        raise RuntimeError("worker bug")

    return run


class Slow(httpx.AsyncBaseTransport):
    """Answers 200 after ``delay`` seconds of Trio time."""

    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        await trio.sleep(self.delay)
        return httpx.Response(200, content=b"finished")


class TestIsolation:
    async def test_a_crashing_worker_uses_its_own_budget(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Restarts within the workers' intensity cost the runtime's actors nothing."""
        metrics = RecordingMetrics()
        crashes = 0

        async def flaky(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
            nonlocal crashes
            task_status.started()
            if crashes < 2:
                crashes += 1
                raise RuntimeError("lost its lease")
            await trio.sleep_forever()

        async with context(metrics=metrics) as cloud:
            await cloud.supervisor.start_child(ChildSpec("poller", flaky))
            await trio.sleep(1.0)
            assert (await cloud.execute(op())).status_code == 200
            tree = cloud.snapshot().tree
        runtime_children = {c.id: c.restarts for c in tree.children}
        assert runtime_children == {
            "metrics-aggregator": 0,
            "credential-refresher": 0,
            "breakers": 0,
            "router": 0,
            "workers": 0,
        }
        [workers] = [c for c in tree.children if c.id == "workers"]
        assert workers.subtree is not None
        assert [(c.id, c.restarts) for c in workers.subtree.children] == [("poller", 2)]
        # Restarts of nested supervisors reach the metric, labelled by their path.
        assert metrics.counter_total("supervisor_restarts", child="workers/poller") == 2

    async def test_the_intensity_is_configurable(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """worker_supervision(max_restarts=...) is the subtree's own limit."""
        builder = (
            ck.CloudContext.builder(ck.ProviderType.AWS)
            .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
            .transport(httpx.MockTransport(Script()))
            .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
            .logger(ck.NoopLogger())
            .worker_supervision(max_restarts=20, within=5.0, strategy=Strategy.ONE_FOR_ALL)
        )
        async with builder.build() as cloud:
            await cloud.supervisor.start_child(ChildSpec("crasher", crasher(0.5)))
            await trio.sleep(4.0)  # 7 restarts in 4 s: past the default 3, within 20
            [child] = cloud.supervisor.which_children()
            assert child.restarts >= 7
            assert cloud.state is ck.ContextState.RUNNING

    @pytest.mark.parametrize(
        ("keywords", "error"),
        [
            ({"max_restarts": -1}, ck.ConfigError),
            ({"max_restarts": 1.5}, ck.ConfigError),
            ({"within": 0}, ck.ConfigError),
            ({"strategy": "one_for_all"}, TypeError),
        ],
    )
    def test_worker_supervision_is_validated(
        self, keywords: dict[str, object], error: type[Exception]
    ) -> None:
        with pytest.raises(error):
            ck.CloudContext.builder("aws").worker_supervision(**keywords)  # type: ignore[arg-type]


class TestEscalation:
    async def test_giving_up_closes_the_context_in_order(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Past the workers' intensity the context closes gracefully: operations running
        then still finish, later ones are refused, and the worker's exception is the cause."""
        results: list[object] = []

        async def long_operation(cloud: ck.Cloud) -> None:
            # Still running when the workers give up, about 0.4 s in.
            results.append((await cloud.execute(op())).content)

        async with trio.open_nursery() as outer:
            with pytest.raises(RestartIntensityExceeded) as raised:  # noqa: PT012
                async with context(Slow(1.0)) as cloud:
                    outer.start_soon(long_operation, cloud)
                    await cloud.supervisor.start_child(ChildSpec("crasher", crasher()))
                    await trio.sleep(0.6)
                    # Closing: new work is refused while the running operation finishes.
                    with pytest.raises(ck.ContextClosed):
                        await cloud.execute(op())
                    await trio.sleep_forever()
        error = raised.value
        assert isinstance(error.__cause__, RuntimeError)
        assert str(error.__cause__) == "worker bug"
        assert error.child_path == ("crasher",)
        assert results == [b"finished"]

    async def test_an_accepted_submission_is_answered_when_the_workers_give_up(
        self, autojump_clock: trio.testing.MockClock
    ) -> None:
        """Invariant 1 holds through the escalation: one reply per accepted submission."""
        send, receive = trio.open_memory_channel[ck.Reply](10)
        script = Script([503, 503])

        async def run() -> None:
            async with context(script, policy=ck.FixedDelay(0.2, max_attempts=3)) as cloud:
                cloud.submit_nowait(ck.Submission(op(), reply_to=send, correlation_id=1))
                await cloud.supervisor.start_child(ChildSpec("crasher", crasher(0.05)))
                await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded):
            await run()
        replies = []
        while True:
            try:
                replies.append(receive.receive_nowait())
            except trio.WouldBlock:
                break
        assert [r.correlation_id for r in replies] == [1]

    async def test_a_pool_under_the_context(self, autojump_clock: trio.testing.MockClock) -> None:
        """worker_pool children run under cloud.supervisor and use the context."""
        jobs_send, jobs_receive = trio.open_memory_channel[str](10)
        seen: list[bytes] = []
        cloud_ref: list[ck.Cloud] = []

        async def handle(path: str) -> None:
            response = await cloud_ref[0].execute(op(path=path))
            seen.append(response.content)

        async with context() as cloud:
            cloud_ref.append(cloud)
            pool = worker_pool(jobs_receive, handle, size=3, name="fetchers")
            # Transient: the pool ends for good once the channel is closed and drained.
            await cloud.supervisor.start_child(pool.child_spec(restart=Restart.TRANSIENT))
            async with jobs_send:
                for n in range(6):
                    await jobs_send.send(f"/bucket/{n}")
            await trio.testing.wait_all_tasks_blocked()
            await trio.sleep(0.1)
        assert sorted(seen) == [b"ok"] * 6


class TestRestartLabels:
    def event(self, path: tuple[str, ...], label: str) -> SupervisorEvent:
        return SupervisorEvent(
            kind=EventKind.CHILD_RESTARTING,
            supervisor="x",
            child_id=label,
            at=0.0,
            path=path,
            child_label=label,
        )

    def test_users_children_keep_their_path(self) -> None:
        assert _restart_label(self.event(("workers",), "poller")) == "workers/poller"
        assert _restart_label(self.event(("workers", "jobs"), "worker")) == "workers/jobs/worker"
        assert _restart_label(self.event((), "router")) == "router"

    def test_breaker_actors_share_one_label(self) -> None:
        """One breaker actor per endpoint: the label must not grow with the endpoints."""
        for endpoint in ("http://a:80", "http://b:80"):
            event = self.event(("breakers",), f"breaker:{endpoint}")
            assert _restart_label(event) == "breakers/breaker"
