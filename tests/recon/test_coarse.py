"""Coarse-to-fine: the coarse problem is the central half of the data on voxels twice as large,
its object returns to the full grid at the same sample-frame positions, and a staged
reconstruction through it runs, resumes and keeps held-out voxels out of every fit."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dyncdi_hpc.config import ReconParams
from dyncdi_hpc.physics.kinematical import centred_far_field
from dyncdi_hpc.recon.checkpoint import Checkpointing
from dyncdi_hpc.recon.coarse import (
    central_crop,
    coarse_geometry,
    coarse_object,
    coarse_shape,
    upsampled,
)
from dyncdi_hpc.recon.free_pixels import free_mask
from dyncdi_hpc.recon.pipeline import reconstruct
from tests.recon.test_stages import STAGED, thick16  # noqa: F401 (fixture)

COARSE = STAGED.model_copy(update={"coarse_to_fine": True})


@pytest.mark.parametrize("n", [16, 17])
def test_central_crop_keeps_the_peak_at_the_centre(n) -> None:
    x = np.zeros((n, n + 2, n + 1))
    x[n // 2, (n + 2) // 2, (n + 1) // 2] = 1.0
    crop = central_crop(x)
    m = coarse_shape(x.shape)
    assert crop.shape == m
    assert crop[m[0] // 2, m[1] // 2, m[2] // 2] == 1.0


def test_coarse_geometry_keeps_the_q_steps_and_doubles_the_voxels(geometry32) -> None:
    g = coarse_geometry(geometry32)
    assert g.shape == (16, 16, 16)
    np.testing.assert_allclose(g.q_basis, geometry32.q_basis)
    np.testing.assert_allclose(g.real_basis, 2 * geometry32.real_basis)
    np.testing.assert_allclose(g.field_of_view_nm, geometry32.field_of_view_nm)


def test_coarse_object_diffracts_as_the_central_crop(noiseless32) -> None:
    """The kinematical intensity of the coarse object on the coarse grid is the central half
    of the full object's, exactly (unitary transforms)."""
    obj = noiseless32.truth.object
    fine = np.abs(centred_far_field(obj)) ** 2
    coarse = np.abs(centred_far_field(coarse_object(obj))) ** 2
    np.testing.assert_allclose(coarse, central_crop(fine), rtol=1e-5, atol=1e-6 * fine.max())


def test_upsampled_samples_the_same_positions() -> None:
    """A smooth object sampled on the coarse grid, upsampled, matches it sampled on the fine
    grid (trilinear: h^2 / 8 |f''| per axis, 0.014 for this Gaussian of 3 coarse voxels),
    phase wraps included."""
    n, m = (32, 32, 32), (16, 16, 16)

    def sampled(shape, step):
        axes = [(np.arange(k) - k // 2) * step for k in shape]
        x, y, z = np.meshgrid(*axes, indexing="ij")
        amplitude = np.exp(-(x**2 + y**2 + z**2) / (2 * 6.0**2))
        return amplitude * np.exp(1j * (0.9 * x + 0.2 * y**2 / 10))

    fine, coarse = sampled(n, 1.0), sampled(m, 2.0)
    up = upsampled(coarse, n)
    inside = np.abs(fine) > 0.2
    assert np.max(np.abs(np.abs(up) - np.abs(fine))) < 0.05
    assert np.max(np.abs(np.angle(up[inside] * np.conj(fine[inside])))) < 0.35
    assert np.angle(up[16, 16, 16] * np.conj(fine[16, 16, 16])) == pytest.approx(0, abs=1e-6)
    assert np.ptp(np.angle(up[inside])) > 2 * np.pi * 0.9  # the phase wraps inside


def test_coarse_to_fine_needs_a_final_stage() -> None:
    with pytest.raises(ValueError, match="coarse_to_fine needs ad_steps > 0"):
        ReconParams(coarse_to_fine=True, ad_steps=0)


def test_fine_stage_is_the_final_stage_from_the_coarse_object() -> None:
    fine = COARSE.fine_stage()
    assert fine.schedule() == COARSE.schedule()[-1:]
    assert fine.dynamical_start == "previous" and fine.coarse_to_fine


def _run(thick16, **kwargs):  # noqa: F811
    data = thick16.data
    return reconstruct(data.intensity, None, data.geometry, COARSE, key=jax.random.key(5), **kwargs)


def test_coarse_then_fine_runs_both_and_resumes_in_the_fine_stage(thick16) -> None:  # noqa: F811
    """Every stage runs on the coarse grid, then the final one on the full grid; a run resumed
    from a full-grid checkpoint skips the coarse run and ends where the unbroken one does."""
    seen: list[str] = []
    saved = []
    full = _run(
        thick16,
        progress=lambda name, step, value: seen.append(name),
        checkpointing=Checkpointing(every=10, save=saved.append),
    )
    assert "coarse AD1/2 kinematical" in seen and "coarse AD2/2 dynamical" in seen
    assert seen[-1] == "AD"  # the full grid's one stage
    steps = sum(s.ad_steps for s in COARSE.schedule())
    assert len(full.ad_loss) == steps + COARSE.ad_steps and np.all(np.isfinite(full.ad_loss))
    assert full.obj.shape == thick16.data.intensity.shape
    assert "rocking_offset_rad" in full.metrics
    assert [c.stage for c in saved] == ["ad"]  # the coarse run is not checkpointed
    resumed = _run(thick16, checkpointing=Checkpointing(resume=saved[0]))
    np.testing.assert_allclose(resumed.ad_loss, full.ad_loss, rtol=1e-4)
    np.testing.assert_allclose(np.abs(resumed.obj), np.abs(full.obj), atol=1e-4)


def test_held_out_voxels_stay_out_of_the_coarse_fit(thick16) -> None:  # noqa: F811
    """Spoiling the held-out counts changes neither grid's fit."""
    data = thick16.data
    params = COARSE.model_copy(update={"free_fraction": 0.1})
    key = jax.random.key(6)
    clean = reconstruct(data.intensity, None, data.geometry, params, key=key)
    free = free_mask(np.ones(data.intensity.shape, bool), 0.1)
    spoiled = np.where(free, data.intensity * 50 + 1e4, data.intensity)
    dirty = reconstruct(spoiled, None, data.geometry, params, key=key)
    np.testing.assert_allclose(dirty.ad_loss, clean.ad_loss, rtol=1e-4)
    assert dirty.metrics["free_deviance"] > 10 * clean.metrics["free_deviance"]
