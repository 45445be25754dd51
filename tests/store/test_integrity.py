"""A damaged store: every result is checksummed; status --verify and the merge name each damaged
group and why, never with a traceback; damaged groups are quarantined (not deleted) and a rerun
recomputes them, bitwise equal to the undamaged originals."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.store.integrity import DamagedGroup
from dyncdi_hpc.store.zarr_store import Store
from dyncdi_hpc.task import run_task
from tests.conftest import write_spec


@pytest.fixture(scope="module")
def pristine(tmp_path_factory) -> tuple[Path, Path]:
    """A store of four finished tasks (in-process) and its spec."""
    tmp = tmp_path_factory.mktemp("integrity")
    spec_path = write_spec(tmp / "s.yaml", tmp / "s.zarr", sweep={"seed": 4})
    spec = load_sweep(spec_path)
    store, the_plan = plan_sweep(spec, spec.store)
    for task in the_plan.todo:
        assert run_task(str(store.path), task.model_dump_json())["status"] == "done"
    return spec_path, store.path


def _objects(store: Store) -> dict[str, np.ndarray]:
    return {t: store.read_result(t)["object"].values for t in store.result_ids()}


def _chunk(store: Path, tid: str) -> Path:
    return store / "results" / tid / "object" / "0.0.0"


def _damage(store: Path) -> dict[str, str]:
    """Truncate one result's chunk, delete another's chunk and a third's zarr.json."""
    ids = sorted(p.name for p in (store / "results").iterdir() if p.is_dir())
    truncated, deleted_chunk, no_metadata = ids[:3]
    chunk = _chunk(store, truncated)
    chunk.write_bytes(chunk.read_bytes()[: chunk.stat().st_size // 2])
    _chunk(store, deleted_chunk).unlink()
    (store / "results" / no_metadata / "zarr.json").unlink()
    return {"truncated": truncated, "deleted_chunk": deleted_chunk, "no_metadata": no_metadata}


def test_every_result_carries_checksums_and_a_changed_value_is_caught(pristine, tmp_path):
    _, path = pristine
    copy = tmp_path / "s.zarr"
    shutil.copytree(path, copy, symlinks=True)
    store = Store.open(copy)
    tid = store.result_ids()[0]
    assert set(store.result_attrs(tid)["checksums"]) == {"object"}
    chunk = _chunk(copy, tid)
    chunk.unlink()  # reads back as zarr's fill value, silently, without the checksum
    with pytest.raises(DamagedGroup, match=rf"results/{tid}: damaged: the values of 'object'"):
        store.read_result(tid)


@pytest.mark.slow
def test_a_damaged_store_is_named_quarantined_and_recomputed(pristine, tmp_path):
    spec_path, path = pristine
    reference = _objects(Store.open(path))
    copy = tmp_path / "s.zarr"
    shutil.copytree(path, copy, symlinks=True)
    damaged = _damage(copy)
    runner = CliRunner()

    listing = runner.invoke(main, ["status", str(copy)])
    assert listing.exit_code == 0, listing.output
    assert damaged["no_metadata"] in listing.output and "damaged" in listing.output

    verified = runner.invoke(main, ["status", str(copy), "--verify"])
    assert verified.exit_code == 3, verified.output
    assert "Traceback" not in verified.output
    for tid in damaged.values():
        assert tid in verified.output
    assert "damaged: 3" in verified.output

    merged = runner.invoke(main, ["merge", str(copy)])
    assert merged.exit_code == 0, merged.output
    assert "Traceback" not in merged.output
    assert "quarantined" in merged.output
    quarantine = sorted(p.name for p in (copy / "_quarantine").iterdir() if p.is_dir())
    for tid in (damaged["truncated"], damaged["deleted_chunk"]):
        assert any(tid in q for q in quarantine), quarantine
    notes = [(copy / "_quarantine" / q / "QUARANTINED.txt").read_text() for q in quarantine]
    assert any("differ from their checksum" in n for n in notes), notes
    members = Store.open(copy).merged_attrs("xtal-kinematical")["members"]
    assert not set(members) & set(damaged.values())

    # the rerun (its tasks in-process, as a worker runs them) recomputes exactly the three
    store, the_plan = plan_sweep(load_sweep(spec_path), copy)
    assert sorted(t.task_id for t in the_plan.todo) == sorted(damaged.values())
    for task in the_plan.todo:
        assert run_task(str(store.path), task.model_dump_json())["status"] == "done"
    assert store.damaged_names("results") == []
    again = _objects(store)
    assert again.keys() == reference.keys()
    for tid, obj in reference.items():
        np.testing.assert_array_equal(again[tid], obj)  # bitwise: same spec, same seed
    page = CliRunner().invoke(main, ["report", str(copy), "--out", str(tmp_path / "r")])
    assert page.exit_code == 0, page.output
