"""Voxel-wise uncertainty on an ensemble with known, independent noise."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from dyncdi_hpc.analysis.uncertainty import bootstrap_spread, ensemble_spread, mean_object

SIGMA_AMP, SIGMA_PHASE = 0.05, 0.1


def _ensemble(truth, n, seed):
    rng = np.random.default_rng(seed)
    amp = truth.amplitude + rng.normal(0, SIGMA_AMP, (n, *truth.amplitude.shape))
    phase = truth.phase + rng.normal(0, SIGMA_PHASE, (n, *truth.phase.shape))
    return amp * np.exp(1j * phase)


@pytest.mark.slow
def test_ensemble_spread_recovers_the_noise_std(geometry32, noiseless32):
    t = noiseless32.truth
    members = _ensemble(t, 200, 0)
    basis, h = geometry32.real_basis, geometry32.h_nm
    spread = ensemble_spread(members, t.support, basis, h)
    inside = t.support
    interior = binary_erosion(inside, iterations=1)
    assert np.median(spread.amplitude[inside]) == pytest.approx(SIGMA_AMP, rel=0.1)
    assert np.median(spread.phase[inside]) == pytest.approx(SIGMA_PHASE, rel=0.1)
    assert np.median(spread.displacement[inside]) == pytest.approx(SIGMA_PHASE / h, rel=0.1)
    # strain = sum_j w_j (phi[m+e_j] - phi[m-e_j]) / 2 / |h|: independent terms
    w = np.linalg.inv(basis.T)[2]
    want = SIGMA_PHASE / h * np.sqrt(np.sum(w[np.abs(w) > 1e-12] ** 2) / 2)
    assert np.median(spread.strain[interior]) == pytest.approx(want, rel=0.1)


def test_error_of_the_mean_shrinks_as_one_over_sqrt_n(noiseless32):
    t = noiseless32.truth
    inside = t.support
    for n in (16, 64, 256):
        mean = mean_object(_ensemble(t, n, n))
        amp_err = np.sqrt(np.mean((np.abs(mean) - t.amplitude)[inside] ** 2))
        phase_err = np.sqrt(np.mean(np.angle(mean * np.exp(-1j * t.phase))[inside] ** 2))
        assert amp_err == pytest.approx(SIGMA_AMP / np.sqrt(n), rel=0.1)
        assert phase_err == pytest.approx(SIGMA_PHASE / np.sqrt(n), rel=0.1)


@pytest.mark.slow
def test_bootstrap_gives_the_standard_error_of_the_mean(geometry32, noiseless32):
    t = noiseless32.truth
    n = 50
    members = _ensemble(t, n, 1)
    spread = bootstrap_spread(
        members, t.support, geometry32.real_basis, geometry32.h_nm, n_resamples=200, seed=0
    )
    inside = t.support
    assert np.median(spread.amplitude[inside]) == pytest.approx(SIGMA_AMP / np.sqrt(n), rel=0.1)
    assert np.median(spread.phase[inside]) == pytest.approx(SIGMA_PHASE / np.sqrt(n), rel=0.1)
