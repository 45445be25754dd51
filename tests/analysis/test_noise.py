"""The Poisson floor of the Fourier error against what we did not write: numpy's Poisson
generator (Monte Carlo), scipy's Poisson expectation, and the actual error of the exact model
on Poisson counts, computed as recon/projections.py's fourier_error computes it."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import poisson

from dyncdi_hpc.analysis.noise import (
    expected_fourier_error,
    expected_sqrt_misfit,
    local_mean_intensity,
    poisson_floor,
)


def _gaussian_peak(n: int = 32, sigma: float = 4.0, peak: float = 1e4) -> np.ndarray:
    r2 = ((np.indices((n, n, n)) - n // 2) ** 2).sum(axis=0)
    return peak * np.exp(-r2 / (2.0 * sigma**2))


def _actual_error(lam: np.ndarray, counts: np.ndarray, measured: np.ndarray) -> float:
    """fourier_error of the model |F| = sqrt(lam) against A = sqrt(counts), measured voxels."""
    num = np.sum(np.where(measured, (np.sqrt(lam) - np.sqrt(counts)) ** 2, 0.0))
    return float(num / np.sum(np.where(measured, counts, 0.0)))


@pytest.mark.parametrize("lam", [0.1, 1.0, 5.0, 50.0, 500.0])
def test_misfit_matches_a_monte_carlo_of_numpys_poisson(lam):
    x = np.random.default_rng(7).poisson(lam, size=2_000_000)
    samples = (np.sqrt(x) - np.sqrt(lam)) ** 2
    mc, se = samples.mean(), samples.std() / np.sqrt(samples.size)
    f = float(expected_sqrt_misfit(lam))
    assert abs(f - mc) < 5 * se and abs(f / mc - 1) < 0.02, (f, mc, se)


@pytest.mark.parametrize("lam", [1e-3, 0.37, 3.0, 42.0, 999.0, 2e3])
def test_misfit_matches_scipys_poisson_expectation(lam):
    exact = poisson(lam).expect(lambda k: (np.sqrt(k) - np.sqrt(lam)) ** 2)
    assert float(expected_sqrt_misfit(lam)) == pytest.approx(exact, rel=1e-4)


def test_misfit_limits():
    # Var sqrt(X) -> 1/4 for bright voxels; 2 lam for dark ones (X is 0 or 1)
    assert expected_sqrt_misfit(np.array([1e4, 1e6])) == pytest.approx([0.25, 0.25], abs=2e-5)
    dark = np.array([1e-7, 1e-5])
    assert expected_sqrt_misfit(dark) == pytest.approx(2 * dark, rel=1e-2)
    assert expected_sqrt_misfit(np.zeros((2, 3))).shape == (2, 3)
    assert not expected_sqrt_misfit(np.zeros(3)).any()


def test_floor_from_counts_matches_the_actual_error_of_the_exact_model():
    lam = _gaussian_peak()
    measured = np.ones(lam.shape, bool)
    for seed in range(3):
        counts = np.random.default_rng(seed).poisson(lam).astype(np.float32)
        actual = _actual_error(lam, counts, measured)
        # measured here: 0.973, 0.986, 0.964 of the actual error; off by 2x would fail
        assert poisson_floor(counts) == pytest.approx(actual, rel=0.1), seed
        # the floor with the true mean known, as a check of the ratio-of-sums form
        assert expected_fourier_error(lam) == pytest.approx(actual, rel=0.05), seed


def test_floor_is_not_the_floor_of_the_raw_counts():
    # lam = X would leave out the sparse wings (f(0) = 0): the local mean must not
    lam = _gaussian_peak()
    counts = np.random.default_rng(0).poisson(lam).astype(float)
    actual = _actual_error(lam, counts, np.ones(lam.shape, bool))
    assert expected_fourier_error(counts) < 0.85 * actual < poisson_floor(counts)


def test_mask_is_honoured():
    lam = _gaussian_peak()
    rng = np.random.default_rng(3)
    counts = rng.poisson(lam).astype(float)
    mask = np.zeros(lam.shape, bool)
    mask[:, :, : lam.shape[2] // 2 + 2] = True  # half the pattern, the peak included
    mask |= rng.random(lam.shape) < 0.05  # and scattered dead pixels
    floor = poisson_floor(counts, mask)
    # what masked voxels hold does not matter, neither to the floor nor to the local mean
    garbage = np.where(mask, 1e9, counts)
    assert poisson_floor(garbage, mask) == floor
    assert np.array_equal(local_mean_intensity(garbage, mask), local_mean_intensity(counts, mask))
    assert not local_mean_intensity(counts, mask)[mask].any()
    # it is the floor of the measured voxels only, which the unmasked floor is not (20% off)
    actual = _actual_error(lam, counts, ~mask)
    assert floor == pytest.approx(actual, rel=0.1)
    assert poisson_floor(counts) != pytest.approx(actual, rel=0.1)


def test_no_counts_has_no_floor():
    assert np.isnan(poisson_floor(np.zeros((4, 4, 4))))
    assert np.isnan(poisson_floor(np.ones((4, 4, 4)), np.ones((4, 4, 4), bool)))


def test_floor_is_fast_on_128_cubed():
    import time

    rng = np.random.default_rng(0)
    counts = rng.poisson(20.0, size=(128, 128, 128)).astype(np.float32)
    poisson_floor(counts[:4, :4, :4])  # the table is built once
    start = time.perf_counter()
    floor = poisson_floor(counts, rng.random(counts.shape) < 0.1)
    assert time.perf_counter() - start < 2.0  # < 0.4 s alone; slack for a busy machine
    assert floor == pytest.approx(float(expected_sqrt_misfit(20.0)) / 20.0, rel=0.05)
