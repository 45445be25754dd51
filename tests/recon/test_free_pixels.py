"""Free-pixel cross-validation: held-out voxels are left out of every fit and scored."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dyncdi_hpc.config import ReconParams
from dyncdi_hpc.config.task import TaskSpec
from dyncdi_hpc.recon.free_pixels import free_mask
from dyncdi_hpc.recon.pipeline import reconstruct


def test_free_voxels_are_measured_clustered_and_the_same_every_time():
    measured = np.ones((32, 32, 32), bool)
    measured[:, :4] = False  # a masked band is never held out
    held = free_mask(measured, 0.05)
    assert held.sum() == pytest.approx(0.05 * measured.sum(), rel=0.05)
    assert not (held & ~measured).any()
    np.testing.assert_array_equal(held, free_mask(measured, 0.05))
    # clusters: nearly every held voxel has a held neighbour along each axis
    for axis in range(3):
        neighbour = np.roll(held, 1, axis) | np.roll(held, -1, axis)
        assert (held & neighbour).sum() > 0.9 * held.sum()
    assert not free_mask(measured, 0.0).any()


def test_held_out_voxels_do_not_steer_the_fit_and_are_scored(noiseless32, geometry32, fast_params):
    """Changing the counts of the held-out voxels changes the free deviance only: the object
    is the same, so neither the projections nor the AD saw them."""
    params = fast_params.model_copy(update={"free_fraction": 0.05})
    data = noiseless32.intensity
    held = free_mask(np.ones(data.shape, bool), 0.05)
    spoiled = np.where(held, 10.0 * data + 5.0, data)
    key = jax.random.key(3)
    a = reconstruct(data, None, geometry32, params, key=key)
    b = reconstruct(spoiled, None, geometry32, params, key=key)
    np.testing.assert_allclose(a.obj, b.obj, rtol=1e-5, atol=1e-6)
    assert a.metrics["free_voxels"] == int(held.sum())
    assert a.metrics["error"] == pytest.approx(b.metrics["error"], rel=1e-5)
    # a good fit predicts what it did not see about as well as what it did; spoiled, it cannot
    assert a.metrics["free_deviance"] < 3 * a.metrics["fit_deviance"] + 0.05
    assert b.metrics["free_deviance"] > 10 * a.metrics["free_deviance"]


def test_no_free_pixels_leave_task_ids_and_metrics_as_before():
    base = {"dataset": "d", "fingerprint": "f", "seed": 0}
    plain = TaskSpec(**base, params=ReconParams())
    zero = TaskSpec(**base, params=ReconParams(free_fraction=0.0))
    held = TaskSpec(**base, params=ReconParams(free_fraction=0.05))
    assert plain.task_id == zero.task_id != held.task_id
