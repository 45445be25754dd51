"""One share of the machine's cores per local worker process: XLA sizes its CPU thread pool
from the process's CPU affinity (the documented way to limit it), so two JAX workers on two
cores, each free to use both, contend instead of running side by side. Pinning worker i of n
to the i-th n-th of the cores gives each its share; SLURM already pins a job to its own cores.
"""

from __future__ import annotations

import os

from distributed.diagnostics.plugin import WorkerPlugin


def shares(cpus: list[int], n_workers: int) -> list[list[int]]:
    """cpus split into n_workers contiguous shares (the first ones one larger when uneven);
    every worker gets all of them when there are fewer cpus than workers."""
    if n_workers <= 1 or len(cpus) < n_workers:
        return [list(cpus)] * max(n_workers, 1)
    size, extra = divmod(len(cpus), n_workers)
    out, start = [], 0
    for i in range(n_workers):
        stop = start + size + (i < extra)
        out.append(cpus[start:stop])
        start = stop
    return out


def pin_process(cpus: list[int]) -> None:
    """Set the CPU affinity of every thread of this process (threads started later inherit)."""
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except OSError:  # a thread that just ended, or a cpuset that refuses: leave it
            continue


class PinCores(WorkerPlugin):
    """Pin each worker process to its share of the cores (worker names 0..n-1, LocalCluster's)."""

    name = "dyncdi-pin-cores"

    def __init__(self, n_workers: int, cpus: list[int] | None = None) -> None:
        self.n_workers = max(n_workers, 1)  # a cluster started empty and scaled later
        self.cpus = sorted(cpus if cpus is not None else os.sched_getaffinity(0))

    def setup(self, worker) -> None:
        try:
            index = int(worker.name) % self.n_workers
        except (TypeError, ValueError):
            return  # not a LocalCluster worker: leave it as it is
        pin_process(shares(self.cpus, self.n_workers)[index])


def supported() -> bool:
    """Whether this platform can pin processes (Linux)."""
    return hasattr(os, "sched_setaffinity") and os.path.isdir("/proc/self/task")
