"""`dyncdi sweep`: run a sweep, or print what it would do (--dry-run)."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table

from .base import EXIT_TASKS_FAILED, console, main, out, remerge_option, user_errors


def _sweep_table(the_plan, axes: list[str]) -> Table:
    done, failed = set(the_plan.done), set(the_plan.failed)
    table = Table(title=f"{len(the_plan.tasks)} tasks")
    for col in ("task", "dataset", "seed", *axes, "state"):
        table.add_column(col)
    for t in the_plan.tasks:
        tid = t.task_id
        state = "done" if tid in done else "failed" if tid in failed else "pending"
        values = [str(getattr(t.params, a)) for a in axes]
        table.add_row(tid, t.dataset, str(t.seed), *values, state)
    return table


@main.command()
@click.argument("spec_path", metavar="SPEC", type=click.Path(path_type=Path))
@click.option("--store", type=click.Path(path_type=Path), help="Zarr store (overrides the spec).")
@click.option(
    "--cluster", "cluster", help="Cluster profile name or YAML path (overrides the spec)."
)
@click.option(
    "--set",
    "overrides",
    multiple=True,
    metavar="KEY=VALUE",
    help="Override a sweep-spec key (base.lr_phase=1e-3, sweep.seed=8) or a cluster-profile "
    "key (local.n_workers=1, slurm.walltime=02:00:00, scale=8); repeatable.",
)
@click.option("--dry-run", is_flag=True, help="Print the task table and run nothing.")
@click.option("--retry-failed", is_flag=True, help="Recompute tasks that failed before.")
@remerge_option
@click.option(
    "--report",
    "report_dir",
    type=click.Path(path_type=Path),
    help="Report folder (default: STORE-report beside the store).",
)
@click.option(
    "--no-report", is_flag=True, help="Merge but write no report ('dyncdi report' writes it)."
)
@user_errors
def sweep(
    spec_path, store, cluster, overrides, dry_run, retry_failed, remerge, report_dir, no_report
) -> None:
    """Run every reconstruction of a sweep SPEC (YAML), merge the best, write a report.

    Exit status: 0 every task done; 2 bad input (one line on stderr, nothing submitted); 3 the
    sweep ran but some tasks failed or errored (listed; --retry-failed recomputes them).
    """
    # the imports (JAX, Dask) take seconds: a spinner on a terminal, gone when they are done
    with console.status(f"reading {spec_path} ..."):
        from ..config import SweepSpec, load_sweep
        from ..schedule.profiles import split_overrides
        from ..schedule.run import run_sweep

        spec_overrides, overrides = split_overrides(overrides, set(SweepSpec.model_fields))
        spec = load_sweep(spec_path, spec_overrides)
    store_path = Path(store).absolute() if store else spec.store
    profile_name = cluster or spec.cluster
    if dry_run:
        _dry_run(spec, store_path, profile_name, overrides, retry_failed, remerge)
        return
    outcome = run_sweep(
        spec,
        store_path=store_path,
        cluster=profile_name,
        overrides=overrides,
        retry_failed=retry_failed,
        report_dir=report_dir,
        report=not no_report,
        console=console,
        remerge=remerge,
    )
    _print_outcome(outcome)
    if not outcome.all_done:
        sys.exit(EXIT_TASKS_FAILED)


def _dry_run(
    spec, store_path: Path, profile_name: str, overrides, retry_failed: bool, remerge: bool
) -> None:
    """Print the task table, the store's size estimate and the job script; submit nothing.
    A plan that a run would refuse (no room, a task larger than a worker) ends in that
    error line and exit status 2."""
    from ..schedule.footprint import gigabytes
    from ..schedule.profiles import load_profile
    from ..schedule.run import preview
    from ..store.space import megabytes
    from ..sweep import axis_values

    profile = load_profile(profile_name, overrides)
    found = preview(spec, store_path, retry_failed, profile, remerge)
    the_plan, estimate, free, footprints = found.plan, found.estimate, found.free, found.footprints
    axes = [a for a in axis_values(spec) if a not in ("dataset", "seed")]
    out.print(_sweep_table(the_plan, axes))
    out.print(
        f"store: {store_path}\ncluster profile: {profile.name} ({profile.path}), "
        f"kind {profile.kind}\n{len(the_plan.todo)} to compute, {len(the_plan.done)} done, "
        f"{len(the_plan.failed)} failed; dry run: nothing submitted"
    )
    out.print(
        f"store size: up to {megabytes(estimate['total'])} to write (inputs "
        f"{megabytes(estimate['inputs'])}, results {megabytes(estimate['results'])}, merged "
        f"{megabytes(estimate['merged'])}); {megabytes(free)} free there"
    )
    for name, (shape, fp) in footprints.items():
        out.print(
            f"each task of {name} ({'x'.join(map(str, shape))}): about {gigabytes(fp.bytes)} "
            f"of memory, {fp.seconds / 60:.2g} min on one CPU worker (estimates)"
        )
    for name, cfg in spec.multi.items():
        how = "simulated, " if cfg.simulate else ""
        out.print(
            f"multi.{name}: {len(cfg.reflections)} reflections ({how}joint AD "
            f"{cfg.joint.steps} steps) after the merge, into {store_path / 'multi' / name}"
        )
    if profile.kind == "slurm":
        from ..schedule.slurm import job_script

        click.echo(f"job script of each worker:\n{job_script(profile)}")
    if found.refusal is not None:  # shown after the estimates that explain it; exit 2
        raise found.refusal


def _print_outcome(outcome) -> None:
    """The sweep's summary: counts, where the store, merged groups, sets and report are, and
    every failed task with its reason."""
    from ..store.summary import multi_vs_truth_text, truth_phase_rms
    from ..store.zarr_store import Store

    counts = ", ".join(f"{k} {v}" for k, v in sorted(outcome.counts.items())) or "nothing new"
    out.print(
        f"tasks: {outcome.total} in the sweep, {outcome.skipped} were already done; "
        f"this run: {counts}"
    )
    out.print(f"store:  {outcome.store}")
    store = Store.open(outcome.store)
    for key in outcome.merged:
        rms = truth_phase_rms(store.merged_attrs(key))
        extra = f" (phase RMS vs truth {rms:.3f} rad)" if rms is not None else ""
        out.print(f"merged: {outcome.store / 'merged' / key}{extra}")
    for name in outcome.multi:
        extra = multi_vs_truth_text(store.multi_attrs(name))
        skipped = " (unchanged, skipped)" if name in outcome.multi_skipped else ""
        out.print(f"multi:  {outcome.store / 'multi' / name}{extra}{skipped}")
    out.print(f"report: {outcome.report or 'not written (--no-report)'}")
    for tid, reason in sorted(outcome.failed.items()):
        out.print(f"failed: {tid}: {reason.splitlines()[0][:100]}")
    if outcome.failed:
        out.print(f"{len(outcome.failed)} tasks failed; --retry-failed recomputes them")
