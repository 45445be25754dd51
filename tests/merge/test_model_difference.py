"""model_difference: the kinematical object aligned onto the dynamical one, and what is left."""

from __future__ import annotations

import numpy as np
import pytest

from dyncdi_hpc.merge.align import twin
from dyncdi_hpc.merge.model_difference import model_difference


def _truth(sim):
    t = sim.truth
    return t.amplitude * np.exp(1j * t.phase), np.asarray(t.support, bool)


def test_the_same_object_moved_and_twinned_differs_by_nothing(noiseless32, geometry32):
    dyn, _ = _truth(noiseless32)
    n = dyn.shape[0]
    ramp = np.exp(1j * 0.2 * np.arange(n) / n * 2 * np.pi)[:, None, None]
    kin = twin(np.roll(dyn, (1, -2, 1), axis=(0, 1, 2))) * ramp * np.exp(0.7j)
    d = model_difference(kin, dyn, geometry32)
    s = d.summary()
    assert d.twin
    assert s["support_dice"] > 0.99
    assert s["phase_rms_rad"] < 1e-2
    assert s["displacement_difference_rms_nm"] < 1e-2 * s["displacement_rms_nm"]
    assert s["strain_difference_rms"] < 1e-2 * s["strain_rms"]


def test_an_added_displacement_is_what_is_left(noiseless32, geometry32):
    """A Gaussian bump of displacement along Q, centred on the crystal (no linear part for
    align to take away), is recovered as the difference, zero mean on the region."""
    dyn, support = _truth(noiseless32)
    r = geometry32.voxel_positions_nm()
    centre = r[support].mean(axis=0)
    bump = 0.01 * np.exp(-np.sum((r - centre) ** 2, axis=-1) / (2 * 120.0**2))  # nm
    kin = dyn * np.exp(1j * geometry32.h_nm * bump)  # phase = -|h| u: kin has u - bump
    d = model_difference(kin, dyn, geometry32)
    expected = bump - bump[d.region].mean()
    got = d.displacement_difference_nm[d.region]
    assert not d.twin
    np.testing.assert_allclose(got, expected[d.region], atol=0.05 * np.ptp(bump[d.region]))
    assert np.isnan(d.displacement_difference_nm[~d.region]).all()
    assert d.summary()["strain_difference_rms"] > 1e-5  # the bump's gradient, ~1e-4


def test_shapes_must_agree(noiseless32, geometry32):
    dyn, _ = _truth(noiseless32)
    with pytest.raises(ValueError, match="shapes differ"):
        model_difference(dyn[:-1], dyn, geometry32)
