"""Supervision (docs/supervision.md): your workers under a context, and without one.

Runs offline on an in-memory transport; every section below is one part of the guide.
"""

from __future__ import annotations

import collections

import attrs
import httpx
import trio

import cloudkit_trio as ck
from cloudkit_trio.actors import (
    IGNORE,
    Actor,
    ActorContext,
    AutoShutdown,
    ChildSpec,
    DynamicSupervisor,
    EventKind,
    Restart,
    RestartIntensityExceeded,
    StopSignal,
    Supervisor,
    SupervisorEvent,
    actor_child,
    worker_pool,
)

receive_op = ck.Operation(service="sqs", name="receive_message", method="POST", path="/")
handled: list[bytes] = []


async def handle_messages(response: ck.Response) -> None:
    handled.append(response.content)
    await trio.sleep(0.5)


def new_context(answer: int = 200) -> ck.CloudContext:
    return (
        ck.CloudContext.builder(ck.ProviderType.AWS)
        .config(ck.CloudConfig(endpoint="http://127.0.0.1:9000"))
        .auth_provider(ck.StaticAuthProvider(ck.Credentials("AKID", "SECRET")))
        .transport(httpx.MockTransport(lambda request: httpx.Response(answer, content=b"m")))
        .logger(ck.NoopLogger())
        .build()
    )


async def under_a_context() -> None:
    cloud_ctx = new_context()
    # --8<-- [start:poller]
    async with cloud_ctx as cloud:

        async def poll_queue(*, task_status=trio.TASK_STATUS_IGNORED):
            stop = StopSignal()
            task_status.started(stop)  # ready; the supervisor may now stop us
            while not stop.requested:
                await handle_messages(await cloud.execute(receive_op))

        await cloud.supervisor.start_child(ChildSpec("poller", poll_queue))
        await trio.sleep(2)  # the poller runs; leaving the block stops it first
    # --8<-- [end:poller]
    assert handled


async def giving_up() -> None:
    cloud_ctx = new_context()
    caught: RestartIntensityExceeded | None = None

    async def poll_queue(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        raise ConnectionError("the queue is gone")

    # --8<-- [start:give-up]
    try:
        async with cloud_ctx as cloud:
            await cloud.supervisor.start_child(ChildSpec("poller", poll_queue))
            await trio.sleep_forever()
    except RestartIntensityExceeded as exc:
        print(exc.child_path)  # ('poller',): the child, from the supervisor that gave up
        print(repr(exc.__cause__))  # the worker's own exception: ConnectionError(...)
        # --8<-- [end:give-up]
        caught = exc
    assert caught is not None, "the context did not give up"
    assert caught.child_path == ("poller",)
    assert isinstance(caught.__cause__, ConnectionError)


done_jobs: list[str] = []
all_done = trio.Event()


async def process_job(job: str) -> None:
    await trio.sleep(0.1)
    done_jobs.append(job)
    if len(done_jobs) == 20:
        all_done.set()


async def a_pool() -> None:
    jobs = [f"job-{n}" for n in range(20)]
    async with new_context() as cloud:
        # --8<-- [start:pool]
        send, receive = trio.open_memory_channel[str](100)
        pool = worker_pool(receive, process_job, size=8, name="jobs")
        await cloud.supervisor.start_child(pool.child_spec("jobs", restart=Restart.TRANSIENT))
        async with send:
            for job in jobs:
                await send.send(job)  # backpressure: waits while 8 jobs run and 100 are queued
        # --8<-- [end:pool]
        with trio.fail_after(10):
            await all_done.wait()
    assert sorted(done_jobs) == sorted(jobs)


restarts: collections.Counter[str] = collections.Counter()


# --8<-- [start:count-restarts]
def count_restarts(event: SupervisorEvent) -> None:
    if event.kind is EventKind.CHILD_RESTARTING:
        restarts["/".join(event.child_path)] += 1  # "workers/jobs/worker", bounded


# --8<-- [end:count-restarts]


async def poll_forever(
    *, task_status: trio.TaskStatus[StopSignal] = trio.TASK_STATUS_IGNORED
) -> None:
    stop = StopSignal()
    task_status.started(stop)
    await stop.wait()


async def without_a_context() -> None:
    poll_queue = poll_forever
    _, receive = trio.open_memory_channel[str](0)
    pool = worker_pool(receive, process_job, size=2, name="jobs")
    # --8<-- [start:no-context]
    async with Supervisor(
        [ChildSpec("poller", poll_queue), pool.child_spec("jobs", restart=Restart.TRANSIENT)],
        name="app",
        on_event=count_restarts,
    ) as app:
        print([child.id for child in app.which_children()])  # ['poller', 'jobs']
    # or, in a nursery you already have:
    async with trio.open_nursery() as nursery:
        app = await nursery.start(Supervisor([ChildSpec("poller", poll_queue)]).run)
        await app.stop()
    # --8<-- [end:no-context]


units: list[int] = []


async def do_one_unit_of_work() -> None:
    units.append(1)
    await trio.sleep(0.1)


# --8<-- [start:worker]
async def worker(*, task_status=trio.TASK_STATUS_IGNORED):
    stop = StopSignal()
    task_status.started(stop)  # the supervisor calls stop.request_stop() to stop us
    while not stop.requested:
        await do_one_unit_of_work()


# --8<-- [end:worker]


@attrs.frozen
class Settings:
    mirror_enabled: bool


settings = Settings(mirror_enabled=False)


# --8<-- [start:ignore]
async def mirror(*, task_status=trio.TASK_STATUS_IGNORED):
    if not settings.mirror_enabled:
        return IGNORE
    task_status.started()
    await trio.sleep_forever()  # mirror until stopped


# --8<-- [end:ignore]


async def running_a_supervisor() -> None:
    async with trio.open_nursery() as nursery:
        # --8<-- [start:run]
        sup = await nursery.start(Supervisor([ChildSpec("a", worker), ChildSpec("b", worker)]).run)
        await trio.sleep(1)
        await sup.stop()  # ordered shutdown; run() then returns

        async with Supervisor([ChildSpec("mirror", mirror)]) as sup:  # leaving the block
            print(sup.which_children()[0].state)  # stops it in order; ChildState.IGNORED
        # --8<-- [end:run]
    assert units


imported: list[str] = []


async def run_import(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
    task_status.started()
    await trio.sleep(1)
    imported.append("done")


async def significant_children() -> None:
    report_progress = poll_forever
    # --8<-- [start:significant]
    sup = Supervisor(
        [
            ChildSpec("import", run_import, restart=Restart.TRANSIENT, significant=True),
            ChildSpec("progress", report_progress),
        ],
        auto_shutdown=AutoShutdown.ANY_SIGNIFICANT,
    )
    # --8<-- [end:significant]
    async with trio.open_nursery() as nursery:
        await nursery.start(sup.run)  # returns once the import is done
    assert imported == ["done"]


async def child_administration() -> None:
    spec = ChildSpec("id", worker)
    async with Supervisor([]) as sup:
        # --8<-- [start:admin]
        value = await sup.start_child(spec)  # appended last; returns the started value (or IGNORE)
        await sup.terminate_child("id")  # stop it, keep the spec (temporary children: removed)
        await sup.restart_child("id")  # start a stopped (or IGNORED) child again
        sup.get_childspec("id")  # its ChildSpec; ChildNotFound if there is none
        await sup.terminate_child("id")
        await sup.delete_child("id")  # remove a stopped (or IGNORED) child's spec
        sup.count_children()  # ChildCounts(specs=..., active=..., supervisors=..., workers=...)
        # --8<-- [end:admin]
        assert isinstance(value, StopSignal)
        assert sup.count_children().specs == 0


uploaded: list[str] = []


async def upload(
    path: str, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    task_status.started()
    await trio.sleep(0.5)
    uploaded.append(path)


async def dynamic() -> None:
    path, other = "a.csv", "b.csv"
    # --8<-- [start:dynamic]
    uploads = DynamicSupervisor(
        ChildSpec("upload", upload, restart=Restart.TRANSIENT), max_children=50, name="uploads"
    )
    async with uploads as pool:  # a DynamicSupervisorHandle
        await pool.start_member(path)  # runs upload(path, task_status=...)
        await pool.start_member(other, id="big-one")
        # --8<-- [end:dynamic]
        await trio.sleep(1)
    assert sorted(uploaded) == ["a.csv", "b.csv"]


@attrs.frozen
class Put:
    key: str
    value: str


@attrs.frozen
class Get:
    key: str


async def actors() -> None:
    # --8<-- [start:actor]
    class Store(Actor[Put | Get, str | None]):
        async def on_start(self, ctx: ActorContext[Put | Get, str | None]) -> None:
            self.data: dict[str, str] = {}

        async def handle_call(self, msg: Put | Get) -> str | None:
            if isinstance(msg, Get):
                return self.data.get(msg.key)  # the return value is the reply
            self.data[msg.key] = msg.value
            return msg.value

        async def handle_cast(self, msg: Put | Get) -> None:
            if isinstance(msg, Put):
                self.data[msg.key] = msg.value

    store = actor_child("store", Store, capacity=16)  # an ActorSpec: (spec, ref)
    async with Supervisor([store.spec]):
        await store.ref.cast(Put("colour", "blue"))
        print(await store.ref.call(Get("colour"), timeout=2.0))  # blue
    # --8<-- [end:actor]


async def restarts_are_counted_by_path() -> None:
    failures = [ConnectionError("once"), ConnectionError("twice")]

    async def flaky(*, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        if failures:
            raise failures.pop()
        await trio.sleep_forever()

    inner = Supervisor([ChildSpec("poller", flaky)], name="workers")
    async with Supervisor([inner.child_spec("workers")], on_event=count_restarts):
        await trio.sleep(1)
    assert restarts["workers/poller"] == 2, restarts


async def main() -> None:
    await under_a_context()
    await giving_up()
    await a_pool()
    await without_a_context()
    await running_a_supervisor()
    await significant_children()
    await child_administration()
    await dynamic()
    await actors()
    await restarts_are_counted_by_path()


if __name__ == "__main__":
    trio.run(main)
