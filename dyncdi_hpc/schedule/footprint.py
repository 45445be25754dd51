"""What one task costs before it runs: peak memory and time from its grid and schedule, and
the refusal of a sweep whose tasks cannot fit its workers (or whose simulation cannot fit
the driver) before anything is allocated or submitted.

The constants are measured by `python -m benchmarks run --only footprint` (fresh processes,
peak resident memory above the baseline after imports; 2 CPU cores, jax 0.10, CPU backend):
a kinematical task takes about 150 MiB plus 210 bytes per voxel above a process of about
290 MiB, a dynamical one 350 MiB plus 320 bytes per voxel; simulating a dataset holds about
240 bytes per voxel on the driver. Times are for one CPU worker and say the order of
magnitude only (a GPU is 10-100x faster).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import ReconParams, parse_recipe
from ..errors import DyncdiError

MIB = 2**20
BASE_BYTES = 290 * MIB  # a worker process with JAX and the package imported
FIXED_BYTES = {"kinematical": 150 * MIB, "dynamical": 350 * MIB}  # compiled programs, buffers
AD_BYTES_PER_VOXEL = {"kinematical": 210, "dynamical": 320}
SIMULATE_BYTES_PER_VOXEL = 240
PR_S_PER_VOXEL_ITER = 110e-9
AD_S_PER_VOXEL_STEP = {"kinematical": 250e-9, "dynamical": 800e-9}


@dataclass(frozen=True)
class Footprint:
    """A task's estimated peak resident memory (bytes) and time on one CPU worker (s)."""

    bytes: int
    seconds: float


def task_footprint(shape: tuple[int, ...], params: ReconParams) -> Footprint:
    """Estimated peak memory and time of one task on a grid of `shape` (N0, N1, N2)."""
    voxels = int(np.prod(shape))
    ad = [(stage.model, stage.ad_steps) for stage in params.stages] + [
        (params.model, params.ad_steps)
    ]
    models = {m for m, steps in ad if steps} or {"kinematical"}
    peak = BASE_BYTES + max(FIXED_BYTES[m] + AD_BYTES_PER_VOXEL[m] * voxels for m in models)
    iterations = sum(n for _, n in parse_recipe(params.recipe))
    per_voxel = iterations * PR_S_PER_VOXEL_ITER + sum(AD_S_PER_VOXEL_STEP[m] * n for m, n in ad)
    if params.coarse_to_fine:
        # the whole schedule on an eighth of the voxels, then the last stage on all of them
        fine_model, fine_steps = ad[-1]
        seconds = voxels * (per_voxel / 8 + AD_S_PER_VOXEL_STEP[fine_model] * fine_steps)
    else:
        seconds = voxels * per_voxel
    return Footprint(bytes=int(peak), seconds=float(seconds))


def simulation_bytes(shape: tuple[int, ...]) -> int:
    """Estimated driver memory to simulate a dataset on a grid of `shape` (bytes)."""
    return int(BASE_BYTES + SIMULATE_BYTES_PER_VOXEL * int(np.prod(shape)))


def gigabytes(n: float) -> str:
    """Bytes as GB with two significant digits (for messages)."""
    return f"{n / 1e9:.2g} GB"


def check_fits(
    footprints: dict[str, tuple[tuple[int, ...], Footprint]],
    worker_bytes: int | None,
    where: str,
) -> None:
    """Refuse (DyncdiError naming the dataset's shape) a task that cannot fit a worker.

    footprints: dataset -> (shape, the largest footprint of its tasks); where: the setting
    that gives the worker's memory, for the fix.
    """
    if worker_bytes is None:
        return
    for name, (shape, fp) in footprints.items():
        if fp.bytes > worker_bytes:
            raise DyncdiError(
                f"datasets.{name}.geometry.shape",
                f"a task on a {'x'.join(map(str, shape))} grid needs about "
                f"{gigabytes(fp.bytes)} of memory; each worker has {gigabytes(worker_bytes)}",
                f"bin or crop the data (a smaller shape), or give the workers more memory "
                f"({where})",
            )


def check_driver_room(shapes: dict[str, tuple[int, ...]], available: int) -> None:
    """Refuse a simulation that cannot fit the driver's free memory (bytes)."""
    for name, shape in shapes.items():
        need = simulation_bytes(shape)
        if need > available:
            raise DyncdiError(
                f"datasets.{name}.simulate.geometry.shape",
                f"simulating a {'x'.join(map(str, shape))} grid needs about {gigabytes(need)} "
                f"of memory; this machine has {gigabytes(available)} free",
                "simulate a smaller grid",
            )


def worker_memory(profile) -> tuple[int | None, str]:
    """(bytes each worker may use, or None for no limit; the setting that says so) of a
    cluster profile (schedule.profiles.ClusterProfile)."""
    from dask.utils import parse_bytes
    from distributed.system import MEMORY_LIMIT

    if profile.kind == "local":
        local = profile.settings.get("local", {})
        limit = local.get("memory_limit", "auto")
        workers = max(int(local.get("n_workers") or 1), 1)
        where = "--set local.memory_limit=8GB, or fewer local.n_workers"
        if limit in (None, 0, "0"):
            return None, where
        if limit == "auto":
            return int(MEMORY_LIMIT / workers), where
        if isinstance(limit, float) and limit <= 1:
            return int(MEMORY_LIMIT * limit), where
        return int(parse_bytes(limit) if isinstance(limit, str) else limit), where
    block = profile.jobqueue or {}
    memory = block.get("memory")
    if memory is None:
        return None, "slurm.memory"
    processes = max(int(block.get("processes") or 1), 1)
    return int(parse_bytes(str(memory)) / processes), "--set slurm.memory=16GB (per job)"
