"""SLURM throughput with 1, 2 and 4 worker jobs: a stand-in for several nodes on one.

The jobs go to the one-node SLURM of .ci/slurm-up through the shipped slurm-cpu profile
(dask-jobqueue's SLURMCluster, TLS, the job watcher), into its partition `shared`, where up to
4 jobs share each core. Two kinds of task, each measured after every job's worker has
connected and compiled: tasks that hold their worker for a fixed time (what a node's GPU
reconstruction looks like to the scheduler: the throughput then shows what SLURM, dask-jobqueue
and the store add as the job count grows) and real 32^3 reconstructions (CPU-bound: on 2 cores
they cannot scale past 2 jobs, and the JSON says so).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from distributed import Client, as_completed

from dyncdi_hpc.config import ReconParams, TaskSpec
from dyncdi_hpc.schedule.cluster import close_cluster, start_cluster
from dyncdi_hpc.schedule.profiles import load_profile
from dyncdi_hpc.store.zarr_store import Store
from dyncdi_hpc.sweep import plan
from dyncdi_hpc.task import run_task

JOB_COUNTS = (1, 2, 4)
PARTITION = "shared"


def slurm_problem() -> str | None:
    """Why the SLURM throughput cannot be measured here (None: it can)."""
    if shutil.which("sbatch") is None:
        return "no SLURM here (sbatch is not on PATH); start one with .ci/slurm-up"
    try:
        out = subprocess.run(
            ["sinfo", "-h", "-p", PARTITION, "-o", "%a"], capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"sinfo gave no answer ({exc})"
    if out.stdout.strip() != "up":
        answer = out.stdout.strip() or out.stderr.strip()
        return f"partition {PARTITION!r} is not up (sinfo: {answer}); run .ci/slurm-up"
    return None


def _start(jobs: int, logs: Path) -> tuple[Client, float]:
    """A SLURMCluster of `jobs` one-core worker jobs, and the s until all their workers joined."""
    overrides = (
        f"scale={jobs}",
        f"slurm.queue={PARTITION}",
        "slurm.cores=1",
        "slurm.memory=2GB",
        "slurm.walltime=00:30:00",
        "slurm.worker-extra-args=[]",
        f"slurm.log-directory={logs}",
        "slurm.scheduler-options={dashboard_address: '127.0.0.1:0'}",
        "start_timeout=120",
    )
    start = time.perf_counter()
    client = start_cluster(load_profile("slurm-cpu", overrides))
    client.wait_for_workers(jobs, timeout=180)
    return client, time.perf_counter() - start


def _wall(client: Client, submit: Callable[[], list]) -> float:
    start = time.perf_counter()
    for future in as_completed(submit()):
        future.result()
        future.release()
    return time.perf_counter() - start


def _one_job_count(
    jobs: int, store: Store, tasks: list[TaskSpec], held: tuple[int, float], logs: Path
) -> dict[str, Any]:
    client, start_s = _start(jobs, logs)
    try:
        # one warm-up reconstruction per worker (imports, compilation), outside the timings
        warm = [t.model_copy(update={"seed": 1000 + 10 * jobs + i}) for i, t in enumerate(tasks)]
        addresses = list(client.scheduler_info()["workers"])
        _wall(
            client,
            lambda: [
                client.submit(run_task, str(store.path), t.model_dump_json(), 0, workers=[w])
                for t, w in zip(warm, addresses, strict=False)
            ],
        )
        n_held, seconds = held
        held_wall = _wall(client, lambda: client.map(time.sleep, [seconds] * n_held, pure=False))
        recon = [t.model_copy(update={"seed": 100 * jobs + t.seed}) for t in tasks]
        recon_wall = _wall(
            client,
            lambda: client.map(
                run_task,
                [str(store.path)] * len(recon),
                [t.model_dump_json() for t in recon],
                [0] * len(recon),
            ),
        )
    finally:
        close_cluster(client)
    assert len(plan(recon, store).done) == len(recon)
    return {
        "jobs": jobs,
        "workers_joined_s": start_s,
        "held_wall_s": held_wall,
        "held_tasks_per_min": 60 * n_held / held_wall,
        "recon_wall_s": recon_wall,
        "recon_tasks_per_min": 60 * len(recon) / recon_wall,
    }


def slurm_throughput(
    store_tasks: Callable[[Store, ReconParams, int], list[TaskSpec]],
    params: ReconParams,
    quick: bool,
) -> dict[str, Any]:
    """Throughput (tasks/min) of held tasks and of reconstructions with 1, 2 and 4 SLURM jobs.

    store_tasks(store, params, n) writes the benchmark's dataset into store and gives n tasks
    on it (distributed.bench_tasks).
    """
    problem = slurm_problem()
    if problem:
        return {"measured": False, "reason": problem}
    held = (8, 1.0) if quick else (16, 3.0)
    n_recon = 4 if quick else 16
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create(Path(tmp) / "s.zarr")
        tasks = store_tasks(store, params, n_recon)
        rows = [_one_job_count(j, store, tasks, held, Path(tmp) / "logs") for j in JOB_COUNTS]
    for row in rows:
        row["held_speedup"] = row["held_tasks_per_min"] / rows[0]["held_tasks_per_min"]
        row["recon_speedup"] = row["recon_tasks_per_min"] / rows[0]["recon_tasks_per_min"]
    return {
        "measured": True,
        "partition": PARTITION,
        "held_tasks": held[0],
        "held_task_s": held[1],
        "recon_tasks": n_recon,
        "jobs": rows,
        "note": (
            "one node with 2 cores: held tasks stand for nodes whose work does not share these "
            "cores; reconstructions are CPU-bound and cannot scale past 2 jobs here"
        ),
    }


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """The benchmark table's rows for slurm_throughput's result."""
    if not result.get("measured"):
        return [
            {
                "measure": "SLURM throughput, 1/2/4 jobs",
                "value": "not measured",
                "unit": result.get("reason", ""),
                "target": "",
                "met": None,
            }
        ]
    rows = []
    for row in result["jobs"]:
        jobs = row["jobs"]
        rows.append(
            {
                "measure": f"SLURM, {result['held_task_s']:.0f} s held tasks, {jobs} jobs",
                "value": row["held_tasks_per_min"],
                "unit": "tasks/min",
                "target": f">= {0.9 * jobs:.1f}x 1 job" if jobs > 1 else "",
                "met": row["held_speedup"] >= 0.9 * jobs if jobs > 1 else None,
            }
        )
        rows.append(
            {
                "measure": f"SLURM, 32^3 reconstructions, {jobs} jobs",
                "value": row["recon_tasks_per_min"],
                "unit": "tasks/min",
                "target": ">= 1.8x 1 job" if jobs == 2 else "",
                "met": row["recon_speedup"] >= 1.8 if jobs == 2 else None,
            }
        )
    return rows
