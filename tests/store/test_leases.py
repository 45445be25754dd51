"""Claims on a store's tasks: one holder at a time, taken over when stale or by the holder's own
driver; two real drivers on one store split a sweep instead of computing it twice."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time

import pytest

from dyncdi_hpc.store.leases import LEASE_TTL_S, Leases
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import write_spec


def test_one_claimant_holds_a_task_until_it_releases_it(tmp_path):
    leases = Leases(tmp_path)
    assert leases.claim("t1", "driver-a") is None
    holder = leases.claim("t1", "driver-b")
    assert holder is not None and holder.driver == "driver-a" and holder.pid == os.getpid()
    assert "driver driver-a" in holder.describe()
    assert leases.claim("t1", "driver-a") is None  # its own driver's retry takes it over
    leases.release("t1")
    assert leases.holder("t1") is None
    assert leases.claim("t1", "driver-b") is None


def test_a_stale_or_orphaned_lease_is_taken_over(tmp_path):
    leases = Leases(tmp_path)
    assert leases.claim("old", "driver-a") is None
    path = tmp_path / "_leases" / "task-old.json"
    past = time.time() - 2 * LEASE_TTL_S
    os.utime(path, (past, past))
    assert leases.claim("old", "driver-b") is None  # no heartbeat for twice the TTL
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    record = json.loads(path.read_text()) | {"pid": dead.pid, "driver": "driver-c"}
    path.write_text(json.dumps(record))
    assert leases.claim("old", "driver-d") is None  # its holder's process is gone
    assert leases.holder("old").driver == "driver-d"
    assert not list((tmp_path / "_leases").glob("*.stale-*"))


def test_a_heartbeat_keeps_a_lease_fresh(tmp_path, monkeypatch):
    import dyncdi_hpc.store.leases as module

    monkeypatch.setattr(module, "HEARTBEAT_S", 0.05)
    leases = Leases(tmp_path)
    assert leases.claim("t", "d") is None
    path = tmp_path / "_leases" / "task-t.json"
    os.utime(path, (0, 0))
    with leases.holding("t"):
        time.sleep(0.3)
        assert leases.holder("t").age_s < 1.0
    assert leases.holder("t") is None


def test_a_second_driver_is_told_of_the_first(tmp_path):
    leases = Leases(tmp_path)
    with leases.driver_at_work("first", "demo") as before:
        assert before == []
        with leases.driver_at_work("second", "demo") as others:
            assert [o["driver"] for o in others] == ["first"] and others[0]["sweep"] == "demo"
    assert leases.live_drivers() == []


@pytest.mark.slow
@pytest.mark.cluster
def test_two_drivers_on_one_store_compute_every_task_once(tmp_path):
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 6})
    argv = [
        sys.executable,
        "-m",
        "dyncdi_hpc.cli",
        "sweep",
        str(spec),
        "--set",
        "local.n_workers=1",
        "--set",
        "local.dashboard_address=127.0.0.1:0",
        "--no-report",
    ]
    subprocess.run([*argv, "--dry-run"], check=True, capture_output=True)  # warm caches
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(2.0)
    second = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    outputs = [p.communicate(timeout=600) for p in (first, second)]
    for p, (out, err) in zip((first, second), outputs, strict=True):
        assert p.returncode == 0, out + err
        assert "Traceback" not in err, err
        assert "merged: " in out
    computed = 0
    for out, _ in outputs:
        line = next(x for x in out.splitlines() if x.startswith("tasks: "))
        assert "duplicate" not in line, line
        match = re.search(r"\bdone (\d+)", line)
        computed += int(match.group(1)) if match else 0
    assert computed == 6, outputs
    assert any("another driver is working on this store" in err for _, err in outputs)
    assert len(Store.open(store).result_ids()) == 6
    assert not list((store / "_leases").glob("task-*"))
