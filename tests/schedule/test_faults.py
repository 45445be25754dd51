"""Failures on a real LocalCluster: a worker killed mid-task, a driver killed mid-sweep."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import write_spec

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

SLOW_TASKS = {"ad_steps": 1500, "log_every": 100}


def _start_sweep(spec: Path, *extra: str) -> subprocess.Popen:
    cluster = ("--set", "local.n_workers=2", "--set", "local.dashboard_address=127.0.0.1:0")
    cluster = (*cluster, "--no-report")  # about faults, not the page
    return subprocess.Popen(
        [sys.executable, "-m", "dyncdi_hpc.cli", "sweep", str(spec), *cluster, *extra],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )


def _results(store: Path) -> list[Path]:
    folder = store / "results"
    return sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []


def _wait_for(predicate, proc, timeout=240):
    deadline = time.monotonic() + timeout
    while not predicate():
        assert proc.poll() is None, proc.stdout.read()
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


def _started_at(store: Path) -> dict[str, str]:
    return {
        p.name: json.loads((p / "zarr.json").read_text())["attributes"]["started_at"]
        for p in _results(store)
    }


def test_worker_killed_mid_task_every_task_done_exactly_once(tmp_path):
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 6}, base=SLOW_TASKS)
    proc = _start_sweep(spec)
    workers = []

    def two_workers_busy():
        # LocalCluster's nannies start one worker process each, as children of the driver
        nonlocal workers
        children = psutil.Process(proc.pid).children(recursive=True)
        workers = [c for c in children if "multiprocessing" in " ".join(c.cmdline())]
        return len(workers) >= 2 and len(_results(store)) >= 1

    _wait_for(two_workers_busy, proc)
    assert len(_results(store)) < 6
    workers[0].send_signal(signal.SIGKILL)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    results = _results(store)
    assert len(results) == 6, output
    s = Store.open(store)
    assert all(s.result_attrs(p.name)["status"] == "done" for p in results)
    assert len({s.result_attrs(p.name)["task_id"] for p in results}) == 6
    for p in results:  # no partial group: each opens with its arrays
        assert s.read_result(p.name)["amplitude"].shape == (32, 32, 32)


def test_driver_killed_mid_sweep_resumes_without_recomputing(tmp_path):
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 6}, base=SLOW_TASKS)
    proc = _start_sweep(spec)
    _wait_for(lambda: len(_results(store)) >= 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its worker processes, no clean-up
    proc.wait(timeout=60)
    proc.stdout.close()
    before = _started_at(store)
    assert 2 <= len(before) < 6

    proc = _start_sweep(spec)
    output, _ = proc.communicate(timeout=300)
    assert proc.returncode == 0, output
    assert f"{len(before)} already done, {6 - len(before)} to compute" in output
    after = _started_at(store)
    assert len(after) == 6
    assert {k: after[k] for k in before} == before  # completed tasks were not recomputed


def test_a_local_profile_whose_workers_restart_is_refused_before_anything_runs(tmp_path):
    """distributed's lifetime restart stalls a LocalCluster: refused up front, not hung.

    Worker turnover itself is tested where it is real, on SLURM (tests/schedule/test_slurm.py:
    jobs cancelled mid-sweep are replaced and every task is done exactly once)."""
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 2})
    lifetime = ("local.lifetime=10s", "local.lifetime_stagger=1s", "local.lifetime_restart=true")
    proc = _start_sweep(spec, *[a for kv in lifetime for a in ("--set", kv)])
    output, _ = proc.communicate(timeout=120)
    assert proc.returncode == 2, output
    assert "lifetime_restart" in output and "stalls" in output
    assert not store.exists()
