import pytest

from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.inputs import fingerprints, resolve
from dyncdi_hpc.sweep import expand, plan
from tests.conftest import write_spec


def _tasks(tmp_path, sweep, base=None):
    spec = load_sweep(write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep=sweep, base=base))
    return expand(spec, fingerprints(resolve(spec, None)))


def test_expansion_is_the_cartesian_product(tmp_path):
    tasks = _tasks(
        tmp_path, {"seed": 3, "tv_weight": [0.0, 1e-3], "loss": ["poisson", "amplitude"]}
    )
    assert len(tasks) == 12
    assert len({t.task_id for t in tasks}) == 12
    assert {t.seed for t in tasks} == {0, 1, 2}


def test_task_ids_are_stable_and_extend_with_new_axis_values(tmp_path):
    first = {t.task_id for t in _tasks(tmp_path, {"seed": 2, "tv_weight": [0.0]})}
    again = {t.task_id for t in _tasks(tmp_path, {"seed": 2, "tv_weight": [0.0]})}
    more = {t.task_id for t in _tasks(tmp_path, {"seed": 2, "tv_weight": [0.0, 0.1]})}
    assert first == again
    assert first < more and len(more - first) == 2


def test_a_value_that_fails_validation_names_the_axis(tmp_path):
    with pytest.raises(DyncdiError, match="ad_steps"):
        _tasks(tmp_path, {"ad_steps": [10, -5]})


def test_plan_without_a_store_is_all_pending(tmp_path):
    tasks = _tasks(tmp_path, {"seed": 2})
    p = plan(tasks, None)
    assert len(p.todo) == 2 and not p.done and not p.failed


def test_from_store_dataset_missing_in_store(tmp_path):
    import yaml

    path = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1})
    data = yaml.safe_load(path.read_text())
    data["datasets"] = {"measured": {"from_store": True}}
    path.write_text(yaml.safe_dump(data))
    spec = load_sweep(path)
    with pytest.raises(DyncdiError, match="not in the store"):
        resolve(spec, None)
