import numpy as np
import pytest

from dyncdi_hpc.config import MergeRule
from dyncdi_hpc.merge.combine import align_ensemble, combine, majority_agreement, select


def test_selection_rules():
    scored = [(0.3, "c"), (0.1, "a"), (0.2, "b"), (0.9, "d")]
    assert [t for _, t in select(scored, MergeRule(select="best_n", n=2))] == ["a", "b"]
    assert [t for _, t in select(scored, MergeRule(fraction=0.5))] == ["a", "b"]
    assert len(select(scored, MergeRule(select="all"))) == 4


def test_spread_of_an_ensemble_with_known_phase_noise(noiseless32):
    t = noiseless32.truth
    obj = t.amplitude * np.exp(1j * t.phase)
    rng = np.random.default_rng(0)
    sigma = 0.1
    members = np.stack([obj * np.exp(1j * rng.normal(0, sigma, obj.shape)) for _ in range(200)])
    merged = combine(members)
    inside = t.support
    assert np.median(merged.phase_std[inside]) == pytest.approx(sigma, rel=0.1)
    err = np.angle(merged.obj * np.conj(obj))[inside]
    assert np.sqrt(np.mean(err**2)) < 3 * sigma / np.sqrt(200)
    assert np.all(merged.support_probability[inside] == 1.0)


def test_ensemble_of_moved_copies_merges_to_the_original(noiseless32):
    t = noiseless32.truth
    obj = t.amplitude * np.exp(1j * t.phase)
    copies = [obj, np.roll(obj, 4, axis=1) * np.exp(0.7j), np.conj(np.flip(obj))]
    aligned = align_ensemble(copies)
    merged = combine(np.stack(aligned))
    assert np.max(merged.phase_std[t.support]) < 1e-3


def _noisy_copies(obj, n, sigma, seed):
    rng = np.random.default_rng(seed)
    return [obj * np.exp(1j * rng.normal(0, sigma, obj.shape)) for _ in range(n)]


def test_a_member_that_disagrees_with_the_majority_is_flagged(noiseless32):
    t = noiseless32.truth
    obj = t.amplitude * np.exp(1j * t.phase)
    wrong = t.amplitude * np.exp(1j * 2.5 * np.sign(np.arange(obj.shape[0]) - 16)[:, None, None])
    members = np.stack([*_noisy_copies(obj, 4, 0.05, 0), wrong])
    agreement = majority_agreement(members, MergeRule())
    assert agreement.outlier == [False, False, False, False, True]
    assert max(agreement.phase_rms_rad[:4]) < 0.1 < 0.5 < agreement.phase_rms_rad[4]
    off = majority_agreement(members, MergeRule(reject_outliers=False))
    assert not any(off.outlier) and off.note == "outlier rule off"


def test_no_member_is_excluded_without_a_majority(noiseless32):
    t = noiseless32.truth
    obj = t.amplitude * np.exp(1j * t.phase)
    pair = np.stack(_noisy_copies(obj, 2, 1.0, 1))
    assert majority_agreement(pair, MergeRule()).outlier == [False, False]
    rng = np.random.default_rng(2)
    scattered = np.stack(
        [t.amplitude * np.exp(1j * rng.uniform(-3, 3, obj.shape)) for _ in range(4)]
    )
    agreement = majority_agreement(scattered, MergeRule())
    assert not any(agreement.outlier)
    assert "no majority" in agreement.note
