"""Many writers at once into one store: complete groups only, each task once."""

import multiprocessing as mp

import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.store.zarr_store import Store

N_TASKS = 16


def _write(args):
    path, task, writer = args
    ds = xr.Dataset(
        {"amplitude": (("x0", "x1", "x2"), np.full((16, 16, 16), writer, np.float32))},
        attrs={
            "status": "done",
            "task_id": task,
            "writer": writer,
            "spec": {"dataset": "d", "seed": 0, "params": {}},
            "metrics": {"error": 0.1, "loss": 0.2},
            "wall_s": 0.0,
            "device": {"platform": "cpu"},
        },
    )
    return Store.open(path).write_result(task, ds)


@pytest.mark.slow
def test_sixteen_concurrent_writers_and_duplicates(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    # every task is written by two processes at once, as when a lost worker's task is rerun
    jobs = [(str(store.path), f"task{i:02d}", w) for i in range(N_TASKS) for w in (1, 2)]
    with mp.get_context("spawn").Pool(N_TASKS) as pool:
        written = pool.map(_write, jobs)
    assert sum(written) == N_TASKS  # exactly one writer per task won
    assert store.result_ids() == [f"task{i:02d}" for i in range(N_TASKS)]
    for tid in store.result_ids():
        ds = xr.open_zarr(store.path, group=f"results/{tid}", consolidated=False)
        assert float(ds["amplitude"].mean()) == ds.attrs["writer"]  # one writer's whole group
    result = CliRunner().invoke(main, ["status", str(store.path)])
    assert result.exit_code == 0
    assert f"done: {N_TASKS}" in result.output
