"""Actors: call/cast, deadlines, dead letters, crashes with queued calls, overflow policies."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
import trio.testing

from cloudkit_trio.actors import (
    Actor,
    ActorContext,
    ActorRef,
    ActorStopped,
    CallTimeout,
    ChildState,
    MailboxFull,
    Overflow,
    Restart,
    RestartBackoff,
    Supervisor,
    actor_child,
)


async def settle() -> None:
    await trio.testing.wait_all_tasks_blocked()


@attrs.frozen
class Add:
    n: int


@attrs.frozen
class Sleep:
    seconds: float


@attrs.frozen
class Crash:
    reason: str = "crash"


class Refused(Exception):
    pass


@attrs.frozen
class Refuse:
    pass


Msg = Add | Sleep | Crash | Refuse


class Counter(Actor[Msg, int]):
    """Adds, sleeps, crashes or refuses on request; remembers its incarnations."""

    reply_errors = (Refused,)
    incarnations: list[Counter] = []  # noqa: RUF012 - shared on purpose: one list per test

    def __init__(self) -> None:
        self.total = 0
        self.handled: list[Msg] = []
        self.stopped = False

    async def on_start(self, ctx: ActorContext[Msg, int]) -> None:
        self.ctx = ctx
        Counter.incarnations.append(self)

    async def handle_call(self, msg: Msg) -> int:
        self.handled.append(msg)
        if isinstance(msg, Sleep):
            await trio.sleep(msg.seconds)
        elif isinstance(msg, Crash):
            raise RuntimeError(msg.reason)
        elif isinstance(msg, Refuse):
            raise Refused("no")
        else:
            self.total += msg.n
        return self.total

    async def handle_cast(self, msg: Msg) -> None:
        await self.handle_call(msg)

    async def on_stop(self) -> None:
        self.stopped = True


@pytest.fixture(autouse=True)
def fresh_incarnations() -> None:
    Counter.incarnations = []


def spawn_call(
    nursery: trio.Nursery, ref: ActorRef[Msg, int], msg: Msg, outcomes: list[object] | None = None
) -> None:
    """Call in the background without a timeout, recording the reply or the error type."""

    async def call() -> None:
        try:
            reply: object = await ref.call(msg, timeout=None)
        except (ActorStopped, CallTimeout) as exc:
            reply = type(exc)
        if outcomes is not None:
            outcomes.append(reply)

    nursery.start_soon(call)


class TestCallCast:
    async def test_call_replies_and_cast_is_handled_in_order(self, autojump_clock: Any) -> None:
        """call returns the handler's reply; casts are handled in order before later calls."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]):
            assert await counter.ref.call(Add(2)) == 2
            await counter.ref.cast(Add(3))
            counter.ref.cast_nowait(Add(4))
            assert await counter.ref.call(Add(0)) == 9
        stats = counter.ref.statistics()
        assert (stats.accepted, stats.handled, stats.dead_letters) == (4, 4, 0)
        assert not stats.open

    async def test_refs_compare_by_mailbox(self) -> None:
        """Two refs are equal when they reach the same mailbox."""
        _, ref = actor_child("a", Counter)
        other = actor_child("a", Counter)
        assert ref == ActorRef(ref._mailbox)
        assert ref != other.ref
        assert ref.id == "a"
        assert repr(ref) == "<ActorRef 'a'>"

    async def test_before_start_and_after_stop_the_ref_raises_actor_stopped(
        self, autojump_clock: Any
    ) -> None:
        """Messages to an actor that is not running fail fast with ActorStopped."""
        counter = actor_child("counter", Counter)
        with pytest.raises(ActorStopped):
            await counter.ref.call(Add(1))
        with pytest.raises(ActorStopped):
            counter.ref.cast_nowait(Add(1))
        async with Supervisor([counter.spec]):
            assert await counter.ref.call(Add(1)) == 1
        with pytest.raises(ActorStopped):
            await counter.ref.cast(Add(1))

    async def test_reply_errors_are_answers_not_crashes(self, autojump_clock: Any) -> None:
        """An exception listed in reply_errors reaches the caller; the actor keeps its state."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]) as sup:
            await counter.ref.call(Add(5))
            with pytest.raises(Refused):
                await counter.ref.call(Refuse())
            assert await counter.ref.call(Add(1)) == 6
            assert sup.which_children().by_id("counter").restarts == 0

    async def test_handler_exception_reaches_the_caller_and_crashes_the_actor(
        self, autojump_clock: Any
    ) -> None:
        """A handler exception is raised at the caller and the actor restarts with fresh state."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]) as sup:
            await counter.ref.call(Add(5))
            with pytest.raises(RuntimeError, match="boom"):
                await counter.ref.call(Crash("boom"))
            assert await counter.ref.call(Add(1)) == 1
            info = sup.which_children().by_id("counter")
            assert info.restarts == 1
            assert info.mailbox is not None
            assert info.mailbox.crashed == 1
            assert info.mailbox.dead_letters == 1
        assert len(Counter.incarnations) == 2

    async def test_on_stop_runs_after_a_graceful_stop_only(self, autojump_clock: Any) -> None:
        """on_stop runs when the supervisor stops the actor, not when it crashes."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]):
            counter.ref.cast_nowait(Crash())
            await settle()
        first, second = Counter.incarnations
        assert (first.stopped, second.stopped) == (False, True)

    async def test_background_task_failure_crashes_the_actor(self, autojump_clock: Any) -> None:
        """A task in ctx.nursery that raises crashes (and restarts) the actor."""

        class Ticker(Actor[str, str]):
            async def on_start(self, ctx: ActorContext[str, str]) -> None:
                ctx.nursery.start_soon(self.tick)

            async def tick(self) -> None:
                await trio.sleep(1)
                raise ValueError("tick failed")

        ticker = actor_child("ticker", Ticker)
        async with Supervisor([ticker.spec], max_restarts=10) as sup:
            await trio.sleep(1.5)
            info = sup.which_children().by_id("ticker")
            assert info.restarts == 1
            assert info.last_failure is not None

    async def test_on_start_failure_fails_the_start(self, autojump_clock: Any) -> None:
        """An actor whose on_start raises fails the supervisor's start, naming it."""
        from cloudkit_trio.actors import ChildStartError

        class Broken(Actor[int, int]):
            async def on_start(self, ctx: ActorContext[int, int]) -> None:
                raise OSError("no config")

        broken = actor_child("broken", Broken)
        with pytest.raises(ChildStartError, match="broken") as info:
            await Supervisor([broken.spec]).run()
        assert isinstance(info.value.__cause__, OSError)
        assert not broken.ref.statistics().open

    async def test_on_stop_failure_is_reported(self, autojump_clock: Any, capture: Any) -> None:
        """An on_stop that raises is logged as a failure while stopping."""

        class Sloppy(Actor[int, int]):
            async def on_stop(self) -> None:
                raise RuntimeError("flush failed")

        sloppy = actor_child("sloppy", Sloppy)
        async with Supervisor([sloppy.spec], logger=capture):
            pass
        assert "child failed while stopping" in capture.messages()

    async def test_busy_actor_lets_other_tasks_run(self, autojump_clock: Any) -> None:
        """An actor draining a long queue with handlers that never await still yields."""
        handled: list[int] = []

        class Busy(Actor[int, None]):
            async def handle_cast(self, msg: int) -> None:
                handled.append(msg)

        busy = actor_child("busy", Busy, capacity=200)
        seen_by_other_task: list[int] = []

        async def other() -> None:
            seen_by_other_task.append(len(handled))

        async with Supervisor([busy.spec]), trio.open_nursery() as nursery:
            for n in range(200):
                busy.ref.cast_nowait(n)
            nursery.start_soon(other)
            await settle()
        assert len(handled) == 200
        assert seen_by_other_task[0] < 200


class TestDeadlines:
    async def test_timeout_with_late_reply_is_a_dead_letter_and_actor_survives(
        self, autojump_clock: Any
    ) -> None:
        """A call times out at its deadline; the late reply is counted; the actor carries on."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]) as sup:
            start = trio.current_time()
            with pytest.raises(CallTimeout) as info:
                await counter.ref.call(Sleep(10), timeout=2)
            assert trio.current_time() - start == 2
            assert isinstance(info.value, trio.TooSlowError)
            assert await counter.ref.call(Add(1), timeout=None) == 1
            stats = counter.ref.statistics()
            assert stats.late_replies == 1
            assert stats.dead_letters == 1
            assert sup.which_children().by_id("counter").restarts == 0

    async def test_expired_queued_call_is_skipped(self, autojump_clock: Any) -> None:
        """A call whose deadline passes while queued times out and is never handled."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            spawn_call(nursery, counter.ref, Sleep(5))
            await settle()
            with pytest.raises(CallTimeout):
                await counter.ref.call(Add(100), timeout=1)
            await trio.sleep(10)
            assert Add(100) not in Counter.incarnations[0].handled
            assert counter.ref.statistics().expired == 1

    async def test_one_deadline_covers_waiting_for_room(self, autojump_clock: Any) -> None:
        """With a full WAIT mailbox the call's timeout also bounds the wait for room."""
        counter = actor_child("counter", Counter, capacity=1)
        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            spawn_call(nursery, counter.ref, Sleep(100))  # being handled
            await settle()
            spawn_call(nursery, counter.ref, Add(1))  # fills the queue
            await settle()
            start = trio.current_time()
            with pytest.raises(CallTimeout):
                await counter.ref.call(Add(2), timeout=3)
            assert trio.current_time() - start == 3
            assert counter.ref.statistics().blocked_senders == 0
            nursery.cancel_scope.cancel()

    async def test_zero_timeout_is_not_enqueued(self, autojump_clock: Any) -> None:
        """timeout=0 fails at once without enqueueing."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]):
            with pytest.raises(CallTimeout):
                await counter.ref.call(Add(1), timeout=0)
            assert counter.ref.statistics().accepted == 0

    async def test_cancelled_caller_leaves_an_expired_entry(self, autojump_clock: Any) -> None:
        """A caller cancelled while waiting gives up; its call is skipped, not handled."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            spawn_call(nursery, counter.ref, Sleep(5))
            await settle()
            with trio.move_on_after(1):
                await counter.ref.call(Add(7), timeout=None)
            await trio.sleep(10)
            assert Add(7) not in Counter.incarnations[0].handled
            assert counter.ref.statistics().expired == 1

    async def test_many_completed_calls_do_not_grow_the_timer(self, autojump_clock: Any) -> None:
        """Settled calls are compacted out of the deadline heap."""
        counter = actor_child("counter", Counter)
        supervisor = Supervisor([counter.spec])
        async with supervisor:
            for _ in range(2000):
                await counter.ref.call(Add(1), timeout=60)
            run = supervisor._run
            assert run is not None
            assert len(run.timer.heap) <= 4 * run.timer.live + 65


class TestRestartsAndStops:
    async def test_crash_with_calls_queued_new_incarnation_serves_them(
        self, autojump_clock: Any
    ) -> None:
        """Calls queued behind the crashing one are answered by the restarted actor."""
        counter = actor_child("counter", Counter)
        results: dict[str, object] = {}

        async def call(name: str, msg: Msg) -> None:
            try:
                results[name] = await counter.ref.call(msg)
            except Exception as exc:
                results[name] = type(exc).__name__

        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            nursery.start_soon(call, "slow", Sleep(1))
            await settle()
            nursery.start_soon(call, "crash", Crash())
            await settle()
            nursery.start_soon(call, "after1", Add(1))
            await settle()
            nursery.start_soon(call, "after2", Add(2))
            await settle()
        assert results == {"slow": 0, "crash": "RuntimeError", "after1": 1, "after2": 3}
        assert len(Counter.incarnations) == 2
        assert counter.ref.statistics().crashed == 1

    async def test_queued_calls_wait_out_a_restart_backoff(self, autojump_clock: Any) -> None:
        """While the actor waits for its restart, calls queue up and are then answered."""
        counter = actor_child("counter", Counter)
        backoff = RestartBackoff(initial=3.0, jitter=0.0)
        async with Supervisor([counter.spec], backoff=backoff) as sup:
            counter.ref.cast_nowait(Crash())
            await settle()
            assert sup.which_children().by_id("counter").state is ChildState.RESTARTING
            start = trio.current_time()
            assert await counter.ref.call(Add(4)) == 4
            assert trio.current_time() - start == 3.0

    async def test_permanent_stop_fails_queued_calls_with_actor_stopped(
        self, autojump_clock: Any
    ) -> None:
        """A temporary actor that crashes fails every queued call: nobody hangs."""
        counter = actor_child("counter", Counter, restart=Restart.TEMPORARY)
        results: dict[int, str] = {}

        async def call(key: int, msg: Msg) -> None:
            try:
                await counter.ref.call(msg, timeout=None)
                results[key] = "ok"
            except Exception as exc:
                results[key] = type(exc).__name__

        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            nursery.start_soon(call, 0, Sleep(1))
            await settle()
            nursery.start_soon(call, 1, Crash())
            await settle()
            for key in (2, 3, 4):
                nursery.start_soon(call, key, Add(1))
            await settle()
        assert results == {
            0: "ok",
            1: "RuntimeError",
            2: "ActorStopped",
            3: "ActorStopped",
            4: "ActorStopped",
        }
        assert counter.ref.statistics().stopped_calls == 3

    async def test_intensity_exceeded_fails_waiting_callers(self, autojump_clock: Any) -> None:
        """When the supervisor gives up, calls waiting on its actors fail with ActorStopped."""
        from cloudkit_trio.actors import RestartIntensityExceeded

        counter = actor_child("counter", Counter)
        outcome: list[str] = []

        async def caller() -> None:
            try:
                await counter.ref.call(Add(1), timeout=None)
            except ActorStopped:
                outcome.append("stopped")

        async def scenario() -> None:
            async with Supervisor([counter.spec], max_restarts=0):
                counter.ref.cast_nowait(Sleep(1))
                counter.ref.cast_nowait(Crash())
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(caller)
                    await trio.sleep_forever()

        with pytest.raises(RestartIntensityExceeded):
            await scenario()
        assert outcome == ["stopped"]

    async def test_final_stop_drains_queued_messages_first(self, autojump_clock: Any) -> None:
        """Stopping the supervisor lets the actor handle what is queued, then on_stop runs."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]) as sup:
            for n in (1, 2, 3):
                counter.ref.cast_nowait(Add(n))
            await sup.stop()
        (actor,) = Counter.incarnations
        assert actor.total == 6
        assert actor.stopped
        assert counter.ref.statistics().discarded == 0

    async def test_stuck_handler_is_cancelled_and_its_caller_told(
        self, autojump_clock: Any
    ) -> None:
        """A handler outliving the shutdown budget is cancelled; its caller gets ActorStopped."""
        counter = actor_child("counter", Counter, shutdown=2.0)
        outcome: list[object] = []

        async def caller() -> None:
            try:
                await counter.ref.call(Sleep(100), timeout=None)
            except ActorStopped as exc:
                outcome.append((type(exc), trio.current_time()))

        async with trio.open_nursery() as nursery:
            sup = await nursery.start(Supervisor([counter.spec]).run)
            nursery.start_soon(caller)
            await settle()
            counter.ref.cast_nowait(Add(1))  # queued behind: discarded at the final stop
            await sup.stop()
        assert outcome == [(ActorStopped, 2.0)]
        assert counter.ref.statistics().discarded == 1

    async def test_self_stop_of_transient_actor(self, autojump_clock: Any) -> None:
        """ctx.stop() ends a transient actor for good; queued calls then fail."""

        class Once(Actor[str, str]):
            async def on_start(self, ctx: ActorContext[str, str]) -> None:
                self.ctx = ctx

            async def handle_call(self, msg: str) -> str:
                self.ctx.stop()
                await trio.sleep(1)
                return msg

        once = actor_child("once", Once, restart=Restart.TRANSIENT)
        results: list[str] = []

        async def call(msg: str) -> None:
            try:
                results.append(await once.ref.call(msg))
            except ActorStopped:
                results.append("stopped")

        async with Supervisor([once.spec]) as sup, trio.open_nursery() as nursery:
            nursery.start_soon(call, "first")
            await settle()
            nursery.start_soon(call, "second")
            await settle()
            await trio.sleep(2)
            assert sup.which_children().by_id("once").state is ChildState.STOPPED
        assert results == ["first", "stopped"]

    async def test_restart_child_reopens_the_same_ref(self, autojump_clock: Any) -> None:
        """After terminate_child and restart_child the old ref works again."""
        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]) as sup:
            await sup.terminate_child("counter")
            with pytest.raises(ActorStopped):
                await counter.ref.call(Add(1))
            assert await sup.restart_child("counter") == counter.ref
            assert await counter.ref.call(Add(1)) == 1

    async def test_a_spec_cannot_serve_two_supervisors(self, autojump_clock: Any) -> None:
        """The same actor spec under two running supervisors is refused at start."""
        from cloudkit_trio.actors import ChildStartError

        counter = actor_child("counter", Counter)
        async with Supervisor([counter.spec]):
            with pytest.raises(ChildStartError) as info:
                async with Supervisor([counter.spec]):
                    pass  # pragma: no cover - never entered
            assert isinstance(info.value.__cause__, ValueError)


class TestOverflow:
    async def test_fail_policy_raises_at_once(self, autojump_clock: Any) -> None:
        """FAIL: a full mailbox raises MailboxFull for call, cast and cast_nowait."""
        counter = actor_child("counter", Counter, capacity=2, overflow=Overflow.FAIL)
        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            spawn_call(nursery, counter.ref, Sleep(10))
            await settle()
            counter.ref.cast_nowait(Add(1))
            counter.ref.cast_nowait(Add(1))
            with pytest.raises(MailboxFull):
                counter.ref.cast_nowait(Add(1))
            with pytest.raises(MailboxFull):
                await counter.ref.cast(Add(1))
            with pytest.raises(MailboxFull):
                await counter.ref.call(Add(1))
            stats = counter.ref.statistics()
            assert (stats.queued, stats.peak_queued, stats.rejected) == (2, 2, 3)

    async def test_drop_policy_counts_dropped_casts(self, autojump_clock: Any) -> None:
        """DROP: casts that do not fit are dropped and counted; calls still raise."""
        counter = actor_child("counter", Counter, capacity=1, overflow=Overflow.DROP)
        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            spawn_call(nursery, counter.ref, Sleep(10))
            await settle()
            counter.ref.cast_nowait(Add(1))
            counter.ref.cast_nowait(Add(1))
            await counter.ref.cast(Add(1))
            with pytest.raises(MailboxFull):
                await counter.ref.call(Add(1))
            stats = counter.ref.statistics()
            assert (stats.dropped, stats.dead_letters) == (2, 2)

    async def test_wait_policy_waits_for_room(self, autojump_clock: Any) -> None:
        """WAIT: a send waits until the actor makes room; a cast gives up at its timeout."""
        counter = actor_child("counter", Counter, capacity=1)
        async with Supervisor([counter.spec]), trio.open_nursery() as nursery:
            spawn_call(nursery, counter.ref, Sleep(5))
            await settle()
            counter.ref.cast_nowait(Add(1))
            with pytest.raises(MailboxFull):
                counter.ref.cast_nowait(Add(1))
            with pytest.raises(MailboxFull):
                await counter.ref.cast(Add(1), timeout=1)
            start = trio.current_time()
            await counter.ref.cast(Add(1), timeout=None)
            assert trio.current_time() - start == 4.0
            assert await counter.ref.call(Add(0), timeout=None) == 2

    async def test_blocked_senders_fail_when_the_actor_stops_for_good(
        self, autojump_clock: Any
    ) -> None:
        """Senders waiting for room get ActorStopped when the mailbox closes."""
        counter = actor_child("counter", Counter, capacity=1, shutdown=0.0)
        outcome: list[str] = []

        async def blocked_cast() -> None:
            try:
                await counter.ref.cast(Add(1), timeout=None)
            except ActorStopped:
                outcome.append("stopped")

        async with trio.open_nursery() as nursery:
            sup = await nursery.start(Supervisor([counter.spec]).run)
            spawn_call(nursery, counter.ref, Sleep(100))
            await settle()
            counter.ref.cast_nowait(Add(1))
            nursery.start_soon(blocked_cast)
            await settle()
            sup.stop()
        assert outcome == ["stopped"]

    def test_actor_child_validates(self) -> None:
        """capacity and overflow are checked when the spec is made."""
        with pytest.raises(ValueError, match="capacity"):
            actor_child("a", Counter, capacity=0)
        with pytest.raises(TypeError, match="overflow"):
            actor_child("a", Counter, overflow="drop")  # type: ignore[arg-type]
