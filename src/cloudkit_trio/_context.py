"""The facade: CloudContext, its builder, and Cloud, the handle of a running runtime."""

from __future__ import annotations

import math
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import TYPE_CHECKING, Final, final

import attrs
import httpx
import trio

from ._config import CloudConfig
from ._errors import ConfigError
from ._operation import Operation, Response, endpoint_of
from ._provider import ProviderType
from ._submission import Reply, Submission
from ._validation import check_count, check_seconds, check_url
from .actors import Strategy, SupervisorHandle, SupervisorSnapshot
from .runtime._admission import AdmissionSettings, EndpointAdmission
from .runtime._aggregator import AggregatorStatistics
from .runtime._assembly import Runtime, RuntimeSettings, WorkerSupervision
from .runtime._breaker import BreakerSnapshot
from .runtime._credentials import CredentialsSnapshot
from .runtime._lifecycle import ContextState
from .runtime._queue import SubmissionChannel
from .runtime._router import RouterStatistics
from .runtime._runner import OperationRunner, RunnerStatistics
from .runtime._shared import SharedSettings, SharedSnapshot, default_process_id
from .spi import (
    AdaptiveConcurrency,
    AuthProvider,
    CircuitBreaker,
    EnvAuthProvider,
    ExponentialBackoff,
    ForcedState,
    Logger,
    MetricsCollector,
    NoopMetrics,
    RateLimit,
    RetryBudget,
    RetryPolicy,
    SharedState,
    StdlibLogger,
)
from .transport._signing import BearerTokenSigner, PerServiceSigner, RequestSigner

if TYPE_CHECKING:
    from collections.abc import AsyncGenerator, AsyncIterator, Hashable
    from types import TracebackType

    from opentelemetry.trace import TracerProvider

    from ._streaming import StreamingResponse
    from .runtime._tracing import Tracing

__all__ = [
    "Cloud",
    "CloudContext",
    "CloudContextBuilder",
    "CloudSnapshot",
    "CloudStatistics",
    "ContextState",
    "SubmissionChannel",
]

_DEFAULT_FLUSH_INTERVAL: Final = 0.1
_NOT_SET: Final = object()


def _check_instance(name: str, value: object, kind: type) -> None:
    if not isinstance(value, kind):
        raise TypeError(f"{name} must implement {kind.__name__}, got {type(value).__name__}")


def _default_signer(provider: ProviderType) -> RequestSigner | PerServiceSigner:
    """How ``provider``'s requests are signed when the builder is not told."""
    if provider is ProviderType.AWS:
        # Imported here: the aws package builds on this module (S3 takes a Cloud).
        from .aws._aws_signer import AwsSigner

        return AwsSigner()
    if provider is ProviderType.AZURE or provider is ProviderType.GCP:
        return BearerTokenSigner()
    raise ConfigError(
        f"ProviderType.{provider.name} has no default request signer (its request "
        "signatures are not built in): pass .signer(...) with a RequestSigner that signs "
        "for it, or .signer(NoAuthSigner()) for endpoints that need no authentication",
        field="signer",
        value=None,
    )


def _default_auth(provider: ProviderType) -> AuthProvider:
    """Where ``provider``'s credentials come from when the builder is not told."""
    if provider is ProviderType.AWS:
        from .aws._chain import default_aws_chain

        return default_aws_chain()
    return EnvAuthProvider()


class CloudContextBuilder:
    """Collects a context's configuration; :meth:`build` validates it and starts nothing.

    Defaults: ``CloudConfig()``, :class:`ExponentialBackoff` with ``max_attempts =
    config.max_retries + 1``, a :class:`CircuitBreaker` per endpoint with default
    settings, :class:`NoopMetrics`, :class:`StdlibLogger`,
    :class:`~cloudkit_trio.transport.PooledTransport` (``plain_httpx_transport()`` selects
    httpx's own), and per provider:

    - ``AWS``: every operation signed with Signature Version 4 for its service and region
      (:class:`~cloudkit_trio.aws.AwsSigner`), credentials from
      :func:`~cloudkit_trio.aws.default_aws_chain` (the environment, the shared files,
      the container endpoint);
    - ``AZURE`` and ``GCP``: ``Authorization: Bearer`` with the access token of the
      credentials (:class:`~cloudkit_trio.transport.BearerTokenSigner`), credentials from
      :class:`EnvAuthProvider`;
    - ``ORACLE``: no default signer (OCI's request signatures are not built in):
      :meth:`build` raises :class:`ConfigError` unless ``.signer(...)`` is given.

    ``.signer(NoAuthSigner())`` sends requests unsigned and never asks for credentials.

    .. versionchanged:: 0.2.0
       Requests are signed by default; before, nothing was signed unless ``.signer(...)``
       said so.

    .. versionadded:: 0.1.0
    """

    def __init__(self, provider: ProviderType | str) -> None:
        self._provider = ProviderType.parse(provider)
        self._config: CloudConfig | None = None
        self._auth: AuthProvider | None = None
        self._policy: RetryPolicy | None = None
        self._breaker: object = _NOT_SET
        self._collectors: tuple[MetricsCollector, ...] = ()
        self._logger: Logger | None = None
        self._transport: httpx.AsyncBaseTransport | None = None
        self._plain_httpx = False
        self._signer: RequestSigner | PerServiceSigner | None = None
        self._windows = (15 * 60.0, 10 * 60.0)
        self._flush_interval = _DEFAULT_FLUSH_INTERVAL
        self._workers = WorkerSupervision()
        self._budget: RetryBudget | None = RetryBudget()
        self._rate_limits: dict[str | None, RateLimit] = {}
        self._concurrency: AdaptiveConcurrency | None = None
        self._shed = True
        self._shared: SharedSettings | None = None
        self._tracing: Tracing | None = None

    def config(self, config: CloudConfig) -> CloudContextBuilder:
        """Use ``config`` (see :class:`CloudConfig`)."""
        _check_instance("config", config, CloudConfig)
        self._config = config
        return self

    def auth_provider(self, provider: AuthProvider) -> CloudContextBuilder:
        """Where credentials come from."""
        _check_instance("auth_provider", provider, AuthProvider)
        self._auth = provider
        return self

    def retry_policy(self, policy: RetryPolicy) -> CloudContextBuilder:
        """How failures are retried. A :class:`CircuitBreaker` also sets the breaker settings."""
        _check_instance("retry_policy", policy, RetryPolicy)
        self._policy = policy
        return self

    def circuit_breaker(self, settings: CircuitBreaker | None) -> CloudContextBuilder:
        """Breaker settings for every endpoint, or ``None`` to run without breakers."""
        if settings is not None:
            _check_instance("circuit_breaker", settings, CircuitBreaker)
        self._breaker = settings
        return self

    def metrics_collector(self, *collectors: MetricsCollector) -> CloudContextBuilder:
        """Where metrics go; several collectors all receive every event."""
        if not collectors:
            raise TypeError("metrics_collector needs at least one collector")
        for collector in collectors:
            _check_instance("metrics_collector", collector, MetricsCollector)
        self._collectors = collectors
        return self

    def logger(self, logger: Logger) -> CloudContextBuilder:
        """Where the runtime logs retries, breaker transitions, refreshes and restarts."""
        _check_instance("logger", logger, Logger)
        self._logger = logger
        return self

    def transport(self, transport: httpx.AsyncBaseTransport) -> CloudContextBuilder:
        """The httpx transport every attempt goes through (``httpx.MockTransport`` works)."""
        _check_instance("transport", transport, httpx.AsyncBaseTransport)
        self._transport = transport
        return self

    def plain_httpx_transport(self) -> CloudContextBuilder:
        """Use httpx's own connection pool instead of :class:`PooledTransport` by default.

        httpx's pool gets slower as concurrency rises (see the transport docs); this is
        for environments that need its features (HTTP/2, proxies).
        """
        self._plain_httpx = True
        return self

    def signer(self, signer: RequestSigner | PerServiceSigner) -> CloudContextBuilder:
        """How credentials are put on each request, instead of the provider's default.

        A :class:`~cloudkit_trio.transport.RequestSigner` signs every operation alike; a
        :class:`~cloudkit_trio.transport.PerServiceSigner` chooses one per operation;
        ``NoAuthSigner()`` sends requests unsigned.
        """
        if not isinstance(signer, RequestSigner | PerServiceSigner):
            raise TypeError(
                "signer must implement RequestSigner or PerServiceSigner, "
                f"got {type(signer).__name__}"
            )
        self._signer = signer
        return self

    def credential_refresh(self, *, advisory: float, mandatory: float) -> CloudContextBuilder:
        """Seconds before expiry to refresh in the background, and to make callers wait."""
        advisory = check_seconds("advisory", advisory, allow_zero=True)
        mandatory = check_seconds("mandatory", mandatory, allow_zero=True)
        if mandatory > advisory:
            raise ConfigError(
                f"credential_refresh mandatory ({mandatory!r}) must not exceed advisory "
                f"({advisory!r})",
                field="mandatory",
                value=mandatory,
            )
        self._windows = (advisory, mandatory)
        return self

    def retry_budget(self, budget: RetryBudget | None) -> CloudContextBuilder:
        """Each endpoint's retry budget, or ``None`` for none (default ``RetryBudget()``).

        Retries are allowed as a share of recent first attempts plus a small floor per
        second; a retry the budget refuses is not made, and the operation fails with its
        last error (``error.not_retried`` says why). See the Admission guide.

        .. versionadded:: 0.2.0
        """
        if budget is not None:
            _check_instance("retry_budget", budget, RetryBudget)
        self._budget = budget
        return self

    def rate_limit(self, limit: RateLimit, endpoint: str | None = None) -> CloudContextBuilder:
        """A client-side rate limit: for ``endpoint`` (a URL or ``scheme://host:port``), or
        with ``None`` for every endpoint, each with a token bucket of its own.

        An endpoint's own limit wins over the one for every endpoint. Call again for other
        endpoints.

        .. versionadded:: 0.2.0
        """
        _check_instance("rate_limit", limit, RateLimit)
        if endpoint is not None:
            if not isinstance(endpoint, str):
                raise TypeError(f"endpoint must be a str or None, got {type(endpoint).__name__}")
            endpoint = endpoint_of(check_url("rate_limit endpoint", endpoint))
        self._rate_limits[endpoint] = limit
        return self

    def adaptive_concurrency(self, settings: AdaptiveConcurrency | None) -> CloudContextBuilder:
        """Let each endpoint's concurrency limit follow its latency (off by default).

        It replaces ``CloudConfig.max_concurrency_per_endpoint`` as the endpoint's
        bulkhead size, moving between ``min_limit`` and ``max_limit``.

        .. versionadded:: 0.2.0
        """
        if settings is not None:
            _check_instance("adaptive_concurrency", settings, AdaptiveConcurrency)
        self._concurrency = settings
        return self

    def shared_state(
        self,
        backend: SharedState | None,
        *,
        quorum: int = 2,
        poll_interval: float = 1.0,
        process: str | None = None,
    ) -> CloudContextBuilder:
        """Share what this process learns about endpoints with other processes (off by
        default; ``None`` turns it off again).

        ``backend`` is a :class:`~cloudkit_trio.SharedState`, such as
        :class:`cloudkit_trio.redis.RedisState`. A breaker that opens on its own failures
        tells the others; ``quorum`` processes reporting an endpoint open open this one's
        breaker too; overrides set with :meth:`Cloud.force_everywhere` reach every
        process; after a break only one process probes the endpoint. Changes are pushed
        to every process as they happen (the store's publish/subscribe) and read at once;
        the view is also read every ``poll_interval`` seconds, as a safety net and while
        no push arrives. Never by an operation: when the store is down or slow, every
        decision is local. ``process`` names this process in the store (default
        ``host:pid:random``).

        .. versionadded:: 0.2.0
        """
        if backend is None:
            self._shared = None
            return self
        _check_instance("shared_state", backend, SharedState)
        check_count("shared_state quorum", quorum, field="quorum")
        check_seconds("shared_state poll_interval", poll_interval, field="poll_interval")
        if process is not None and (not isinstance(process, str) or not process.strip()):
            raise ConfigError(
                f"shared_state process must be a non-empty name, got {process!r}",
                field="process",
                value=process,
            )
        self._shared = SharedSettings(
            backend=backend,
            quorum=quorum,
            poll_interval=float(poll_interval),
            process=process if process is not None else default_process_id(),
        )
        return self

    def deadline_shedding(self, enabled: bool) -> CloudContextBuilder:
        """Refuse an attempt whose deadline is shorter than its endpoint's recent median
        latency (on by default): ``OperationTimeout(waiting_for="admission")``, unsent.

        .. versionadded:: 0.2.0
        """
        if not isinstance(enabled, bool):
            raise TypeError(f"deadline_shedding takes True or False, got {enabled!r}")
        self._shed = enabled
        return self

    def worker_supervision(
        self,
        *,
        strategy: Strategy = Strategy.ONE_FOR_ONE,
        max_restarts: int = 3,
        within: float = 5.0,
    ) -> CloudContextBuilder:
        """How ``cloud.supervisor``, the subtree for your own workers, restarts them.

        Its intensity is its own: workers that keep crashing never use up the runtime's.
        Past ``max_restarts`` restarts in ``within`` seconds it gives up, the context
        closes gracefully, and ``RestartIntensityExceeded`` (its ``__cause__`` the
        worker's exception) is raised from ``async with`` or ``serve``.

        .. versionadded:: 0.2.0
        """
        if not isinstance(strategy, Strategy):
            raise TypeError(f"strategy must be a Strategy, got {type(strategy).__name__}")
        if isinstance(max_restarts, bool) or not isinstance(max_restarts, int) or max_restarts < 0:
            raise ConfigError(
                f"worker_supervision max_restarts must be an int >= 0, got {max_restarts!r}",
                field="max_restarts",
                value=max_restarts,
            )
        self._workers = WorkerSupervision(
            strategy=strategy,
            max_restarts=max_restarts,
            within=check_seconds("within", within),
        )
        return self

    def tracing(self, tracer_provider: TracerProvider | None = None) -> CloudContextBuilder:
        """Record every operation as an OpenTelemetry span, and each attempt as a child span.

        Spans go to ``tracer_provider`` (an ``opentelemetry.trace.TracerProvider``), or with
        ``None`` to the global one (``opentelemetry.trace.set_tracer_provider``), set now
        or later. An awaited operation's span is a child of the span current where it was
        awaited; a submission's, of the span current where the :class:`Submission` was
        made. Retries, a retry budget's refusals, open breakers, admission's refusals and
        credential refreshes are events on the operation's span; see the Observability
        guide for every name. A tracer that raises costs an operation its trace, never its
        result. Needs the ``tracing`` extra: ``pip install 'cloudkit-trio[tracing]'``.

        .. versionadded:: 0.2.0
        """
        # Imported here: opentelemetry is an optional extra, and an untraced context
        # never needs it.
        from opentelemetry.trace import TracerProvider

        from .tracing._tracer import OpenTelemetryTracing

        if tracer_provider is not None and not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                "tracing takes an opentelemetry.trace.TracerProvider or None (the global "
                f"one), got {type(tracer_provider).__name__}"
            )
        self._tracing = OpenTelemetryTracing(tracer_provider)
        return self

    def metrics_flush_interval(self, seconds: float) -> CloudContextBuilder:
        """How often the metrics aggregator forwards to collectors (default 0.1 s)."""
        self._flush_interval = check_seconds("metrics_flush_interval", seconds)
        return self

    def build(self) -> CloudContext:
        """Validate and return the context. Nothing starts until it is entered or served."""
        if self._shared is None and any(limit.shared for limit in self._rate_limits.values()):
            raise ConfigError(
                "RateLimit(shared=True) is shared through the state other processes see: "
                "configure it with .shared_state(backend)",
                field="shared",
                value=True,
            )
        config = self._config if self._config is not None else CloudConfig()
        provider = self._provider
        policy = self._policy
        breaker: CircuitBreaker | None
        if isinstance(policy, CircuitBreaker):
            breaker, policy = policy, policy.inner
        elif self._breaker is _NOT_SET:
            breaker = CircuitBreaker()
        else:
            assert self._breaker is None or isinstance(self._breaker, CircuitBreaker)
            breaker = self._breaker
        if policy is None:
            policy = ExponentialBackoff(max_attempts=config.max_retries + 1)
        settings = RuntimeSettings(
            provider=provider,
            config=config,
            auth_provider=self._auth if self._auth is not None else _default_auth(provider),
            retry_policy=policy,
            breaker=breaker,
            collectors=self._collectors or (NoopMetrics(),),
            logger=self._logger if self._logger is not None else StdlibLogger(),
            transport=self._transport,
            plain_httpx=self._plain_httpx,
            signer=self._signer if self._signer is not None else _default_signer(provider),
            advisory_window=self._windows[0],
            mandatory_window=self._windows[1],
            metrics_flush_interval=self._flush_interval,
            workers=self._workers,
            shared=self._shared,
            tracing=self._tracing,
            admission=AdmissionSettings(
                budget=self._budget,
                rate_limits=dict(self._rate_limits),
                concurrency=self._concurrency,
                shed=self._shed,
            ),
        )
        return CloudContext._create(settings)


@final
class CloudContext:
    """A configured runtime, ready to run: ``async with context as cloud`` or
    ``cloud = await nursery.start(context.serve)``.

    Build one with :meth:`builder`. A context can be run more than once, one run at a time
    being the usual pattern; each run has its own supervision tree, queues and state.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        raise TypeError("use CloudContext.builder(provider)...build()")

    @classmethod
    def _create(cls, settings: RuntimeSettings) -> CloudContext:
        self = object.__new__(cls)
        self._settings = settings
        self._running = None
        return self

    _settings: RuntimeSettings
    _running: AbstractAsyncContextManager[Cloud] | None

    @staticmethod
    def builder(provider: ProviderType | str) -> CloudContextBuilder:
        """Start configuring a context for ``provider``."""
        return CloudContextBuilder(provider)

    @property
    def provider(self) -> ProviderType:
        return self._settings.provider

    @property
    def config(self) -> CloudConfig:
        return self._settings.config

    def __repr__(self) -> str:
        s = self._settings
        return (
            f"CloudContext(provider={s.provider}, config={s.config!r}, "
            f"auth_provider={s.auth_provider!r}, retry_policy={s.retry_policy!r})"
        )

    async def serve(
        self, *, task_status: trio.TaskStatus[Cloud] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Run the runtime inside the caller's nursery until :meth:`Cloud.aclose` or cancellation.

        ``cloud = await nursery.start(context.serve)`` hands back the :class:`Cloud`.
        Cancelling the nursery stops the runtime at once: operations still running or
        queued get :class:`ContextClosed`.
        """
        runtime = Runtime(self._settings)
        await runtime.serve(started=lambda: task_status.started(Cloud._create(runtime)))

    async def __aenter__(self) -> Cloud:
        if self._running is not None:
            raise RuntimeError("this CloudContext is already running in an async with block")
        running = self._run()
        cloud = await running.__aenter__()
        self._running = running
        return cloud

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool | None:
        running, self._running = self._running, None
        assert running is not None
        try:
            return await running.__aexit__(exc_type, exc, traceback)
        except BaseExceptionGroup as group:
            leaf = _collapse(group, exc)
            # Keep the leaf's own cause (RestartIntensityExceeded names the child's failure);
            # only the nursery's group around it is dropped.
            raise leaf from leaf.__cause__

    @asynccontextmanager
    async def _run(self) -> AsyncGenerator[Cloud, None]:
        async with trio.open_nursery() as nursery:
            cloud = await nursery.start(self.serve)
            try:
                yield cloud
            except BaseException:
                nursery.cancel_scope.cancel()
                raise
            else:
                await cloud.aclose()


def _collapse(
    group: BaseExceptionGroup[BaseException], original: BaseException | None
) -> BaseException:
    """One exception for the caller instead of our nursery's group, where that loses nothing."""
    leaves = list(_leaves(group))
    if original is not None and all(leaf is original for leaf in leaves):
        return original
    others = [leaf for leaf in leaves if leaf is not original]
    if len(others) == 1 and (original is None or isinstance(original, trio.Cancelled)):
        return others[0]
    return group


def _leaves(group: BaseExceptionGroup[BaseException]) -> list[BaseException]:
    found: list[BaseException] = []
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            found.extend(_leaves(exc))
        else:
            found.append(exc)
    return found


def _deadline(timeout: float | None) -> float:
    if timeout is None:
        return math.inf
    return trio.current_time() + check_seconds("timeout", timeout)


@attrs.frozen
class CloudStatistics:
    """Counters of a running context.

    .. versionadded:: 0.1.0
    """

    queued: int
    queue_capacity: int
    runner: RunnerStatistics
    router: RouterStatistics
    metrics: AggregatorStatistics
    breakers: tuple[BreakerSnapshot, ...]
    credentials: CredentialsSnapshot


@attrs.frozen
class CloudSnapshot:
    """The whole runtime at one instant: tree, breakers, credentials, queues.

    Cheap enough to take once a second; never holds a secret.

    .. versionadded:: 0.1.0
    """

    at: float
    provider: str
    #: The lifecycle's state; ``closing`` is true from CLOSING on.
    state: ContextState
    closing: bool
    tree: SupervisorSnapshot
    breakers: tuple[BreakerSnapshot, ...]
    credentials: CredentialsSnapshot
    queued: int
    queue_capacity: int
    inflight: int
    max_concurrency: int
    metrics_queued: int
    metrics_dropped: int
    #: Operations cut short by their deadline, per wait that ran out (``waiting_for``).
    deadlines_expired: dict[str, int] = attrs.field(factory=dict)
    #: Failures of user code behind each extension point, contained by the runtime.
    spi_failures: dict[str, int] = attrs.field(factory=dict)
    #: Each endpoint's admission state: retry budget, rate limit, adaptive concurrency
    #: limit, recent latency. (.. versionadded:: 0.2.0)
    admission: tuple[EndpointAdmission, ...] = ()
    #: Totals over the endpoints: retries the budgets refused, attempts a rate limit
    #: refused (``Throttled``), attempts shed for a deadline too short.
    retries_suppressed: int = 0
    throttled: int = 0
    shed: int = 0
    #: Operations an adaptive concurrency limit refused (``Overloaded``).
    overloaded: int = 0
    #: The state shared with other processes as this one sees it; None when not shared.
    #: (.. versionadded:: 0.2.0)
    shared: SharedSnapshot | None = None


@final
class Cloud:
    """A running runtime: submit operations, inspect and control it, stop it.

    You get one from ``async with context as cloud`` or ``await nursery.start(context.serve)``.

    .. versionadded:: 0.1.0
    """

    def __init__(self) -> None:
        raise TypeError(
            "a Cloud comes from `async with CloudContext` or `nursery.start(context.serve)`"
        )

    @classmethod
    def _create(cls, runtime: Runtime) -> Cloud:
        self = object.__new__(cls)
        self._runtime = runtime
        return self

    _runtime: Runtime

    @property
    def provider(self) -> ProviderType:
        return self._runtime.settings.provider

    @property
    def config(self) -> CloudConfig:
        return self._runtime.settings.config

    @property
    def supervisor(self) -> SupervisorHandle:
        """The subtree for your own workers: ``await cloud.supervisor.start_child(spec)``.

        It is the ``workers`` child of the runtime's tree, with its own restart intensity
        (:meth:`CloudContextBuilder.worker_supervision`): a worker that keeps crashing
        costs the runtime's actors nothing. When it gives up, the context closes
        gracefully and ``RestartIntensityExceeded`` is raised from ``async with`` (or
        ``serve``) with the worker's exception as ``__cause__``. The whole tree is in
        ``snapshot().supervisor``.

        .. versionchanged:: 0.2.0
           The users' own subtree; it was the runtime's root supervisor.
        """
        return self._runtime.workers.handle

    @property
    def state(self) -> ContextState:
        """Where the context stands: running, closing or closed (see :class:`ContextState`)."""
        return self._runtime.lifecycle.state

    # The timeout keyword is the public contract (DESIGN.md §4.1); it becomes a deadline.
    async def execute(self, operation: Operation, *, timeout: float | None = None) -> Response:  # noqa: ASYNC109
        """Run ``operation`` and return its response, or raise a :class:`CloudError`.

        ``timeout`` bounds the whole operation (every attempt and backoff), like
        ``Operation.timeout``; the earlier of the two applies.
        """
        runner = self._admit("execute", operation)
        # The caller's own enclosing deadline is read only when a retry is planned.
        if timeout is None:
            return await runner.run(operation)
        return await runner.run(operation, deadline=_deadline(timeout))

    @asynccontextmanager
    async def stream(
        self,
        operation: Operation,
        *,
        timeout: float | None = None,  # noqa: ASYNC109
    ) -> AsyncIterator[StreamingResponse]:
        """Run ``operation`` and stream its body: ``async with cloud.stream(op) as response:``.

        Credentials, the breaker and retries apply until a successful response's headers
        arrive, exactly as for :meth:`execute`; an error status raises the mapped
        :class:`CloudError` from ``async with``. Inside the block, read the body with
        ``async for chunk in response.aiter_bytes()``; it is closed when the block exits,
        read or not. The operation holds its concurrency slots until then, and ``timeout``
        (or ``Operation.timeout``) bounds reading the body as well; without any deadline,
        ``CloudConfig.stream_timeout`` (300 s) bounds it. Runs on the caller's task.
        """
        runner = self._admit("stream", operation)
        async with runner.stream(
            operation,
            deadline=_deadline(timeout),
            plan_deadline=trio.current_effective_deadline(),
        ) as response:
            yield response

    def _admit(self, entry: str, operation: Operation) -> OperationRunner:
        """The checks every entry point makes: the argument, then the lifecycle."""
        if not isinstance(operation, Operation):
            raise TypeError(f"{entry}() takes an Operation, got {type(operation).__name__}")
        runtime = self._runtime
        lifecycle = runtime.lifecycle
        if lifecycle.state is not ContextState.RUNNING:
            lifecycle.check_open(
                "the operation was not started",
                service=operation.service,
                operation=operation.name,
            )
        return runtime.runner

    def submit_channel(self) -> SubmissionChannel:
        """A new send channel on the runtime's submission queue; close it when you are done.

        ``await channel.send(Submission(op, reply_to))`` waits while the queue is full.
        Every accepted submission gets exactly one :class:`Reply` on ``reply_to``; its
        ``Operation.timeout`` counts from acceptance, time in the queue included. Once the
        context is closing, ``submit_channel()`` and the channel's ``send`` raise
        :class:`ContextClosed`.
        """
        return self._runtime.queue.channel()

    def submit_nowait(self, submission: Submission) -> None:
        """Queue ``submission`` without waiting; raise :class:`Overloaded` if the queue is full."""
        if not isinstance(submission, Submission):
            raise TypeError(f"submit_nowait() takes a Submission, got {type(submission).__name__}")
        self._runtime.queue.put_nowait(submission)

    async def submit(
        self, operation: Operation, *, correlation_id: Hashable | None = None
    ) -> Reply:
        """Submit through the queue and wait for the reply (for tests and simple callers)."""
        send, receive = trio.open_memory_channel[Reply](1)
        async with send, receive:
            self.submit_nowait(Submission(operation, send, correlation_id))
            return await receive.receive()

    def statistics(self) -> CloudStatistics:
        runtime = self._runtime
        return CloudStatistics(
            queued=runtime.queue.depth,
            queue_capacity=self.config.queue_size,
            runner=runtime.runner.statistics(),
            router=runtime.router.statistics(),
            metrics=runtime.aggregator.statistics(),
            breakers=runtime.breakers.snapshots(),
            credentials=runtime.refresher.snapshot(str(self.provider)),
        )

    def snapshot(self) -> CloudSnapshot:
        """A frozen record of the whole runtime (see :class:`CloudSnapshot`)."""
        runtime = self._runtime
        metrics = runtime.aggregator.statistics()
        state = runtime.lifecycle.state
        admission = runtime.admission.snapshots(trio.current_time())
        return CloudSnapshot(
            at=trio.current_time(),
            provider=str(self.provider),
            state=state,
            closing=state is not ContextState.RUNNING,
            tree=runtime.handle.snapshot(),
            breakers=runtime.breakers.snapshots(),
            credentials=runtime.refresher.snapshot(str(self.provider)),
            queued=runtime.queue.depth,
            queue_capacity=self.config.queue_size,
            inflight=runtime.runner.inflight,
            max_concurrency=self.config.max_concurrency,
            metrics_queued=metrics.queued,
            metrics_dropped=metrics.dropped,
            deadlines_expired=dict(runtime.runner.deadlines_expired),
            spi_failures=dict(runtime.containment.failures()),
            admission=admission,
            retries_suppressed=sum(a.retries_suppressed for a in admission),
            throttled=sum(a.throttled for a in admission),
            shed=sum(a.shed for a in admission),
            overloaded=sum(a.overloaded for a in admission),
            shared=None if runtime.shared is None else runtime.shared.snapshot(),
        )

    # -- breakers ----------------------------------------------------------------------------

    def breaker(self, url_or_endpoint: str) -> BreakerSnapshot:
        """The state of the breaker for an endpoint (a URL or ``scheme://host:port``)."""
        return self._runtime.breakers.breaker(endpoint_of(url_or_endpoint)).snapshot(
            trio.current_time()
        )

    def force_open(self, url_or_endpoint: str) -> None:
        """Reject every call to the endpoint until :meth:`reset_breaker`."""
        self._runtime.breakers.breaker(endpoint_of(url_or_endpoint)).force_open(trio.current_time())

    def force_closed(self, url_or_endpoint: str) -> None:
        """Admit every call to the endpoint, failures ignored, until :meth:`reset_breaker`."""
        self._runtime.breakers.breaker(endpoint_of(url_or_endpoint)).force_closed(
            trio.current_time()
        )

    def reset_breaker(self, url_or_endpoint: str) -> None:
        """Close the endpoint's breaker and forget its failures."""
        self._runtime.breakers.breaker(endpoint_of(url_or_endpoint)).reset(trio.current_time())

    async def force_everywhere(self, url_or_endpoint: str, state: ForcedState | None) -> None:
        """Force the endpoint's breaker open or closed in every process sharing state
        (:meth:`CloudContextBuilder.shared_state`), or with None lift the override and
        reset it. Applied here at once and by the others at their next poll; the override
        lasts until lifted (``RedisState``'s ``override_ttl`` renews it on every set).

        Raises :class:`SharedStateUnavailable` when the store did not take it (nothing
        changed then), and ``RuntimeError`` when this context shares no state.

        .. versionadded:: 0.2.0
        """
        shared = self._runtime.shared
        if shared is None:
            raise RuntimeError(
                "this context shares no state; configure it with "
                "CloudContext.builder(...).shared_state(backend)"
            )
        if state is not None and not isinstance(state, ForcedState):
            raise TypeError(f"state must be a ForcedState or None, got {state!r}")
        await shared.force_everywhere(endpoint_of(url_or_endpoint), state)

    # -- shutdown ----------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Shut down gracefully, as leaving ``async with`` does.

        Stop accepting (every entry point answers :class:`ContextClosed` from now on); let
        running and queued operations finish for up to ``CloudConfig.shutdown_grace``
        seconds; cancel what is left, which gets :class:`ContextClosed`; stop the
        supervision tree in reverse start order; drain the metrics. Idempotent; a second
        caller waits until the first one's shutdown is over.
        """
        await self._runtime.aclose()
