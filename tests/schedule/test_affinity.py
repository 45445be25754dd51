"""Each local worker on its share of the cores (schedule/affinity.py)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from dyncdi_hpc.schedule import affinity
from dyncdi_hpc.schedule.cluster import close_cluster, start_cluster
from dyncdi_hpc.schedule.profiles import load_profile

pytestmark = pytest.mark.skipif(not affinity.supported(), reason="CPU affinity is Linux's")


def test_shares_split_the_cores_and_never_leave_a_worker_without_one():
    assert affinity.shares([0, 1], 2) == [[0], [1]]
    assert affinity.shares([0, 1, 2, 3, 4], 2) == [[0, 1, 2], [3, 4]]
    assert affinity.shares([0, 1, 2, 3], 1) == [[0, 1, 2, 3]]
    assert affinity.shares([0], 2) == [[0], [0]]  # fewer cores than workers: all share


def test_a_cluster_started_without_workers_gives_each_all_the_cores(monkeypatch):
    pinned = []
    monkeypatch.setattr(affinity, "pin_process", pinned.append)  # not this test process

    class Worker:
        name = 3

    affinity.PinCores(0, cpus=[0, 1]).setup(Worker())  # no ZeroDivisionError
    affinity.PinCores(2, cpus=[0, 1]).setup(Worker())
    assert pinned == [[0, 1], [1]]


def test_pinning_covers_every_thread_of_the_process():
    # a thread started before the pin moves too, and XLA's pool sees one core
    code = (
        "import os, threading, time\n"
        "from dyncdi_hpc.schedule.affinity import pin_process\n"
        "seen = []\n"
        "def later():\n"
        "    time.sleep(0.5)\n"
        "    seen.append(os.sched_getaffinity(0))\n"
        "t = threading.Thread(target=later)\n"
        "t.start()\n"
        "pin_process([min(os.sched_getaffinity(0))])\n"
        "t.join()\n"
        "import jax\n"
        "print(len(os.sched_getaffinity(0)), len(seen[0]))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert run.stdout.split() == ["1", "1"]


@pytest.mark.cluster
@pytest.mark.slow
def test_local_workers_get_disjoint_shares_unless_told_not_to():
    cores = sorted(os.sched_getaffinity(0))
    dashboard = ("local.dashboard_address=127.0.0.1:0", "local.n_workers=2")
    for pin in (True, False):
        client = start_cluster(load_profile("local", (*dashboard, f"pin_cores={pin}")))
        try:
            seen = client.run(lambda: sorted(os.sched_getaffinity(0)))
        finally:
            close_cluster(client)
        sets = sorted(seen.values())
        if pin and len(cores) >= 2:
            assert sets == affinity.shares(cores, 2), seen
        else:
            assert sets == [cores, cores], seen
