"""A task's memory and time estimated from its grid: printed by --dry-run, and a sweep whose
task cannot fit a worker refused, by the dry run too, before anything is allocated."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.config import ReconParams
from dyncdi_hpc.schedule.footprint import BASE_BYTES, task_footprint
from tests.conftest import write_spec


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def test_footprint_grows_with_the_grid_and_the_model():
    small = task_footprint((32, 32, 32), ReconParams())
    large = task_footprint((64, 64, 64), ReconParams())
    dynamical = task_footprint((64, 64, 64), ReconParams(model="dynamical"))
    assert BASE_BYTES < small.bytes < large.bytes < dynamical.bytes
    assert 0 < small.seconds < large.seconds < dynamical.seconds


def test_coarse_to_fine_costs_the_last_stage_plus_an_eighth_of_the_schedule():
    staged = ReconParams(model="dynamical", stages=[{"model": "kinematical", "ad_steps": 600}])
    full = task_footprint((64, 64, 64), staged)
    coarse = task_footprint((64, 64, 64), staged.model_copy(update={"coarse_to_fine": True}))
    last = task_footprint((64, 64, 64), staged.fine_stage().model_copy(update={"recipe": "1*ER"}))
    assert coarse.bytes == full.bytes
    assert coarse.seconds == pytest.approx(last.seconds + full.seconds / 8, rel=0.01)


def test_dry_run_prints_memory_time_and_store_size(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2})
    code, output = _run("sweep", spec, "--dry-run")
    assert code == 0, output
    assert "store size: up to" in output and "free there" in output
    assert "each task of xtal (32x32x32): about" in output
    assert "GB of memory" in output and "min on one CPU worker" in output


def test_a_task_larger_than_the_worker_memory_limit_is_refused(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2})
    code, output = _run("sweep", spec, "--set", "local.memory_limit=200MB")
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: datasets.xtal.geometry.shape: a task on a 32x32x32")
    assert "each worker has 0.2 GB" in lines[0] and "local.memory_limit" in lines[0]
    assert not (tmp_path / "s.zarr").exists()
    # the dry run prints its estimates, then the same refusal
    code, output = _run("sweep", spec, "--set", "local.memory_limit=200MB", "--dry-run")
    assert code == 2 and "about 0.47 GB of memory" in output
    assert output.strip().splitlines()[-1] == lines[0]
    assert not (tmp_path / "s.zarr").exists()


@pytest.mark.slow
def test_a_1024_cubed_grid_is_refused_before_anything_is_allocated(tmp_path):
    """Simulated, 1024^3 would hold 8 GiB on the driver alone: refused by a fresh process
    whose peak memory stays that of the imports (the limit is the issue's 500 MB)."""
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2})
    shape = "datasets.xtal.simulate.geometry.shape=[1024,1024,1024]"
    # the command's own peak: VmHWM of its address space (ru_maxrss would carry over the
    # parent's high-water mark across exec on Linux, here pytest's gigabytes)
    measure = (
        "import runpy, sys\n"
        "sys.argv = ['dyncdi'] + sys.argv[1:]\n"
        "try:\n"
        "    runpy.run_module('dyncdi_hpc', run_name='__main__')\n"
        "finally:\n"
        "    hwm = [l for l in open('/proc/self/status') if l.startswith('VmHWM:')]\n"
        "    print('peak_kib', hwm[0].split()[1])\n"
    )
    for args in (("--dry-run",), ()):
        run = subprocess.run(
            [sys.executable, "-c", measure, "sweep", str(spec), "--set", shape, *args],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert run.returncode == 2, run.stderr
        assert run.stderr.startswith("error: ") and "Traceback" not in run.stderr, run.stderr
        assert "1024x1024x1024" in run.stderr or "MB free" in run.stderr, run.stderr
        peak_kib = int(run.stdout.split("peak_kib")[-1])
        assert peak_kib < 500 * 1024, peak_kib
        assert not (tmp_path / "s.zarr").exists()
