"""The SLURM throughput benchmark's stand-in for several nodes: the one-node SLURM's partition
`shared` runs 4 one-core worker jobs at once on 2 cores, each a worker of one SLURMCluster."""

from __future__ import annotations

import time

import pytest
from distributed import get_task_stream

from benchmarks import slurm_throughput
from dyncdi_hpc.schedule.cluster import close_cluster
from tests.schedule.test_slurm import require_slurm

pytestmark = [pytest.mark.slurm, pytest.mark.cluster, pytest.mark.slow]


def test_four_jobs_run_at_once_in_the_shared_partition(tmp_path):
    """Four jobs on a 2-core node all join, and four held tasks run on four distinct workers
    at the same time: every task starts before any of them ends (one clock: one node)."""
    require_slurm()
    assert slurm_throughput.slurm_problem() is None
    client, _ = slurm_throughput._start(4, tmp_path / "logs")
    try:
        workers = client.scheduler_info()["workers"]
        assert len(workers) == 4
        # the scheduler's task stream: each task's worker and compute interval; time.sleep
        # because the workers import what the benchmark sends them, not this test module
        with get_task_stream(client) as stream:
            client.gather(client.map(time.sleep, [3.0] * 4, pure=False))
        runs = [
            (t["worker"], p["start"], p["stop"])
            for t in stream.data
            for p in t["startstops"]
            if p["action"] == "compute"
        ]
        assert len(runs) == 4
        assert len({worker for worker, _, _ in runs}) == 4
        assert max(start for _, start, _ in runs) < min(stop for _, _, stop in runs)
    finally:
        close_cluster(client)


def test_table_rows_name_the_reason_when_not_measured():
    """Without SLURM the table has one row that says why, and no target to meet."""
    rows = slurm_throughput.table_rows({"measured": False, "reason": "no SLURM here"})
    assert rows == [
        {
            "measure": "SLURM throughput, 1/2/4 jobs",
            "value": "not measured",
            "unit": "no SLURM here",
            "target": "",
            "met": None,
        }
    ]
