"""Dynamic supervisors: many children from one template (OTP's ``simple_one_for_one``)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, cast

import trio

from ._child import ManagedTarget
from ._commands import StartMember
from ._errors import InvalidChildSpec
from ._handle import SupervisorHandle
from ._spec import AutoShutdown, ChildSpec, Strategy
from ._supervisor import Supervisor

if TYPE_CHECKING:
    from ._backoff import RestartBackoff
    from ._logging import SupervisorLogger
    from ._snapshot import EventHook

__all__ = ["DynamicSupervisor", "DynamicSupervisorHandle"]


class DynamicSupervisorHandle(SupervisorHandle):
    """The handle of a running :class:`DynamicSupervisor`.

    Everything a :class:`SupervisorHandle` does, but children are added with
    :meth:`start_member`; ``start_child(spec)`` raises ``TypeError``.

    .. versionadded:: 0.2.0
    """

    __slots__ = ()

    async def start_member(self, *args: object, id: str | None = None) -> object:
        """Start a member: the template's target called as ``target(*args, task_status=...)``.

        Returns its started value (``IGNORE`` if it declined; nothing is kept then).
        Without ``id`` the member is named ``"<template id>-<n>"``, ``n`` counting from 1
        in each run; pass ``id`` to name it yourself (to ``terminate_child`` it later).

        Raises:
            TooManyChildren: ``max_children`` members are running or restarting.
            DuplicateChild: ``id`` is taken.
            ChildStartError: It failed before ``started()``; it is not added.
        """
        if id is not None and not isinstance(id, str):
            raise TypeError(f"a member's id must be a str, got {type(id).__name__}")
        return await self._command(StartMember(args, id))


class DynamicSupervisor(Supervisor):
    """A supervisor whose children all come from one template: a pool of workers.

    OTP's ``simple_one_for_one`` (Elixir's ``DynamicSupervisor``)::

        fetchers = DynamicSupervisor(
            ChildSpec("fetch", fetch, restart=Restart.TRANSIENT), max_children=100
        )
        async with fetchers as pool:
            await pool.start_member("https://example.com/a")  # fetch(url, task_status=...)

    Its children, the *members*, differ from a plain supervisor's:

    - each is the template with extra arguments: ``start_member(*args)`` calls the
      template's target as ``target(*args, task_status=...)``;
    - a member that ends for good (by its restart type, or by ``terminate_child``) is
      removed, so ``max_children`` bounds the members running or restarting, and
      ``restart_child``/``delete_child`` have nothing to act on;
    - a member that fails is restarted alone (``ONE_FOR_ONE``), within the restart
      intensity, as usual;
    - on shutdown all members are asked to stop at once and waited for together, each
      within its ``shutdown`` budget: members have no order, and a pool drains in the
      time of its slowest member rather than the sum of all;
    - events name a member by the template's id in ``SupervisorEvent.child_label`` (its
      own id stays in ``child_id``), so a metric labelled by ``child_path`` has one
      series per pool, however many members come and go.

    Args:
        template: The spec every member is made from; its ``id`` names the members
            (``"<id>-1"``, ``"<id>-2"``, ...). An actor cannot be a template: its mailbox
            belongs to one child.
        initial: Argument tuples of members to start, in order, when the supervisor
            starts (and again when its parent restarts it).
        max_children: Most members at once; ``start_member`` beyond it raises
            :class:`TooManyChildren`.

    The other arguments are :class:`Supervisor`'s. ``auto_shutdown`` works here too: a
    template with ``significant=True`` and ``AutoShutdown.ALL_SIGNIFICANT`` makes the
    pool return once every member ended on its own (see :func:`worker_pool`).

    .. versionadded:: 0.2.0
    """

    def __init__(
        self,
        template: ChildSpec,
        *,
        initial: Iterable[tuple[object, ...]] = (),
        max_children: int | None = None,
        max_restarts: int = 3,
        within: float = 5.0,
        backoff: RestartBackoff | None = None,
        auto_shutdown: AutoShutdown = AutoShutdown.NEVER,
        cancel_grace: float = 1.0,
        name: str = "dynamic_supervisor",
        logger: SupervisorLogger | None = None,
        on_event: EventHook | None = None,
    ) -> None:
        if not isinstance(template, ChildSpec):
            raise TypeError(f"template must be a ChildSpec, got {template!r}")
        if isinstance(template.target, ManagedTarget):
            raise TypeError(
                f"template {template.id!r} is an actor; an actor's mailbox belongs to one "
                "child, so actors cannot be pool members"
            )
        members = tuple(tuple(args) for args in initial)
        super().__init__(
            (),
            strategy=Strategy.ONE_FOR_ONE,
            max_restarts=max_restarts,
            within=within,
            backoff=backoff,
            max_children=max_children,
            auto_shutdown=auto_shutdown,
            cancel_grace=cancel_grace,
            name=name,
            logger=logger,
            on_event=on_event,
        )
        if template.significant and auto_shutdown is AutoShutdown.NEVER:
            raise InvalidChildSpec(
                f"template {template.id!r} is significant but auto_shutdown is NEVER; pass "
                "auto_shutdown=AutoShutdown.ANY_SIGNIFICANT or ALL_SIGNIFICANT"
            )
        if max_children is not None and len(members) > max_children:
            raise ValueError(f"{len(members)} initial members exceed max_children={max_children}")
        self._template = template
        self._initial = members

    def __repr__(self) -> str:
        return (
            f"<DynamicSupervisor {self.name!r} template={self.template.id!r} "
            f"running={self._run is not None}>"
        )

    @property
    def template(self) -> ChildSpec:
        """The spec every member is made from."""
        template = self._template
        assert template is not None
        return template

    def _new_handle(self) -> DynamicSupervisorHandle:
        return DynamicSupervisorHandle(self)

    @property
    def handle(self) -> DynamicSupervisorHandle:
        """The handle ``run`` hands back; the same object across runs."""
        return cast("DynamicSupervisorHandle", self._handle)

    async def run(
        self,
        *,
        task_status: trio.TaskStatus[DynamicSupervisorHandle] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """Start the initial members, supervise, and return once stopped (see
        :meth:`Supervisor.run`); reports the :class:`DynamicSupervisorHandle`."""
        # The handle reported is this supervisor's DynamicSupervisorHandle.
        await super().run(task_status=cast("trio.TaskStatus[SupervisorHandle]", task_status))

    async def __aenter__(self) -> DynamicSupervisorHandle:
        await super().__aenter__()
        return self.handle
