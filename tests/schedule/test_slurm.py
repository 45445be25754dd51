"""Sweeps through a real SLURM (dask-jobqueue SLURMCluster), started by .ci/slurm-up.

The suite starts that SLURM itself where it can (tests/slurm_plugin.py); where it cannot,
these tests are skipped with the reason, except under CI=true or --require-slurm, where they
fail naming the fix.
"""

from __future__ import annotations

import functools
import os
import subprocess
import threading
import time
import uuid
from pathlib import Path

# dask_jobqueue installs a signal handler when imported, which Python allows only in the main
# thread; the sweep below runs in a thread, so import it here first.
import dask_jobqueue  # noqa: F401
import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.schedule.cluster import start_cluster
from dyncdi_hpc.schedule.profiles import load_profile
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import write_spec
from tests.slurm_plugin import slurm_problem

pytestmark = [pytest.mark.slurm, pytest.mark.cluster, pytest.mark.slow]
_problem = functools.cache(slurm_problem)


def require_slurm() -> None:
    """Fail (not skip, and not as a setup error) with the fix when there is no SLURM here."""
    problem = _problem()
    if problem:
        pytest.fail(
            f"SLURM is not running here ({problem}). Start it with `sudo .ci/slurm-up` "
            '(stop it with .ci/slurm-down), or deselect these tests with -m "not slurm".',
            pytrace=False,
        )


def small_jobs(tmp_path: Path, *extra: str) -> tuple[str, ...]:
    """--set overrides that keep worker jobs small, named uniquely, and logging into tmp_path."""
    name = f"dyncdi-test-{uuid.uuid4().hex[:8]}"
    sets = [
        f"slurm.name={name}",
        "slurm.cores=1",
        "slurm.memory=2GB",
        "slurm.walltime=00:05:00",
        "slurm.worker-extra-args=['--lifetime', '4m', '--lifetime-stagger', '10s']",
        f"slurm.log-directory={tmp_path / 'slurm-logs'}",
        "slurm.scheduler-options={dashboard_address: '127.0.0.1:0'}",
        "start_timeout=60",
        *extra,
    ]
    return tuple(sets)


def job_name(overrides: tuple[str, ...]) -> str:
    return overrides[0].split("=", 1)[1]


def as_cli(overrides: tuple[str, ...]) -> list[str]:
    return [arg for o in overrides for arg in ("--set", o)]


def job_states(name: str) -> dict[str, str]:
    """{job id: state} of the jobs named `name` that SLURM lists."""
    run = subprocess.run(
        ["squeue", "-h", "-n", name, "-o", "%i %T"], capture_output=True, text=True, check=True
    )
    return dict(line.split() for line in run.stdout.splitlines())


def result_groups(store: Path) -> list[str]:
    results = store / "results"
    return sorted(p.name for p in results.iterdir() if p.is_dir()) if results.is_dir() else []


def test_sweep_through_slurm_stores_every_result(tmp_path):
    require_slurm()
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 2}, cluster="slurm-cpu")
    sets = small_jobs(tmp_path, "scale=2")
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["sweep", str(spec), *as_cli(sets)])
    assert result.exit_code == 0, result.output
    assert "this run: done 2" in result.output
    s = Store.open(store)
    assert len(s.result_ids()) == 2
    assert {s.result_attrs(t)["status"] for t in s.result_ids()} == {"done"}
    # Both worker jobs were cancelled when the sweep closed its cluster.
    deadline = time.monotonic() + 30
    while job_states(job_name(sets)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not job_states(job_name(sets))
    print(f"2-task sweep through SLURM: {time.perf_counter() - t0:.1f} s")


def test_gpu_workers_get_one_gpu_each(tmp_path):
    require_slurm()
    profile = load_profile("slurm-gpu", small_jobs(tmp_path, "scale=2"))
    t0 = time.perf_counter()
    client = start_cluster(profile)
    try:
        first = time.perf_counter() - t0
        client.wait_for_workers(2, timeout=30)
        both = time.perf_counter() - t0
        env = client.run(
            lambda: {
                k: os.environ.get(k)
                for k in ("CUDA_VISIBLE_DEVICES", "XLA_PYTHON_CLIENT_PREALLOCATE")
            }
        )
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    print(f"slurm-gpu: first worker after {first:.1f} s, both after {both:.1f} s")
    assert sorted(e["CUDA_VISIBLE_DEVICES"] for e in env.values()) == ["0", "1"]
    assert {e["XLA_PYTHON_CLIENT_PREALLOCATE"] for e in env.values()} == {"false"}


def test_fixed_scale_replaces_a_cancelled_job(tmp_path):
    require_slurm()
    profile = load_profile("slurm-cpu", small_jobs(tmp_path, "scale=2", "watch_interval=1"))
    client = start_cluster(profile)
    try:
        client.wait_for_workers(2, timeout=30)
        before = {str(j.job_id) for j in client.cluster.workers.values()}
        victim = min(before, key=int)
        subprocess.run(["scancel", victim], check=True)
        t0 = time.perf_counter()
        while victim in {str(j.job_id) for j in client.cluster.workers.values()}:
            assert time.perf_counter() - t0 < 30, "the cancelled job was never dropped"
            time.sleep(0.05)
        while len(client.nthreads()) < 2:
            assert time.perf_counter() - t0 < 30, "no replacement worker within 30 s"
            time.sleep(0.05)
        replaced = time.perf_counter() - t0
        after = {str(j.job_id) for j in client.cluster.workers.values()}
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    print(f"replacement worker connected {replaced:.1f} s after scancel")
    assert victim not in after and len(after - before) == 1


def test_scancel_mid_sweep_every_task_done_exactly_once(tmp_path):
    require_slurm()
    store = tmp_path / "s.zarr"
    n_tasks = 12
    # tasks of a few seconds: the sweep outlasts the cancelled job long enough for the watcher
    # (1 s interval) to replace it, so the replacement is observed, not raced
    spec = write_spec(
        tmp_path / "s.yaml",
        store,
        sweep={"seed": n_tasks},
        base={"ad_steps": 1500, "log_every": 100},
        cluster="slurm-cpu",
    )
    sets = small_jobs(tmp_path, "scale=2", "watch_interval=1")
    name = job_name(sets)
    outcome = {}

    def sweep():
        outcome["result"] = CliRunner().invoke(main, ["sweep", str(spec), *as_cli(sets)])

    thread = threading.Thread(target=sweep)
    thread.start()
    seen: set[str] = set()
    cancelled = None
    t0 = time.monotonic()
    while thread.is_alive() and time.monotonic() - t0 < 150:
        states = job_states(name)
        seen |= set(states)
        running = sorted((j for j, s in states.items() if s == "RUNNING"), key=int)
        if cancelled is None and result_groups(store) and len(running) == 2:
            done_before = len(result_groups(store))
            cancelled = running[0]
            subprocess.run(["scancel", cancelled], check=True)
        time.sleep(0.2)
    thread.join(timeout=30)
    assert not thread.is_alive(), "the sweep did not finish within 150 s"
    result = outcome["result"]
    assert result.exit_code == 0, result.output
    assert cancelled is not None, "the sweep ended before a job could be cancelled mid-sweep"
    assert done_before < n_tasks
    # a task whose job was cancelled just after it wrote its result is rerun by Dask and then
    # reports "skipped" (or "duplicate" if both runs computed): still written once
    (line,) = [ln for ln in result.output.splitlines() if "this run:" in ln]
    counts = dict(p.rsplit(" ", 1) for p in line.split("this run: ", 1)[1].split(", "))
    assert set(counts) <= {"done", "skipped", "duplicate"}, line
    assert sum(int(v) for v in counts.values()) == n_tasks, line
    groups = result_groups(store)
    assert len(groups) == n_tasks == len(set(groups))
    s = Store.open(store)
    assert {s.result_attrs(t)["status"] for t in groups} == {"done"}
    assert len(seen) >= 3, f"no replacement job was submitted (jobs seen: {sorted(seen)})"
    print(f"scancel of job {cancelled} after {done_before}/{n_tasks} results; jobs {sorted(seen)}")


def test_sbatch_refusal_is_a_clear_error_within_seconds(tmp_path):
    require_slurm()
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1})
    sets = small_jobs(tmp_path, "slurm.queue=no-such-partition")
    t0 = time.perf_counter()
    result = CliRunner().invoke(main, ["sweep", str(spec), "--cluster", "slurm-cpu", *as_cli(sets)])
    elapsed = time.perf_counter() - t0
    assert result.exit_code == 2, result.output
    assert "sbatch refused the worker job" in result.output
    assert "invalid partition specified: no-such-partition" in result.output
    assert elapsed < 30
    assert not job_states(job_name(sets))


def test_a_worker_that_never_starts_is_an_error_after_the_timeout(tmp_path):
    require_slurm()
    sets = small_jobs(
        tmp_path, "start_timeout=3", "slurm.job-extra-directives=['--begin=now+1hour']"
    )
    t0 = time.perf_counter()
    with pytest.raises(DyncdiError, match=r"no SLURM worker connected within 3 s.*BeginTime"):
        start_cluster(load_profile("slurm-cpu", sets))
    assert time.perf_counter() - t0 < 20
    deadline = time.monotonic() + 20
    while job_states(job_name(sets)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not job_states(job_name(sets)), "pending jobs were left behind"


def test_adapt_starts_with_one_worker_and_replaces_a_cancelled_job(tmp_path):
    require_slurm()
    sets = small_jobs(tmp_path, "scale=null", "adapt={minimum: 1, maximum: 2}", "watch_interval=1")
    client = start_cluster(load_profile("slurm-cpu", sets))
    try:
        assert client.submit(sum, [1, 2], pure=False).result(timeout=30) == 3
        (victim,) = {str(j.job_id) for j in client.cluster.workers.values()}
        before = set(client.nthreads())
        subprocess.run(["scancel", victim], check=True)
        t0 = time.perf_counter()
        while not set(client.nthreads()) - before:
            assert time.perf_counter() - t0 < 40, "adapt did not bring a worker back in 40 s"
            time.sleep(0.1)
        replaced = time.perf_counter() - t0
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
    print(f"adapt: a worker was back {replaced:.1f} s after scancel")


def test_the_slurm_scheduler_refuses_plain_and_foreign_clients(tmp_path):
    """SLURM profiles speak TLS by default, with certificates only this driver and its workers
    hold, and keep the dashboard on the login node's loopback."""
    from distributed import Client
    from distributed.security import Security

    require_slurm()
    for name in ("slurm-cpu", "slurm-gpu"):
        shipped = load_profile(name)
        assert shipped.settings["tls"] is True
        assert shipped.jobqueue["scheduler-options"]["dashboard_address"].startswith("127.0.0.1")
    profile = load_profile("slurm-cpu", small_jobs(tmp_path, "scale=1"))
    client = start_cluster(profile, secrets=tmp_path / "secrets")
    try:
        address = client.scheduler.address
        assert address.startswith("tls://")
        assert client.submit(sum, [1, 2]).result() == 3  # the driver's own client works
        assert (tmp_path / "secrets").stat().st_mode & 0o077 == 0  # nobody else reads it
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=Security.temporary(), timeout="5s")  # someone else's CA
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="5s")  # no certificate at all
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
