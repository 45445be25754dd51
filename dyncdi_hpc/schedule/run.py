"""Submit tasks to a Dask cluster, stream progress, and drive a whole sweep end to end."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from distributed import as_completed
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from ..config import SweepSpec
from ..store.zarr_store import Store
from ..sweep import Plan, build_inputs, expand, plan, source_fingerprint, write_inputs
from ..task import TaskSpec, run_task
from .cluster import ClusterProfile, load_profile, start_cluster


@dataclass
class SweepOutcome:
    """What a sweep run did: counts by status, summaries of computed tasks, where things are."""

    store: Path
    total: int
    skipped: int
    counts: Counter = field(default_factory=Counter)
    summaries: list[dict] = field(default_factory=list)
    merged: list[str] = field(default_factory=list)
    report: Path | None = None


def execute(
    tasks: list[TaskSpec],
    store: Store,
    profile: ClusterProfile,
    console: Console | None = None,
    checkpoint_every: int = 0,
) -> list[dict]:
    """Run tasks on the profile's cluster; each worker writes its own result; returns summaries."""
    console = console or Console(stderr=True)
    if not tasks:
        return []
    client = start_cluster(profile)
    summaries: list[dict] = []
    try:
        console.print(f"dask dashboard: {client.dashboard_link}")
        # one map call: the scheduler gets every task in one message
        futures = client.map(
            run_task,
            [str(store.path)] * len(tasks),
            [task.model_dump_json() for task in tasks],
            [checkpoint_every] * len(tasks),
            key=[f"recon-{task.task_id}" for task in tasks],
            pure=False,
            retries=int(profile.settings.get("retries", 2)),
        )
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
    finally:
        cluster = client.cluster
        client.close()
        if cluster is not None:
            cluster.close()
    return summaries


def plan_sweep(
    spec: SweepSpec, store_path: Path, retry_failed: bool = False, write: bool = True
) -> tuple[Store | None, Plan]:
    """Validate inputs (writing them when write=True) and split the tasks by what is done."""
    existing = Store.open(store_path) if (Path(store_path) / "zarr.json").is_file() else None
    if write:
        Store.check_writable(store_path)
        built = build_inputs(spec, existing)
        store = Store.create(store_path)
        fingerprints = write_inputs(store, built)
    else:
        store = existing
        fingerprints = {name: source_fingerprint(spec, name, store) for name in spec.datasets}
    tasks = expand(spec, fingerprints)
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
    """The whole job: inputs -> tasks -> cluster -> store -> merge -> report."""
    from ..merge.combine import merge_store
    from ..report.page import write_report

    console = console or Console(stderr=True)
    profile = load_profile(cluster, overrides)
    store, the_plan = plan_sweep(spec, store_path, retry_failed)
    assert store is not None
    store.record_sweep(spec.name, spec.model_dump(mode="json"), [t.task_id for t in the_plan.tasks])
    for task in the_plan.todo:
        if task.task_id in the_plan.failed:
            store.discard_result(task.task_id)
    outcome = SweepOutcome(store=store.path, total=len(the_plan.tasks), skipped=len(the_plan.done))
    if not the_plan.todo:
        console.print(
            f"all {len(the_plan.tasks)} tasks are already in the store: nothing to compute"
        )
    else:
        console.print(
            f"{len(the_plan.tasks)} tasks: {len(the_plan.done)} already done, "
            f"{len(the_plan.todo)} to compute on cluster profile {profile.name!r}"
        )
        outcome.summaries = execute(
            the_plan.todo, store, profile, console, checkpoint_every=spec.checkpoint_every
        )
        outcome.counts.update(s["status"] for s in outcome.summaries)
    outcome.merged = merge_store(store, spec.merge)
    outcome.report = write_report(store, report_dir or default_report_dir(store.path))
    return outcome


def default_report_dir(store_path: Path) -> Path:
    """Report folder beside the store: STORE_NAME-report."""
    return store_path.with_name(store_path.stem + "-report")
