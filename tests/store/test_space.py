"""A full disk, made for real on a small tmpfs: one clear line naming the file system, a
non-zero exit, no debris, no half-made store, a refusal up front when the space is clearly
short, and a rerun that resumes once space is free, bitwise equal to an undisturbed run."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.store.space import StoreFull
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import write_spec


@pytest.fixture
def tmpfs(tmp_path):
    """An 8 MiB tmpfs mounted at tmp_path/fs (root only, as in CI), unmounted afterwards."""
    mount = tmp_path / "fs"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root): sudo pytest tests/store")
    run = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True
    )
    if run.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {run.stderr.decode().strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def _fill(mount: Path, leave_bytes: int) -> Path:
    """Fill the file system at mount until only leave_bytes are free; returns the filler."""
    filler = mount / "filler"
    free = os.statvfs(mount).f_bavail * os.statvfs(mount).f_frsize
    with open(filler, "ab") as f:
        f.write(b"\0" * max(0, free - leave_bytes))
    return filler


def test_a_store_on_a_full_disk_is_refused_in_one_line_and_leaves_nothing(tmpfs):
    _fill(tmpfs, 0)
    with pytest.raises(StoreFull, match=r"the file system .* is full"):
        Store.create(tmpfs / "s.zarr")
    assert not (tmpfs / "s.zarr").exists()
    assert [p.name for p in tmpfs.iterdir()] == ["filler"]


def test_a_sweep_that_clearly_does_not_fit_is_refused_before_anything_is_written(tmpfs):
    _fill(tmpfs, 200_000)  # a 32^3 sweep of 4 tasks writes about 2 MB
    spec = write_spec(tmpfs.parent / "s.yaml", tmpfs / "s.zarr", sweep={"seed": 4})
    result = CliRunner().invoke(main, ["sweep", str(spec)])
    assert result.exit_code == 2, result.output
    line = result.output.strip().splitlines()[-1]
    assert line.startswith("error: store: the file system") and "free, the sweep" in line
    assert not (tmpfs / "s.zarr").exists()
    # the dry run shows the estimate that explains the refusal, then refuses as the run does
    dry = CliRunner().invoke(main, ["sweep", str(spec), "--dry-run"])
    assert dry.exit_code == 2 and "store size: up to" in dry.output
    assert dry.output.strip().splitlines()[-1] == line


def _results(path: Path) -> dict[str, np.ndarray]:
    store = Store.open(path)
    return {t: store.read_result(t)["object"].values for t in store.result_ids()}


@pytest.mark.slow
@pytest.mark.cluster
def test_a_disk_that_fills_during_the_sweep_stops_it_cleanly_and_a_rerun_resumes(tmpfs, tmp_path):
    """The disk fills (another program's file) once the first result is written: the driver
    stops with one line and exit 2, leaves no staging debris, and a rerun after space is freed
    completes every task, equal bit for bit to an undisturbed run of the same sweep."""
    store = tmpfs / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 6})
    cluster = ["--set", "local.n_workers=1", "--set", "local.dashboard_address=127.0.0.1:0"]
    cluster.append("--no-report")  # about the disk, not the page
    filled = threading.Event()

    def fill_after_first_result() -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline and not filled.is_set():
            if (store / "results").is_dir() and any(
                p.is_dir() for p in (store / "results").iterdir()
            ):
                _fill(tmpfs, 0)
                filled.set()
            time.sleep(0.02)

    watcher = threading.Thread(target=fill_after_first_result, daemon=True)
    watcher.start()
    argv = [sys.executable, "-m", "dyncdi_hpc.cli", "sweep", str(spec), *cluster]
    first = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    filled.set()
    assert first.returncode == 2, first.stdout + first.stderr
    assert "Traceback" not in first.stderr, first.stderr
    last = first.stderr.strip().splitlines()[-1]
    assert last.startswith("error: store: the file system") and "is full" in last, last
    assert [p.name for p in (store / "_staging").iterdir() if p.name != "zarr.json"] == []
    done_before = len(Store.open(store).result_ids())
    assert 1 <= done_before < 6

    (tmpfs / "filler").unlink()
    second = subprocess.run(argv, capture_output=True, text=True, timeout=600)
    assert second.returncode == 0, second.stdout + second.stderr
    assert f"{done_before} were already done" in second.stdout

    reference = tmp_path / "reference.zarr"
    undisturbed = [*argv[:4], str(spec), "--store", str(reference), *cluster]
    subprocess.run(undisturbed, capture_output=True, text=True, timeout=600, check=True)
    resumed, expected = _results(store), _results(reference)
    assert resumed.keys() == expected.keys() and len(expected) == 6
    for tid, obj in expected.items():
        np.testing.assert_array_equal(resumed[tid], obj)
