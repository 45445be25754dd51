"""The report: figures of a store built by running real tasks in-process."""

import jax
import pytest

from dyncdi_hpc.config import MergeRule, load_sweep
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.report.page import write_report
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.task import run_task
from tests.conftest import write_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    spec = load_sweep(write_spec(tmp / "s.yaml", tmp / "s.zarr", sweep={"seed": 3}))
    store, the_plan = plan_sweep(spec, spec.store)
    for task in the_plan.todo:  # in-process: the task function the workers run
        summary = run_task(str(store.path), task.model_dump_json())
        assert summary["status"] == "done"
    merge_store(store, MergeRule(select="best_n", n=2))
    return store


def test_report_has_valid_pngs_and_a_page_linking_them(small_store, tmp_path):
    page = write_report(small_store, tmp_path / "report")
    html = page.read_text()
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert {p.name for p in pngs} == {
        "xtal-kinematical-object.png",
        "xtal-kinematical-uncertainty.png",
        "losses.png",
    }
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC
        assert p.name in html
    assert "phase RMS" in html
    assert html.count("<tr>") == 1 + 3


def test_rerunning_a_finished_task_is_a_no_op(small_store):
    tid = small_store.result_ids()[0]
    spec = small_store.result_attrs(tid)["spec"]
    import json

    assert run_task(str(small_store.path), json.dumps(spec))["status"] == "skipped"
    assert jax.devices()[0].platform in small_store.result_attrs(tid)["device"]["platform"]
