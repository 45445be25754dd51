"""The workflow-quality benchmarks' summaries on a tiny two-model sweep run in-process (16^3,
a few iterations): fields, per-start errors, the figure. No number is asserted beyond its
presence and range: the workflows' own results are in benchmarks/results/."""

from __future__ import annotations

import math

import pytest
from matplotlib.figure import Figure

from benchmarks import quality
from tests.conftest import run_tiny_sweep


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory):
    return run_tiny_sweep(
        tmp_path_factory.mktemp("quality") / "tiny.zarr",
        sweep={"seed": 2, "model": ["kinematical", "dynamical"]},
        base={},
        merge={"metric": "loss", "fraction": 0.5},
    )


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


def test_truth_losses_are_the_noise_floor_and_the_kinematical_misfit() -> None:
    """Noiseless dynamical data: the true object's dynamical loss is zero (the counts are its
    expected intensity), its kinematical loss is not (extinction); with noise, the dynamical
    one is the Poisson floor (about half a deviance per bright voxel, less for dim ones)."""
    from dyncdi_hpc.config import CrystalConfig, SimulateConfig
    from dyncdi_hpc.data.measurement import read_measurement
    from dyncdi_hpc.inputs import simulated_input
    from tests.recon.test_dynamical_recon import GEOMETRY_16

    base = SimulateConfig(
        geometry=GEOMETRY_16, crystal=CrystalConfig(size_nm=450.0), model="dynamical"
    )
    losses = {}
    for noise in (False, True):
        cfg = base.model_copy(update={"noise": noise})
        m = read_measurement(simulated_input(cfg), "inputs.thick")
        losses[noise] = quality.truth_losses(cfg, m)
    assert losses[False]["dynamical"] < 1e-6
    assert losses[False]["kinematical"] > 1e3 * max(losses[False]["dynamical"], 1e-9)
    assert 0.05 < losses[True]["dynamical"] < 0.6
    assert losses[True]["kinematical"] > losses[True]["dynamical"]
