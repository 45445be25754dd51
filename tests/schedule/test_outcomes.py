"""What a sweep's end says: fits that ran away are left out of the merge and named; failed
tasks make a distinct exit status, also on a rerun that computes nothing."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import EXIT_TASKS_FAILED, main
from dyncdi_hpc.config import MergeRule, load_sweep
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.store.zarr_store import Store
from dyncdi_hpc.task import run_task
from tests.conftest import write_spec

# no report: these tests are about outcomes (tests/report checks the page)
CLUSTER = [
    "--set",
    "local.n_workers=2",
    "--set",
    "local.dashboard_address=127.0.0.1:0",
    "--no-report",
]


def test_a_fit_that_ran_away_is_left_out_of_the_merge_and_named(tmp_path):
    spec_path = write_spec(
        tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2, "lr_shape": [0.05, 1e6]}
    )
    spec = load_sweep(spec_path)
    store, the_plan = plan_sweep(spec, spec.store)
    wild = set()
    for task in the_plan.todo:
        summary = run_task(str(store.path), task.model_dump_json())
        assert summary["status"] == "done"  # finite: nothing flags it before the merge
        if task.params.lr_shape == 1e6:
            wild.add(task.task_id)
    (key,) = merge_store(store, MergeRule(select="all"))
    attrs = store.merged_attrs(key)
    assert {d["task"] for d in attrs["diverged"]} == wild
    assert all("ended above where it started" in d["reason"] for d in attrs["diverged"])
    assert not set(attrs["selected"]) & wild and len(attrs["selected"]) == 2
    listing = CliRunner().invoke(main, ["status", str(store.path)])
    assert listing.exit_code == 0 and listing.output.count("diverged: its AD loss") == 2
    kept = merge_store(store, MergeRule(select="all", reject_diverged=False, max_error_ratio=None))
    assert len(store.merged_attrs(kept[0])["selected"]) == 4


@pytest.mark.slow
@pytest.mark.cluster
def test_failed_tasks_give_a_distinct_exit_status_and_are_listed_on_every_run(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1, "lr_scale": [0.01, 1e6]}
    )
    runner = CliRunner()
    first = runner.invoke(main, ["sweep", str(spec), *CLUSTER])
    assert first.exit_code == EXIT_TASKS_FAILED == 3, first.output
    failed = [line for line in first.stdout.splitlines() if line.startswith("failed: ")]
    assert len(failed) == 1 and "non-finite" in failed[0], first.stdout
    assert "report: not written (--no-report)" in first.stdout
    assert not (tmp_path / "s-report").exists()
    again = runner.invoke(main, ["sweep", str(spec), *CLUSTER])
    assert again.exit_code == 3, again.output
    assert "nothing new" in again.stdout and failed[0] in again.stdout
    store = Store.open(tmp_path / "s.zarr")
    assert sorted(store.result_attrs(t)["status"] for t in store.result_ids()) == [
        "done",
        "failed",
    ]
