"""Submit tasks to a Dask cluster, stream progress, and drive a whole sweep end to end.

The driver registers itself in the store (store/leases.py) for the length of the run and
claims nothing itself: each task is claimed by the worker that computes it. Tasks another
driver is computing come back "held"; the driver waits for their results, and computes them
itself only when their leases go stale. A full disk stops the run with one line, before the
merge; failed tasks are listed, and the outcome says whether every task is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import psutil
from distributed import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import inputs
from ..config import SweepSpec, TaskSpec
from ..errors import DyncdiError
from ..merge.combine import check_rule
from ..merge.generations import next_generation
from ..store.leases import Leases, new_driver_id
from ..store.space import (
    StoreFull,
    check_room,
    estimate_bytes,
    free_bytes,
    full_error,
    is_full,
)
from ..store.zarr_store import Store
from ..sweep import Plan, expand, plan
from ..task import run_task
from .cluster import close_cluster, start_cluster
from .footprint import (
    Footprint,
    check_driver_room,
    check_fits,
    task_footprint,
    worker_memory,
)
from .profiles import ClusterProfile, load_profile

# how often a driver looks at tasks another driver holds (s)
HELD_POLL_S = 2.0


@dataclass
class SweepOutcome:
    """What a sweep run did: counts by status, summaries of computed tasks, where things are.

    failed: the sweep's tasks whose stored result is a failure (this run's or an earlier
    one's), by id with the reason; all_done is False when any task failed or errored.
    """

    store: Path
    total: int
    skipped: int
    counts: Counter = field(default_factory=Counter)
    summaries: list[dict] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    multi: list[str] = field(default_factory=list)
    multi_skipped: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    report: Path | None = None

    @property
    def all_done(self) -> bool:
        """True when every task of the sweep has a result that is not a failure."""
        return not self.failed and not self.counts.get("error")


def execute(
    tasks: list[TaskSpec],
    store: Store,
    client,
    *,
    retries: int = 2,
    console: Console | None = None,
    checkpoint_every: int = 0,
    driver: str | None = None,
) -> list[dict]:
    """Run tasks on a connected cluster; each worker writes its own result; returns summaries."""
    console = console or Console(stderr=True)
    if not tasks:
        return []
    # one map call: the scheduler gets every task in one message
    futures = client.map(
        run_task,
        [str(store.path)] * len(tasks),
        [task.model_dump_json() for task in tasks],
        [checkpoint_every] * len(tasks),
        [driver] * len(tasks),
        key=[f"recon-{task.task_id}" for task in tasks],
        pure=False,
        retries=retries,
    )
    summaries: list[dict] = []
    counts: Counter = Counter()
    columns = (
        TextColumn("[bold]reconstructions"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[status]}"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=console, transient=False) as bar:
        # until the first result: workers start and each compiles its first task
        first = "workers starting, JAX compiling (the first results take longest)"
        handle = bar.add_task("sweep", total=len(futures), status=first)
        for future in as_completed(futures):
            try:
                summary = future.result()
            except Exception as exc:  # retries exhausted: no result stored, rerun retries
                full = isinstance(exc, StoreFull) or is_full(exc)
                summary = {
                    "task_id": future.key.removeprefix("recon-"),
                    "status": "error",
                    "reason": f"{type(exc).__name__}: {exc}",
                    "full": full,
                }
                if not full:  # a full disk ends the run with one line of its own
                    console.print(f"[red]task {summary['task_id']}: {summary['reason']}")
            summaries.append(summary)
            counts[summary["status"]] += 1
            status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            bar.update(handle, advance=1, status=status)
            future.release()
    return summaries


def plan_sweep(
    spec: SweepSpec,
    store_path: Path,
    retry_failed: bool = False,
    write: bool = True,
    profile: ClusterProfile | None = None,
    remerge: bool = False,
) -> tuple[Store | None, Plan]:
    """Resolve and validate every dataset and multi set (inputs.resolve), split the tasks by
    what is done, and with write=True check the free space (space.check_room), that every
    task fits a worker of `profile` and every simulation the driver (footprint.py), then
    write the inputs the store lacks (a multi set's simulated datasets too). With
    write=False nothing is simulated or written. A merged group merged under another rule
    is refused unless remerge (merge.combine.check_rule)."""
    store_path = Path(store_path)
    existing = Store.open(store_path) if (store_path / "zarr.json").is_file() else None
    resolved = inputs.resolve(spec, existing)
    tasks = expand(spec, inputs.fingerprints(resolved))
    the_plan = plan(tasks, existing, retry_failed)
    if not write:
        return existing, the_plan
    check_plan(resolved, the_plan, store_path, profile)
    if existing is not None:
        check_rule(existing, spec.merge, remerge)
    groups = inputs.build(spec, resolved, existing)
    store = Store.create(store_path)
    inputs.write(store, groups)
    return store, plan(tasks, store, retry_failed)


def check_plan(
    resolved: dict[str, inputs.ResolvedInput],
    the_plan: Plan,
    store_path: Path,
    profile: ClusterProfile | None,
) -> None:
    """Refuse, before anything is written or submitted, a plan whose store cannot be written
    or would not fit its disk (space.check_room), whose task cannot fit a worker of
    `profile` or whose simulation cannot fit the driver (footprint.py)."""
    Store.check_writable(store_path)
    check_room(store_path, store_estimate(resolved, the_plan)["total"])
    if profile is not None:
        check_fits(task_footprints(resolved, the_plan), *worker_memory(profile))
    check_driver_room(
        {n: r.geometry.shape for n, r in resolved.items() if r.source != "store"},
        psutil.virtual_memory().available,
    )


def preview(
    spec: SweepSpec,
    store_path: Path,
    retry_failed: bool = False,
    profile: ClusterProfile | None = None,
    remerge: bool = False,
) -> Preview:
    """What a run would do, without writing anything: the plan, the bytes it would write
    (store_estimate), the free bytes where the store is (or would be), each dataset's
    largest task footprint (memory, time), and the refusal a run would meet (check_plan)."""
    store_path = Path(store_path)
    existing = Store.open(store_path) if (store_path / "zarr.json").is_file() else None
    resolved = inputs.resolve(spec, existing)
    the_plan = plan(expand(spec, inputs.fingerprints(resolved)), existing, retry_failed)
    try:
        check_plan(resolved, the_plan, store_path, profile)
        if existing is not None:
            check_rule(existing, spec.merge, remerge)
        refusal = None
    except DyncdiError as exc:
        refusal = exc
    return Preview(
        the_plan,
        store_estimate(resolved, the_plan),
        free_bytes(store_path),
        task_footprints(resolved, the_plan),
        refusal,
    )


class Preview(NamedTuple):
    """A dry run's findings (see preview)."""

    plan: Plan
    estimate: dict[str, int]
    free: int
    footprints: dict[str, tuple[tuple[int, ...], Footprint]]
    refusal: DyncdiError | None


def task_footprints(
    resolved: dict[str, inputs.ResolvedInput], the_plan: Plan
) -> dict[str, tuple[tuple[int, ...], Footprint]]:
    """Dataset -> (its grid, the largest footprint of its tasks), over the whole sweep."""
    out: dict[str, tuple[tuple[int, ...], Footprint]] = {}
    for t in the_plan.tasks:
        shape = resolved[t.dataset].geometry.shape
        fp = task_footprint(shape, t.params)
        if t.dataset not in out or fp.bytes > out[t.dataset][1].bytes:
            out[t.dataset] = (shape, fp)
    return out


def store_estimate(resolved: dict[str, inputs.ResolvedInput], the_plan: Plan) -> dict[str, int]:
    """Bytes the plan still writes (space.estimate_bytes): inputs, results, merged groups."""
    voxels = {d: int(np.prod(r.geometry.shape)) for d, r in resolved.items()}
    results = Counter(t.dataset for t in the_plan.todo)
    merged = Counter(d for d, _ in {(t.dataset, t.params.model) for t in the_plan.tasks})
    return estimate_bytes(voxels, dict(results), dict(merged))


@dataclass
class _Run:
    """One driver's run of a sweep: where it writes, how it computes, what it did."""

    spec: SweepSpec
    store: Store
    profile: ClusterProfile
    console: Console
    outcome: SweepOutcome
    driver: str = field(default_factory=new_driver_id)
    client: object | None = None

    def compute(self, todo: list[TaskSpec]) -> None:
        """Run todo on the cluster (started on first use); wait for tasks other drivers hold
        and compute those whose holder went away."""
        while todo:
            if self.client is None:
                secrets = Leases(self.store.path).secrets(self.driver)
                self.client = start_cluster(self.profile, secrets)
                self.console.print(f"dask dashboard: {self.client.dashboard_link}")
            summaries = execute(
                todo,
                self.store,
                self.client,
                retries=int(self.profile.settings.get("retries", 2)),
                console=self.console,
                checkpoint_every=self.spec.checkpoint_every,
                driver=self.driver,
            )
            if any(s.get("full") for s in summaries):
                raise full_error(self.store.path)
            done = [s for s in summaries if s["status"] != "held"]
            self.outcome.summaries += done
            self.outcome.counts.update(s["status"] for s in done)
            held = {s["task_id"]: s for s in summaries if s["status"] == "held"}
            todo = self._wait_for(todo, held)

    def _wait_for(self, tasks: list[TaskSpec], held: dict[str, dict]) -> list[TaskSpec]:
        """Wait while other drivers compute the held tasks; returns those left to compute."""
        if not held:
            return []
        first = next(iter(held.values()))["holder"]
        self.console.print(
            f"{len(held)} tasks are being computed by another driver ({first}): "
            "waiting for their results"
        )
        leases = Leases(self.store.path)
        waiting = {t.task_id: t for t in tasks if t.task_id in held}
        while True:
            finished = [tid for tid in waiting if self.store.has_result(tid)]
            for tid in finished:
                self.outcome.counts["done elsewhere"] += 1
                del waiting[tid]
            orphaned = [t for tid, t in waiting.items() if leases.stale(leases.holder(tid))]
            if orphaned or not waiting:
                return orphaned
            time.sleep(HELD_POLL_S)

    def generation(self, the_plan: Plan, label: str, retry_failed: bool) -> None:
        for task in the_plan.todo:
            if task.task_id in the_plan.failed:
                self.store.discard_result(task.task_id)
        self.outcome.total += len(the_plan.tasks)
        self.outcome.skipped += len(the_plan.done)
        if not the_plan.todo:
            self.console.print(
                f"{label}all {len(the_plan.tasks)} tasks are already in the store: "
                "nothing to compute"
            )
            return
        self.console.print(
            f"{label}{len(the_plan.tasks)} tasks: {len(the_plan.done)} already done, "
            f"{len(the_plan.todo)} to compute on cluster profile {self.profile.name!r}"
        )
        self.compute(the_plan.todo)

    def record_failures(self, task_ids: list[str]) -> None:
        for tid in task_ids:
            if self.store.has_result(tid):
                attrs = self.store.result_attrs(tid)
                if attrs.get("status") == "failed":
                    self.outcome.failed[tid] = attrs.get("reason") or "failed"


def run_sweep(
    spec: SweepSpec,
    *,
    store_path: Path,
    cluster: str,
    overrides: tuple[str, ...] = (),
    retry_failed: bool = False,
    report_dir: Path | None = None,
    report: bool = True,
    console: Console | None = None,
    remerge: bool = False,
) -> SweepOutcome:
    """The whole job: inputs -> tasks -> cluster -> store [-> next generation ...] -> merge
    [-> multi-reflection sets] -> report. A rerun skips every task already in the store,
    generation by generation, and every multi set whose inputs and merged members are the same."""
    console = console or Console(stderr=True)
    with console.status("planning: the inputs (loaded or simulated), the store, the tasks ..."):
        profile = load_profile(cluster, overrides)
        the = plan_sweep(spec, store_path, retry_failed, profile=profile, remerge=remerge)
    store, the_plan = the
    assert store is not None
    run = _Run(spec, store, profile, console, SweepOutcome(store=store.path, total=0, skipped=0))
    leases = Leases(store.path)
    with _terminate_as_interrupt(), leases.driver_at_work(run.driver, spec.name) as others:
        for other in others:
            console.print(
                f"another driver is working on this store: host {other['host']}, pid "
                f"{other['pid']} (sweep {other['sweep']!r}, since {other['since']}); the "
                "tasks it computes are not computed twice"
            )
        _run_generations(run, the_plan, retry_failed)
        _finish(run, report_dir if report else None, report)
    return run.outcome


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM raises KeyboardInterrupt for the block (in the main thread), so a killed driver
    closes its cluster (cancelling its SLURM jobs) and removes its secrets on the way out."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_generations(run: _Run, the_plan: Plan, retry_failed: bool) -> None:
    spec, store = run.spec, run.store
    n_generations = spec.generations.count if spec.generations else 1
    planned: list[str] = []
    try:
        for generation in range(n_generations):
            if generation > 0:
                tasks = next_generation(store, the_plan.tasks, spec.generations, generation)
                the_plan = plan(tasks, store, retry_failed)
            planned += [t.task_id for t in the_plan.tasks]
            store.record_sweep(spec.name, spec.model_dump(mode="json"), planned)
            label = f"generation {generation}: " if n_generations > 1 else ""
            run.generation(the_plan, label, retry_failed)
    finally:
        if run.client is not None:
            close_cluster(run.client)
    run.record_failures(planned)


def _finish(run: _Run, report_dir: Path | None, report: bool = True) -> None:
    """Merge, the multi-reflection sets and the report."""
    from ..merge.combine import merge_store
    from ..multi.stage import run_multi_stage
    from ..report.page import write_report

    store, console = run.store, run.console
    with _step(console, "merging the best results of each dataset and model"):
        run.outcome.merged = merge_store(store, run.spec.merge, skip_unchanged=True)
    run.outcome.multi, run.outcome.multi_skipped = run_multi_stage(store, run.spec, console)
    if report:
        with _step(console, "writing the report"):
            folder = report_dir or default_report_dir(store.path)
            run.outcome.report = write_report(store, folder, skip_unchanged=True)
    store.consolidate(own_drivers=1)


@contextlib.contextmanager
def _step(console: Console, what: str) -> Iterator[None]:
    """A spinner while a driver-side step runs, then one line with its wall time."""
    start = time.perf_counter()
    with console.status(f"{what} ..."):
        yield
    console.print(f"{what}: {time.perf_counter() - start:.1f} s")


def default_report_dir(store_path: Path) -> Path:
    """Report folder beside the store: STORE_NAME-report."""
    return store_path.with_name(store_path.stem + "-report")
