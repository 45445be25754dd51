"""Submit tasks to a Dask cluster, stream progress, and drive a whole sweep end to end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distributed import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .. import inputs
from ..config import SweepSpec, TaskSpec
from ..merge.generations import next_generation
from ..store.zarr_store import Store
from ..sweep import Plan, expand, plan
from ..task import run_task
from .cluster import start_cluster
from .profiles import load_profile


@dataclass
class SweepOutcome:
    """What a sweep run did: counts by status, summaries of computed tasks, where things are."""

    store: Path
    total: int
    skipped: int
    counts: Counter = field(default_factory=Counter)
    summaries: list[dict] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    multi: list[str] = field(default_factory=list)
    multi_skipped: list[str] = field(default_factory=list)
    report: Path | None = None


def execute(
    tasks: list[TaskSpec],
    store: Store,
    client,
    *,
    retries: int = 2,
    console: Console | None = None,
    checkpoint_every: int = 0,
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
        handle = bar.add_task("sweep", total=len(futures), status="")
        for future in as_completed(futures):
            try:
                summary = future.result()
            except Exception as exc:  # retries exhausted: no result stored, rerun retries
                summary = {
                    "task_id": future.key.removeprefix("recon-"),
                    "status": "error",
                    "reason": f"{type(exc).__name__}: {exc}",
                }
                console.print(f"[red]task {summary['task_id']}: {summary['reason']}")
            summaries.append(summary)
            counts[summary["status"]] += 1
            status = ", ".join(f"{k} {v}" for k, v in sorted(counts.items()))
            bar.update(handle, advance=1, status=status)
            future.release()
    return summaries


def _close(client) -> None:
    cluster = client.cluster
    client.close()
    if cluster is not None:
        cluster.close()


def plan_sweep(
    spec: SweepSpec, store_path: Path, retry_failed: bool = False, write: bool = True
) -> tuple[Store | None, Plan]:
    """Resolve and validate every dataset and multi set (inputs.resolve), write the inputs the
    store lacks when write=True (a multi set's simulated datasets too), and split the tasks by
    what is done. With write=False nothing is simulated or written."""
    existing = Store.open(store_path) if (Path(store_path) / "zarr.json").is_file() else None
    resolved = inputs.resolve(spec, existing)
    store = existing
    if write:
        Store.check_writable(store_path)
        groups = inputs.build(spec, resolved, existing)
        store = Store.create(store_path)
        inputs.write(store, groups)
    tasks = expand(spec, inputs.fingerprints(resolved))
    return store, plan(tasks, store, retry_failed)


def run_sweep(
    spec: SweepSpec,
    *,
    store_path: Path,
    cluster: str,
    overrides: tuple[str, ...] = (),
    retry_failed: bool = False,
    report_dir: Path | None = None,
    console: Console | None = None,
) -> SweepOutcome:
    """The whole job: inputs -> tasks -> cluster -> store [-> next generation ...] -> merge
    [-> multi-reflection sets] -> report. A rerun skips every task already in the store,
    generation by generation, and every multi set whose inputs and merged members are the same."""
    from ..merge.combine import merge_store
    from ..multi.stage import run_multi_stage
    from ..report.page import write_report

    console = console or Console(stderr=True)
    profile = load_profile(cluster, overrides)
    store, the_plan = plan_sweep(spec, store_path, retry_failed)
    assert store is not None
    n_generations = spec.generations.count if spec.generations else 1
    outcome = SweepOutcome(store=store.path, total=0, skipped=0)
    planned: list[str] = []
    cluster_client = None
    try:
        for generation in range(n_generations):
            if generation > 0:
                tasks = next_generation(store, the_plan.tasks, spec.generations, generation)
                the_plan = plan(tasks, store, retry_failed)
            planned += [t.task_id for t in the_plan.tasks]
            store.record_sweep(spec.name, spec.model_dump(mode="json"), planned)
            for task in the_plan.todo:
                if task.task_id in the_plan.failed:
                    store.discard_result(task.task_id)
            outcome.total += len(the_plan.tasks)
            outcome.skipped += len(the_plan.done)
            label = f"generation {generation}: " if n_generations > 1 else ""
            if not the_plan.todo:
                console.print(
                    f"{label}all {len(the_plan.tasks)} tasks are already in the store: "
                    "nothing to compute"
                )
                continue
            console.print(
                f"{label}{len(the_plan.tasks)} tasks: {len(the_plan.done)} already done, "
                f"{len(the_plan.todo)} to compute on cluster profile {profile.name!r}"
            )
            if cluster_client is None:
                cluster_client = start_cluster(profile)
                console.print(f"dask dashboard: {cluster_client.dashboard_link}")
            summaries = execute(
                the_plan.todo,
                store,
                cluster_client,
                retries=int(profile.settings.get("retries", 2)),
                console=console,
                checkpoint_every=spec.checkpoint_every,
            )
            outcome.summaries += summaries
            outcome.counts.update(s["status"] for s in summaries)
    finally:
        if cluster_client is not None:
            _close(cluster_client)
    outcome.merged = merge_store(store, spec.merge)
    outcome.multi, outcome.multi_skipped = run_multi_stage(store, spec, console)
    outcome.report = write_report(store, report_dir or default_report_dir(store.path))
    return outcome


def default_report_dir(store_path: Path) -> Path:
    """Report folder beside the store: STORE_NAME-report."""
    return store_path.with_name(store_path.stem + "-report")
