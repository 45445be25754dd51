"""Staged AD schedules (kinematical AD -> dynamical AD), resumed mid-stage, and saturation."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dyncdi_hpc.config import ADStage, CrystalConfig, GeometryConfig, ReconParams, SimulateConfig
from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical
from dyncdi_hpc.recon.pipeline import Checkpointing, reconstruct

GEOMETRY_16 = GeometryConfig(
    energy_kev=9.0,
    material="Au",
    hkl=(1, 1, 1),
    shape=(16, 16, 16),
    rocking_step_deg=0.01,
    pixel_size_um=55.0,
    detector_distance_m=0.5,
)
STAGED = ReconParams(
    model="dynamical",
    recipe="20*ER+40*HIO+20*ER",
    stages=(ADStage(model="kinematical", ad_steps=30),),
    ad_steps=20,
    log_every=10,
    shrinkwrap={"threshold": 0.2},
)


@pytest.fixture(scope="module")
def thick16():
    cfg = SimulateConfig(geometry=GEOMETRY_16, crystal=CrystalConfig(size_nm=450.0), noise=False)
    return simulate_dynamical(cfg, GEOMETRY_16.build())


def test_schedule_lists_the_stages_then_the_final_model() -> None:
    assert [(s.model, s.ad_steps) for s in STAGED.schedule()] == [
        ("kinematical", 30),
        ("dynamical", 20),
    ]
    assert STAGED.uses_dynamical()
    assert ReconParams(ad_steps=0).schedule() == ()
    assert not ReconParams().uses_dynamical()


def test_staged_run_labels_its_stages_and_ends_with_the_dynamical_model(thick16) -> None:
    seen: list[str] = []
    rec = reconstruct(
        thick16.data.intensity,
        None,
        thick16.data.geometry,
        STAGED,
        key=jax.random.key(0),
        progress=lambda name, step, value: seen.append(name),
    )
    assert len(rec.ad_loss) == 50 and np.all(np.isfinite(rec.ad_loss))
    assert rec.metrics["ad_steps"] == 50
    assert "rocking_offset_rad" in rec.metrics  # only the dynamical stage fits it
    assert "AD1/2 kinematical" in seen and "AD2/2 dynamical" in seen
    assert seen.index("AD2/2 dynamical") > seen.index("AD1/2 kinematical")


def test_resume_inside_the_second_stage_gives_the_uninterrupted_result(thick16) -> None:
    saved = []
    full = reconstruct(
        thick16.data.intensity,
        None,
        thick16.data.geometry,
        STAGED,
        key=jax.random.key(3),
        checkpointing=Checkpointing(every=10, save=saved.append),
    )
    stages = [c.stage for c in saved]
    assert "ad" in stages and "ad1" in stages, stages
    second = next(c for c in saved if c.stage == "ad1")
    resumed = reconstruct(
        thick16.data.intensity,
        None,
        thick16.data.geometry,
        STAGED,
        key=jax.random.key(3),
        checkpointing=Checkpointing(resume=second),
    )
    np.testing.assert_allclose(resumed.ad_loss, full.ad_loss, rtol=1e-4)
    np.testing.assert_allclose(np.abs(resumed.obj), np.abs(full.obj), atol=1e-4)
    assert resumed.metrics["rocking_offset_rad"] == pytest.approx(
        full.metrics["rocking_offset_rad"], rel=1e-4
    )


def test_saturated_pixels_are_left_out(noiseless32, geometry32, fast_params) -> None:
    """Clipping the brightest pixels at a detector's saturation level: with saturation set
    to that level the fit ignores them and matches the unclipped data's fit."""
    level = float(np.quantile(noiseless32.intensity, 0.9995))
    clipped = np.minimum(noiseless32.intensity, level)
    key = jax.random.key(2)
    params = fast_params.model_copy(update={"saturation": level})
    masked = reconstruct(clipped, None, geometry32, params, key=key)
    explicit = reconstruct(
        clipped, noiseless32.intensity >= level, geometry32, fast_params, key=key
    )
    np.testing.assert_allclose(masked.ad_loss, explicit.ad_loss, rtol=1e-5)
    unmasked = reconstruct(clipped, None, geometry32, fast_params, key=key)
    assert not np.allclose(unmasked.ad_loss, masked.ad_loss, rtol=1e-3)
    assert masked.metrics["error"] == pytest.approx(explicit.metrics["error"], rel=1e-5)
