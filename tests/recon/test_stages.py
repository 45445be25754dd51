"""Staged AD schedules (kinematical AD -> dynamical AD), resumed mid-stage, and saturation."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dyncdi_hpc.config import ADStage, CrystalConfig, ReconParams, SimulateConfig
from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical, truth_params
from dyncdi_hpc.physics.dynamical import support_box
from dyncdi_hpc.physics.kinematical import forward as kinematical
from dyncdi_hpc.physics.objects import CrystalParams
from dyncdi_hpc.recon.checkpoint import Checkpointing
from dyncdi_hpc.recon.optimise import ADParams, Hyper, Problem, objective
from dyncdi_hpc.recon.pipeline import reconstruct
from dyncdi_hpc.recon.stages import (
    FLAT_LOGIT,
    mirror,
    mirror_centre,
    rescaled,
    restarted,
    step_config,
    twin_of,
    with_nuisances,
)
from tests.recon.test_dynamical_recon import GEOMETRY_16

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


def _staged(thick16, seed: int, **kwargs):
    """reconstruct() of the 16^3 thick crystal with the STAGED schedule."""
    data = thick16.data
    return reconstruct(
        data.intensity, None, data.geometry, STAGED, key=jax.random.key(seed), **kwargs
    )


@pytest.mark.slow
def test_staged_run_labels_its_stages_and_ends_with_the_dynamical_model(thick16) -> None:
    seen: list[str] = []
    rec = _staged(thick16, 0, progress=lambda name, step, value: seen.append(name))
    assert len(rec.ad_loss) == 50 and np.all(np.isfinite(rec.ad_loss))
    assert rec.metrics["ad_steps"] == 50
    assert "rocking_offset_rad" in rec.metrics  # only the dynamical stage fits it
    assert "AD1/2 kinematical" in seen and "AD2/2 dynamical" in seen
    assert seen.index("AD2/2 dynamical") > seen.index("AD1/2 kinematical")


def test_resume_inside_the_second_stage_gives_the_uninterrupted_result(thick16) -> None:
    saved = []
    full = _staged(thick16, 3, checkpointing=Checkpointing(every=10, save=saved.append))
    stages = [c.stage for c in saved]
    assert "ad" in stages and "ad1" in stages, stages
    second = next(c for c in saved if c.stage == "ad1")
    resumed = _staged(thick16, 3, checkpointing=Checkpointing(resume=second))
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


def test_mirror_is_an_involution_that_keeps_the_support_box() -> None:

    rng = np.random.default_rng(0)
    support = np.zeros((12, 10, 14), bool)
    support[2:7, 3:9, 5:12] = rng.random((5, 6, 7)) > 0.3
    centre2 = mirror_centre(support)
    mirrored = np.asarray(mirror(support, centre2))
    assert support_box(mirrored, 0) == support_box(support, 0)
    np.testing.assert_array_equal(np.asarray(mirror(mirrored, centre2)), support)


def test_twin_has_the_kinematical_intensity_and_the_dynamical_loss_picks_the_object(thick16):
    """The twin of the truth fits the kinematical model exactly as well as the truth does; the
    dynamical model of a thick crystal tells them apart, and the stage start picks the truth."""

    data = thick16.data
    tp = truth_params(data, jnp.float32)
    logits = jnp.clip(jnp.nan_to_num(tp.logits, posinf=6.0, neginf=-6.0), -6, 6)
    truth = ADParams(tp._replace(logits=logits), jnp.asarray(0.0, jnp.float32))
    support = jnp.asarray(data.truth.amplitude > 0)
    centre2 = mirror_centre(np.asarray(support))
    support = support | mirror(support, centre2)
    twin = twin_of(truth, centre2)
    geometry = data.geometry
    np.testing.assert_allclose(
        kinematical(twin.crystal, geometry),
        kinematical(truth.crystal, geometry),
        rtol=2e-3,
        atol=1e-6,
    )
    counts = jnp.asarray(np.fft.ifftshift(data.intensity))
    problem = Problem(counts, jnp.ones(counts.shape, bool), support)
    params = ReconParams(model="dynamical")
    cfg = step_config(geometry, params, support)
    hyper = Hyper()
    loss = {}
    for name, p in (("truth", truth), ("twin", twin)):
        p = rescaled(with_nuisances(p, params, geometry), problem, cfg)
        loss[name] = float(objective(p, problem, hyper, cfg)[0])
    assert loss["twin"] > 10 * loss["truth"], loss


def test_restarted_flattens_the_phase_and_optionally_the_shape() -> None:
    rng = np.random.default_rng(0)
    logits = jnp.asarray(rng.normal(0, 2, (6, 6, 6)), jnp.float32)
    phase = jnp.asarray(rng.normal(0, 1, (6, 6, 6)), jnp.float32)
    start = ADParams(CrystalParams(logits, phase), jnp.asarray(0.3, jnp.float32))
    loose = jnp.zeros((6, 6, 6), bool).at[1:5, 1:5, 1:5].set(True)
    assert restarted(start, "previous", loose) is start
    flat_phase = restarted(start, "flat_phase", loose)
    assert np.array_equal(flat_phase.crystal.logits, logits)
    assert not np.any(flat_phase.crystal.phase) and flat_phase.log_scale == start.log_scale
    flat = restarted(start, "flat", loose)
    inside = np.asarray(loose & (logits > 0))
    assert 0 < inside.sum() < np.asarray(loose).sum()  # the check can fail both ways
    expected = np.where(inside, FLAT_LOGIT, -FLAT_LOGIT)
    np.testing.assert_allclose(flat.crystal.logits, expected, rtol=1e-6)
    assert not np.any(flat.crystal.phase)
    low = restarted(start, "flat", loose, threshold=0.15)
    inside_low = np.asarray(loose & (jax.nn.sigmoid(logits) > 0.15))
    assert inside_low.sum() > inside.sum()  # a lower threshold fills more of the support
    np.testing.assert_allclose(
        low.crystal.logits, np.where(inside_low, FLAT_LOGIT, -FLAT_LOGIT), rtol=1e-6
    )
