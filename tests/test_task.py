"""One task: pre-emption by SIGTERM after a checkpoint, and the resumed result."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.store.zarr_store import Store
from dyncdi_hpc.task import run_task
from tests.conftest import write_spec

K = 200


def _store_with_one_task(tmp_path, name):
    spec_path = write_spec(
        tmp_path / f"{name}.yaml",
        tmp_path / f"{name}.zarr",
        sweep={"seed": 1},
        base={"ad_steps": 2500, "log_every": 50},
    )
    spec = load_sweep(spec_path)
    store, the_plan = plan_sweep(spec, spec.store)
    (task,) = the_plan.todo
    return store, task


@pytest.mark.slow
def test_sigterm_after_a_checkpoint_resumes_there_with_the_same_result(tmp_path):
    reference_store, task = _store_with_one_task(tmp_path, "ref")
    assert run_task(str(reference_store.path), task.model_dump_json(), K)["status"] == "done"
    reference = reference_store.read_result(task.task_id)

    store, same = _store_with_one_task(tmp_path, "killed")
    assert same.task_id == task.task_id
    code = (
        "import sys\n"
        "from dyncdi_hpc.task import run_task\n"
        "run_task(sys.argv[1], sys.argv[2], int(sys.argv[3]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", code, str(store.path), task.model_dump_json(), str(K)]
    )
    checkpoint = store.path / "checkpoints" / task.task_id / "zarr.json"
    deadline = time.monotonic() + 120
    while not checkpoint.is_file():
        assert proc.poll() is None, "the task ended before its first checkpoint"
        assert time.monotonic() < deadline
        time.sleep(0.05)
    proc.send_signal(signal.SIGTERM)  # what SLURM sends at walltime
    assert proc.wait(timeout=60) != 0
    assert store.result_ids() == []
    saved_step = json.loads(checkpoint.read_text())["attributes"]["step"]
    assert saved_step % K == 0 and saved_step > 0

    summary = run_task(str(store.path), task.model_dump_json(), K)
    assert summary["status"] == "done"
    attrs = store.result_attrs(task.task_id)
    assert attrs["resumed_from"]["stage"] == "ad"
    assert attrs["resumed_from"]["step"] >= saved_step
    assert not (store.path / "checkpoints" / task.task_id).exists()
    resumed = store.read_result(task.task_id)
    np.testing.assert_allclose(resumed["ad_loss"].values, reference["ad_loss"].values, rtol=1e-5)
    np.testing.assert_allclose(
        resumed["amplitude"].values, reference["amplitude"].values, atol=1e-5
    )
    np.testing.assert_allclose(resumed["phase"].values, reference["phase"].values, atol=1e-4)
    assert attrs["metrics"]["error"] == pytest.approx(
        reference_store.result_attrs(task.task_id)["metrics"]["error"], rel=1e-5
    )


def test_checkpoint_inside_phase_retrieval_resumes_identically(tmp_path, monkeypatch):
    store, task = _store_with_one_task(tmp_path, "pr")
    params = task.params.model_copy(update={"recipe": "300*ER", "ad_steps": 20})
    task = task.model_copy(update={"params": params})
    # run once with checkpoints every 100 iterations, keeping every checkpoint written
    saved = []
    original = Store.write_checkpoint

    def spy(self, task_id, ds):
        saved.append(ds.copy(deep=True))
        original(self, task_id, ds)

    monkeypatch.setattr(Store, "write_checkpoint", spy)
    run_task(str(store.path), task.model_dump_json(), 100)
    monkeypatch.undo()
    assert [int(d.attrs["step"]) for d in saved] == [100, 200]
    full = store.read_result(task.task_id)
    # resume from the first checkpoint in a second store and compare
    other, _ = _store_with_one_task(tmp_path, "pr2")
    other.write_checkpoint(task.task_id, saved[0])
    run_task(str(other.path), task.model_dump_json(), 100)
    assert other.result_attrs(task.task_id)["resumed_from"] == {"stage": "pr", "step": 100}
    again = other.read_result(task.task_id)
    np.testing.assert_allclose(again["pr_error"].values, full["pr_error"].values, rtol=1e-6)
    np.testing.assert_allclose(again["phase"].values, full["phase"].values, atol=1e-5)
    assert os.listdir(other.path / "checkpoints") == ["zarr.json"]
