"""A warm worker: runs the deployments' flow runs in this process, on one event loop, instead of a process each.

The deployments stay exactly what `serve()` registers (schedules, event triggers, parameter forms, runs
listed under their deployment in the UI); only the execution differs. Every `poll_seconds` the worker
asks Prefect for its deployments' due runs (the same call Prefect's Runner makes, which also keeps the
deployments "Ready"), claims each — first a row keyed on the run's Scheduled state in Linli's database
(`flow_run_claim`: one insert wins), then Pending in Prefect — so several workers can serve the same
deployments and each scheduling of a run executes once, and runs it with Prefect's async flow engine,
which records Running, then Completed or Failed. A spawned process costs 3–7 s on a small machine;
an async run here costs ~0.2 s.

Shutdown (SIGINT/SIGTERM, or `request_stop()`): stop claiming, let running runs finish within the
grace period, then cancel the rest and mark them Crashed. Schedules are left as they are (not paused).

Cancelling a run in the UI is honoured: the worker sees the run's Cancelling state on its next poll,
cancels the run's task and marks it Cancelled.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import resource
import signal
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from uuid import UUID

from prefect import Flow
from prefect.client.orchestration import PrefectClient, get_client
from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId, FlowRunFilterState, FlowRunFilterStateType
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.deployments.runner import RunnerDeployment
from prefect.exceptions import Abort
from prefect.flow_engine import run_flow_async
from prefect.states import Cancelled, Crashed, Pending
from prefect.utilities.callables import get_call_parameters, parameters_to_args_kwargs
from prefect.utilities.engine import propose_state
from sqlalchemy import delete
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from linli.db import get_engine, session_scope
from linli.models import FlowRunClaim

logger = logging.getLogger("linli.worker")
_RECANCEL_SECONDS = 5.0


@dataclass
class WorkerStats:
    """What one worker did: claims won and lost, runs finished by final state."""

    claimed: int = 0
    lost: int = 0
    finished: dict[str, int] = field(default_factory=dict)
    executed: list[UUID] = field(default_factory=list)

    def count(self, state: str) -> None:
        """Count one finished run in `state`."""
        self.finished[state] = self.finished.get(state, 0) + 1


class ClaimBook:
    """Claims on flow runs in Linli's database: the first worker to insert (run, Scheduled state) wins.

    Proposing Pending alone is not enough: Prefect accepts Completed → Pending and Failed → Pending (a
    rerun), so a worker holding a list of due runs read a moment ago could start a run that another
    worker claimed and finished meanwhile — a fast DAG finishes in ~50 ms. A rerun gets a new Scheduled
    state, so it can be claimed again. Rows older than `keep` are deleted now and then.
    """

    def __init__(self, engine: Engine | None = None, *, worker: str | None = None,
                 keep: timedelta = timedelta(days=2)) -> None:
        self._engine = engine
        self.worker = worker or f"{socket.gethostname()}-{os.getpid()}"
        self.keep = keep
        self._pruned = 0.0

    def take(self, run_id: UUID, state_id: UUID) -> bool:
        """Record this worker's claim; False when another worker holds it already."""
        engine = self._engine or get_engine()
        try:
            with session_scope(engine) as session:
                session.add(FlowRunClaim(flow_run_id=str(run_id), state_id=str(state_id), worker=self.worker))
        except IntegrityError:
            return False
        if time.monotonic() - self._pruned > 3600:
            self._pruned = time.monotonic()
            with session_scope(engine) as session:
                session.exec(delete(FlowRunClaim).where(  # type: ignore[call-overload]
                    FlowRunClaim.claimed_at < datetime.now(UTC) - self.keep))
        return True


class WarmWorker:
    """Register deployments and execute their flow runs in-process, at most `limit` at once."""

    def __init__(self, deployments: Sequence[tuple[RunnerDeployment, Flow[..., Any]]], *, limit: int = 8,
                 poll_seconds: float = 1.0, grace_seconds: float = 10.0, claims: ClaimBook | None = None) -> None:
        self._served = list(deployments)
        self.claims = claims or ClaimBook()
        self.limit = limit
        self.poll_seconds = poll_seconds
        self.grace_seconds = grace_seconds
        self.flows: dict[UUID, Flow[..., Any]] = {}  # deployment id → its flow
        self.stats = WorkerStats()
        self.ready = threading.Event()  # set once the deployments are registered and polling began
        self._running: dict[UUID, asyncio.Task[None]] = {}
        self._cancelled: dict[UUID, float] = {}  # run id → when the worker last cancelled its task
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None

    async def register(self) -> list[UUID]:
        """Create or update each deployment with the API, as `serve()` does; returns their ids."""
        for deployment, flow in self._served:
            self.flows[await deployment.aapply()] = flow
        return list(self.flows)

    def request_stop(self) -> None:
        """Stop claiming and shut down (safe from any thread and from a signal handler)."""
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            self._loop.call_soon_threadsafe(self._stop.set)

    async def serve(self) -> None:
        """Register, then poll, claim and run until `request_stop()`; then drain within the grace period."""
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        await self.register()
        async with get_client() as client:
            self.ready.set()
            logger.info("Warm worker serving %d deployment(s), %d run(s) at once", len(self.flows), self.limit)
            while not self._stop.is_set():
                try:
                    await self._poll(client)
                except Exception:  # noqa: BLE001  (an API hiccup must not stop the worker; next poll retries)
                    logger.exception("Polling Prefect for flow runs failed; trying again")
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stop.wait(), self.poll_seconds)
            await self._drain()

    async def _poll(self, client: PrefectClient) -> None:
        await self._honour_cancellations(client)
        free = self.limit - len(self._running)
        if free <= 0:
            return
        # Only due runs: a run claimed early would sit Pending here while another worker could take it.
        runs = await client.get_scheduled_flow_runs_for_deployments(
            deployment_ids=list(self.flows), scheduled_before=datetime.now(UTC), limit=free)
        for run in runs[:free]:
            if self._stop is not None and self._stop.is_set():
                return
            if run.id in self._running or not await self._claim(client, run):
                continue
            task = asyncio.create_task(self._execute(client, run), name=f"flow-run-{run.id}")
            self._running[run.id] = task
            task.add_done_callback(lambda _t, run_id=run.id: self._running.pop(run_id, None))

    async def _claim(self, client: PrefectClient, run: FlowRun) -> bool:
        """Take the run's claim row, then propose Pending (Scheduled → Pending); False if another worker has it."""
        if run.state is None or not run.state.is_scheduled() or not await asyncio.to_thread(
                self.claims.take, run.id, run.state.id):
            self.stats.lost += 1
            return False
        try:
            state = await propose_state(client, Pending(), flow_run_id=run.id)
        except Abort:
            self.stats.lost += 1
            return False
        if not state.is_pending():
            self.stats.lost += 1
            return False
        run.state = state
        self.stats.claimed += 1
        return True

    async def _execute(self, client: PrefectClient, run: FlowRun) -> None:
        flow = self.flows[run.deployment_id]  # type: ignore[index]  (we only poll our own deployments)
        # What the subprocess path does (prefect.flow_engine._flow_parameters): the run's parameters bound
        # to the flow function, its own defaults filled in.
        args, kwargs = parameters_to_args_kwargs(flow.fn, run.parameters)
        parameters = get_call_parameters(flow.fn, args, kwargs)
        final = "Crashed"
        try:
            state = await run_flow_async(flow, flow_run=run, parameters=parameters, return_type="state")
            if state is not None and state.is_cancelling():
                # The engine saw the Cancelling state itself (before this worker's poll did) and stopped.
                self._cancelled.setdefault(run.id, asyncio.get_running_loop().time())
            if run.id in self._cancelled and (state is None or not state.is_final()):
                # The engine can absorb the task's cancellation and return the run's state as it then
                # stands (Cancelling, seen under load): finish what the UI asked for.
                final = await self._settle_cancelled(client, run.id)
            else:
                final = state.name if state is not None else "Completed"
        except asyncio.CancelledError:
            final = await self._settle_cancelled(client, run.id)
            raise
        except BaseException as err:  # noqa: BLE001  (one broken run must not take the worker down)
            logger.exception("Flow run %s crashed in the worker", run.id)
            await self._force(client, run.id, Crashed(message=f"The worker could not run it: {err!r}"))
        finally:
            self.stats.count(final)
            self.stats.executed.append(run.id)
            _note_memory(self.stats)

    async def _settle_cancelled(self, client: PrefectClient, run_id: UUID) -> str:
        """After the run's task was cancelled: Cancelled if asked for in the UI, else Crashed (shutdown)."""
        if run_id in self._cancelled:
            await self._force(client, run_id, Cancelled(message="Cancelled from Prefect; the worker stopped it."))
            return "Cancelled"
        await self._force(client, run_id, Crashed(
            message=f"The worker shut down and the run did not finish within {self.grace_seconds:g} s."))
        return "Crashed"

    @staticmethod
    async def _force(client: PrefectClient, run_id: UUID, state: Any) -> None:
        # Shielded: this runs while the task is being cancelled, and the state must reach the server.
        await asyncio.shield(client.set_flow_run_state(run_id, state, force=True))

    async def _honour_cancellations(self, client: PrefectClient) -> None:
        if not self._running:
            return
        runs = await client.read_flow_runs(flow_run_filter=FlowRunFilter(
            id=FlowRunFilterId(any_=list(self._running)),
            state=FlowRunFilterState(type=FlowRunFilterStateType(any_=[StateType.CANCELLING]))))
        now = asyncio.get_running_loop().time()
        for run in runs:
            task = self._running.get(run.id)
            # Again after a while if the run goes on: a cancellation that lands while the engine is in a
            # shielded step can be absorbed there.
            if task is not None and now - self._cancelled.get(run.id, -_RECANCEL_SECONDS) >= _RECANCEL_SECONDS:
                logger.info("Flow run %s was cancelled in Prefect; stopping it", run.id)
                self._cancelled[run.id] = now
                task.cancel()

    async def _drain(self) -> None:
        """Let running runs finish within the grace period; cancel (and mark Crashed) what is left."""
        tasks = list(self._running.values())
        if not tasks:
            return
        logger.info("Waiting up to %g s for %d running flow run(s)", self.grace_seconds, len(tasks))
        pending = set(tasks)
        if self.grace_seconds > 0:
            _done, pending = await asyncio.wait(tasks, timeout=self.grace_seconds)
        while pending:  # a cancellation absorbed by a shielded step is repeated until the run stops
            for task in pending:
                task.cancel()
            _done, pending = await asyncio.wait(pending, timeout=_RECANCEL_SECONDS)

    def run(self) -> None:
        """Serve until SIGINT or SIGTERM (the loop runs in a thread: Prefect's engine then leaves signals alone)."""
        context = contextvars.copy_context()  # Prefect's settings context travels with the thread
        error: list[BaseException] = []

        def target() -> None:
            try:
                context.run(asyncio.run, self.serve())
            except BaseException as err:  # noqa: BLE001  (re-raised in the main thread below)
                error.append(err)

        thread = threading.Thread(target=target, name="linli-warm-worker")
        previous = {sig: signal.signal(sig, lambda *_: self.request_stop()) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            thread.start()
            while thread.is_alive():
                thread.join(0.5)
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if error:
            raise error[0]


def _note_memory(stats: WorkerStats) -> None:
    # One process runs many flows: log the peak RSS now and then so a leak shows in the worker's log.
    done = len(stats.executed)
    if done % 100 == 0:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        logger.info("Warm worker: %d runs done (%s), peak RSS %.0f MB", done, stats.finished, peak_mb)

