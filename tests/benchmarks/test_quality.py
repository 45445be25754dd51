"""The workflow-quality benchmarks' summaries on a tiny two-model sweep run in-process (16^3,
a few iterations): fields, per-start errors, the figure. No number is asserted beyond its
presence and range: the workflows' own results are in benchmarks/results/."""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure

from benchmarks import quality
from dyncdi_hpc.config import ADStage, CrystalConfig, SimulateConfig, SweepSpec
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.task import run_task
from tests.recon.test_dynamical_recon import GEOMETRY_16


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    store_path = tmp_path_factory.mktemp("quality") / "tiny.zarr"
    simulate = SimulateConfig(
        geometry=GEOMETRY_16, crystal=CrystalConfig(size_nm=450.0), model="dynamical"
    )
    spec = SweepSpec(
        name="tiny",
        store=store_path,
        datasets={"thick": {"simulate": simulate}},
        base={
            "recipe": "20*ER+40*HIO+20*ER",
            "stages": [ADStage(model="kinematical", ad_steps=10)],
            "ad_steps": 10,
            "log_every": 5,
        },
        sweep={"seed": 2, "model": ["kinematical", "dynamical"]},
        merge={"metric": "loss", "fraction": 0.5},
    )
    store, the_plan = plan_sweep(spec, store_path)
    for task in the_plan.todo:
        assert run_task(str(store_path), task.model_dump_json())["status"] == "done"
    merge_store(store, spec.merge)
    return spec, store


@pytest.mark.slow
def test_outcome_has_both_models_merged_and_per_start(tiny) -> None:
    spec, store = tiny
    outcome = quality.dataset_outcome(spec, store, "thick")
    assert outcome["thickness_um"] == pytest.approx(0.45)
    assert outcome["thickness_over_pendellosung"] == pytest.approx(
        0.45 / outcome["pendellosung_um"]
    )
    assert outcome["extinction_depth_um"] == pytest.approx(outcome["pendellosung_um"] / math.pi)
    assert outcome["simulated_with"] == "dynamical" and outcome["grid"] == [16, 16, 16]
    for model in quality.MODELS:
        assert 0 <= outcome[f"{model}_phase_rms_rad"] <= math.pi
        assert math.isfinite(outcome[f"{model}_strain_rms"])
        starts = outcome[f"{model}_start_phase_rms_rad"]
        assert len(starts) == 2 and all(0 <= e <= math.pi for e in starts)
    ratio = outcome["phase_rms_ratio_kinematical_over_dynamical"]
    assert ratio == pytest.approx(
        outcome["kinematical_phase_rms_rad"] / outcome["dynamical_phase_rms_rad"]
    )
    row = quality._row(outcome)
    assert row["t (um)"] == pytest.approx(0.45)


def test_sizes_figure_and_empty_result(tiny) -> None:
    spec, store = tiny
    outcome = quality.dataset_outcome(spec, store, "thick")
    assert isinstance(quality.plot_sizes({"sizes": [outcome, outcome]}), Figure)
    assert quality.plot_sizes({"sizes": []}) is None


def test_quick_spec_keeps_the_schedule_shape_with_a_quarter_of_the_steps() -> None:
    spec = quality.load_sweep(quality.ROOT / "workflows" / "thick-crystal.yaml")
    quick = quality.quick_spec(spec)
    assert quick.sweep["seed"] == 1 and quick.sweep["model"] == spec.sweep["model"]
    assert quick.base.ad_steps == spec.base.ad_steps // 4
    assert [s.ad_steps for s in quick.base.stages] == [s.ad_steps // 4 for s in spec.base.stages]
    assert quick.name == "thick-crystal-quick" and quick.base.recipe == spec.base.recipe
