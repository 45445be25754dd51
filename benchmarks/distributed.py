"""Distributed overhead and scaling: tiny tasks through scheduler and store, 10 s tasks, 1 vs 2
workers on a real sweep, store throughput and files per result group, and SLURM throughput
with 1, 2 and 4 worker jobs (slurm_throughput.py).

Every measurement runs on a real LocalCluster with worker processes, as `dyncdi sweep` does.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import psutil
import xarray as xr
from distributed import Client, LocalCluster, as_completed

from dyncdi_hpc.config import GeometryConfig, ReconParams, SimulateConfig, TaskSpec, load_sweep
from dyncdi_hpc.inputs import simulated_input
from dyncdi_hpc.schedule.affinity import PinCores
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.store.groups import encode_result
from dyncdi_hpc.store.zarr_store import Store
from dyncdi_hpc.sweep import plan
from dyncdi_hpc.task import run_task

from . import slurm_throughput

CLUSTER = {
    "threads_per_worker": 1,
    "processes": True,
    "dashboard_address": None,
    "host": "127.0.0.1",
    "env": {"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false"},
}


def tiny_task(store_path: str | None, i: int) -> int:
    """The smallest useful task: write a 4-voxel result group (or nothing) and return."""
    if store_path is not None:
        ds = xr.Dataset({"a": (("x",), np.full(4, i, np.float32))}, attrs={"status": "done"})
        Store.open(store_path).write_result(f"t{i:06d}", ds)
    return i


def sleeping_task(seconds: float) -> float:
    """A task that holds its worker for `seconds` (stands for a long reconstruction)."""
    time.sleep(seconds)
    return seconds


def _worker_rss_mib() -> float:
    return psutil.Process().memory_info().rss / 2**20


def _run_all(client: Client, futures: list) -> float:
    start = time.perf_counter()
    for f in as_completed(futures):
        f.result()
        f.release()
    return time.perf_counter() - start


def tiny_tasks(n: int, workers: int, store: bool) -> dict[str, Any]:
    """Wall time per task for n tiny tasks on `workers` processes, store writes on or off, and
    the workers' largest resident memory before and after (MiB)."""
    with tempfile.TemporaryDirectory() as tmp, LocalCluster(n_workers=workers, **CLUSTER) as c:
        path = str(Store.create(Path(tmp) / "s.zarr").path) if store else None
        with Client(c) as client:
            client.run(importlib.import_module, __name__)  # every worker imports this module
            # a first batch warms imports and caches, so the growth measured is the store's
            _run_all(client, client.map(tiny_task, [None] * 50, range(50), pure=False))
            rss_before = max(client.run(_worker_rss_mib).values())
            start = time.perf_counter()
            futures = client.map(tiny_task, [path] * n, range(n), pure=False)
            _run_all(client, futures)
            wall = time.perf_counter() - start
            rss_after = max(client.run(_worker_rss_mib).values())
        files = sum(len(f) for _, _, f in os.walk(Path(tmp) / "s.zarr" / "results")) if store else 0
    return {
        "tasks": n,
        "workers": workers,
        "store": store,
        "wall_s": wall,
        "per_task_ms": 1e3 * wall / n,
        "files": files,
        "worker_rss_mib_before": rss_before,
        "worker_rss_mib_after": rss_after,
    }


def long_tasks(n: int, seconds: float, workers: int) -> dict[str, Any]:
    """Dask overhead as a fraction of n tasks of `seconds` each on `workers` processes."""
    with LocalCluster(n_workers=workers, **CLUSTER) as c, Client(c) as client:
        client.run(importlib.import_module, __name__)
        start = time.perf_counter()
        futures = client.map(sleeping_task, [seconds] * n, pure=False)
        _run_all(client, futures)
        wall = time.perf_counter() - start
    ideal = seconds * int(np.ceil(n / workers))
    return {
        "tasks": n,
        "task_s": seconds,
        "workers": workers,
        "wall_s": wall,
        "ideal_s": ideal,
        "overhead_fraction": (wall - ideal) / ideal,
    }


def sweep_speedup(n_tasks: int, params: ReconParams) -> dict[str, Any]:
    """The same reconstruction sweep on 1 and on 2 worker processes, after each worker has
    compiled (one warm-up task each): the steady state of a long sweep. Workers pinned to their
    share of the cores (the local profile's pin_cores, schedule/affinity.py) and, side by
    side, not pinned."""
    pinned = _sweep_walls(n_tasks, params, pin=True)
    free = _sweep_walls(n_tasks, params, pin=False)
    return {
        "tasks": n_tasks,
        "wall_1_worker_s": pinned[1],
        "wall_2_workers_s": pinned[2],
        "speedup": pinned[1] / pinned[2],
        "unpinned": {
            "wall_1_worker_s": free[1],
            "wall_2_workers_s": free[2],
            "speedup": free[1] / free[2],
        },
    }


def bench_input(store: Store) -> tuple[str, str]:
    """Write the 32^3 simulated dataset of the sweep measurements; gives (name, fingerprint)."""
    geometry = GeometryConfig(
        energy_kev=9.0,
        shape=(32, 32, 32),
        rocking_step_deg=0.005,
        pixel_size_um=55.0,
        detector_distance_m=1.0,
    )
    ds = simulated_input(SimulateConfig(geometry=geometry), "bench")
    store.write_input("bench", ds)
    return "bench", ds.attrs["fingerprint"]


def bench_tasks(store: Store, params: ReconParams, n_tasks: int) -> list[TaskSpec]:
    """The sweep measurements' tasks: seeds 0..n_tasks-1 on bench_input's dataset in store."""
    name, fingerprint = bench_input(store)
    return [
        TaskSpec(dataset=name, fingerprint=fingerprint, params=params, seed=s)
        for s in range(n_tasks)
    ]


def _sweep_walls(n_tasks: int, params: ReconParams, pin: bool) -> dict[int, float]:
    walls = {}
    for workers in (1, 2):
        with tempfile.TemporaryDirectory() as tmp:
            store = Store.create(Path(tmp) / "s.zarr")
            tasks = bench_tasks(store, params, n_tasks)
            with LocalCluster(n_workers=workers, **CLUSTER) as c, Client(c) as client:
                if pin:
                    client.register_plugin(PinCores(workers))
                # one warm-up task per worker (compilation), pinned, not in the timed sweep
                warm = [t.model_copy(update={"seed": 1000 + i}) for i, t in enumerate(tasks)]
                addresses = list(client.scheduler_info()["workers"])
                pinned = [
                    client.submit(
                        run_task,
                        str(store.path),
                        t.model_dump_json(),
                        0,
                        workers=[a],
                        pure=False,
                    )
                    for t, a in zip(warm, addresses, strict=False)
                ]
                _run_all(client, pinned)
                start = time.perf_counter()
                futures = client.map(
                    run_task,
                    [str(store.path)] * len(tasks),
                    [t.model_dump_json() for t in tasks],
                    [0] * len(tasks),
                    pure=False,
                )
                _run_all(client, futures)
                walls[workers] = time.perf_counter() - start
            assert len(plan(tasks, store).done) == n_tasks
    return walls


def store_throughput(n_groups: int, n: int) -> dict[str, Any]:
    """Write and read of result groups (one complex n^3 object, histories) from one process."""
    rng = np.random.default_rng(0)
    obj = (rng.random((n, n, n)) * np.exp(2j * np.pi * rng.random((n, n, n)))).astype(np.complex64)
    ds = encode_result(obj, np.ones(20), np.ones(300), {"status": "done"})
    megabytes = ds.nbytes / 2**20
    with tempfile.TemporaryDirectory() as tmp:
        store = Store.create(Path(tmp) / "s.zarr")
        start = time.perf_counter()
        for i in range(n_groups):
            store.write_result(f"g{i}", ds)
        write = time.perf_counter() - start
        start = time.perf_counter()
        for i in range(n_groups):
            store.read_result(f"g{i}")
        read = time.perf_counter() - start
        files = sum(len(f) for _, _, f in os.walk(Path(tmp) / "s.zarr" / "results" / "g0"))
    return {
        "groups": n_groups,
        "n": n,
        "group_mib": megabytes,
        "write_groups_per_s": n_groups / write,
        "write_mib_per_s": n_groups * megabytes / write,
        "read_groups_per_s": n_groups / read,
        "read_mib_per_s": n_groups * megabytes / read,
        "files_per_group": files,
    }


def store_scale(n: int) -> dict[str, Any]:
    """A store of n tiny results: ms per result written, a no-op rerun's planning (resolve,
    expand, plan) and `dyncdi status` (a process of its own), in s."""
    from tests.conftest import write_spec

    with tempfile.TemporaryDirectory() as tmp:
        spec = load_sweep(write_spec(Path(tmp) / "s.yaml", Path(tmp) / "s.zarr", sweep={"seed": n}))
        store, the_plan = plan_sweep(spec, spec.store)
        obj = np.ones((4, 4, 4), np.complex64)
        start = time.perf_counter()
        for t in the_plan.todo:
            attrs = {
                "task_id": t.task_id,
                "status": "done",
                "reason": None,
                "spec": t.model_dump(mode="json"),
                "metrics": {"error": 0.1, "loss": 1.0},
                "wall_s": 1.0,
                "device": {"platform": "cpu"},
            }
            store.write_result(t.task_id, encode_result(obj, np.ones(3), np.ones(5), attrs))
        write = time.perf_counter() - start
        store.record_sweep(
            spec.name, spec.model_dump(mode="json"), [t.task_id for t in the_plan.tasks]
        )
        start = time.perf_counter()
        _, again = plan_sweep(spec, spec.store, write=False)
        planning = time.perf_counter() - start
        assert not again.todo
        start = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "dyncdi_hpc.cli", "status", str(store.path)],
            check=True,
            capture_output=True,
        )
        status = time.perf_counter() - start
        files = sum(len(f) for _, _, f in os.walk(store.path / "results")) / n
    return {
        "results": n,
        "write_ms_per_result": 1e3 * write / n,
        "noop_planning_s": planning,
        "status_s": status,
        "files_per_result": files,
    }


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point (quick: 1,000 tiny tasks, 2 s long tasks, 4-task sweep)."""
    n_tiny = 1000 if quick else 10_000
    tiny = [tiny_tasks(n_tiny, 2, store=False), tiny_tasks(n_tiny, 2, store=True)]
    long = long_tasks(8, 2.0 if quick else 10.0, 2)
    params = ReconParams(recipe="20*ER+180*HIO+50*ER", ad_steps=300)
    speed = sweep_speedup(4 if quick else 8, params)
    throughput = [store_throughput(20, 32), store_throughput(10, 64)]
    scale = store_scale(1000 if quick else 10_000)
    slurm = slurm_throughput.slurm_throughput(bench_tasks, params, quick)
    table = [
        {
            "measure": f"tiny tasks, store {'on' if t['store'] else 'off'} ({t['tasks']})",
            "value": t["per_task_ms"],
            "unit": "ms/task",
            "target": "< 5",
            "met": t["per_task_ms"] < 5 if t["store"] else None,
        }
        for t in tiny
    ]
    table.append(
        {
            "measure": f"worker memory growth over {tiny[1]['tasks']} store writes",
            "value": tiny[1]["worker_rss_mib_after"] - tiny[1]["worker_rss_mib_before"],
            "unit": "MiB",
            "target": "",
            "met": None,
        }
    )
    table.append(
        {
            "measure": f"overhead on {long['task_s']:.0f} s tasks",
            "value": 100 * long["overhead_fraction"],
            "unit": "%",
            "target": "< 2",
            "met": long["overhead_fraction"] < 0.02,
        }
    )
    table.append(
        {
            "measure": f"speedup 2 vs 1 workers ({speed['tasks']}-task sweep)",
            "value": speed["speedup"],
            "unit": "x",
            "target": ">= 1.8",
            "met": speed["speedup"] >= 1.8,
        }
    )
    table.append(
        {
            "measure": "the same, workers not pinned to their cores",
            "value": speed["unpinned"]["speedup"],
            "unit": "x",
            "target": "",
            "met": None,
        }
    )
    for t in throughput:
        table.append(
            {
                "measure": f"store write, {t['n']}^3 result groups",
                "value": t["write_groups_per_s"],
                "unit": "groups/s",
                "target": "",
                "met": None,
            }
        )
        table.append(
            {
                "measure": f"store read, {t['n']}^3 result groups",
                "value": t["read_groups_per_s"],
                "unit": "groups/s",
                "target": "",
                "met": None,
            }
        )
    table += [
        {
            "measure": "files per result group",
            "value": throughput[0]["files_per_group"],
            "unit": "files",
            "target": "<= 3",
            "met": throughput[0]["files_per_group"] <= 3,
        },
        {
            "measure": f"no-op rerun planning, {scale['results']} results",
            "value": scale["noop_planning_s"],
            "unit": "s",
            "target": "< 5 at 10,000",
            "met": scale["noop_planning_s"] < 5 if scale["results"] >= 10_000 else None,
        },
        {
            "measure": f"dyncdi status, {scale['results']} results",
            "value": scale["status_s"],
            "unit": "s",
            "target": "< 2 at 10,000",
            "met": scale["status_s"] < 2 if scale["results"] >= 10_000 else None,
        },
        *slurm_throughput.table_rows(slurm),
    ]
    return {
        "description": __doc__.strip().splitlines()[0],
        "tiny_tasks": tiny,
        "long_tasks": long,
        "sweep_speedup": speed,
        "store_throughput": throughput,
        "store_scale": scale,
        "slurm_throughput": slurm,
        "table": table,
    }
