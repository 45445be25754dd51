"""Voxel-wise uncertainty of a merged reconstruction from its aligned members.

Members are aligned complex objects (n, N0, N1, N2) on one grid (ambiguities removed, see
merge/align.py). Two estimates:

* `ensemble_spread`: the spread of one member, i.e. the voxel-wise standard deviation over
  members of amplitude, phase (circular), displacement and strain along h;
* `bootstrap_spread`: the standard error of the merged (mean) value, the standard deviation
  of the merged fields over bootstrap resamples of the members (drawn with replacement).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .strain import strain_along_h


@dataclass(frozen=True)
class Spread:
    """Voxel-wise standard deviations, each (N0, N1, N2): amplitude (relative), phase (rad),
    displacement along h (nm), strain along h (1); NaN where undefined."""

    amplitude: np.ndarray
    phase: np.ndarray
    displacement: np.ndarray
    strain: np.ndarray


def mean_object(members: np.ndarray) -> np.ndarray:
    """Mean amplitude times the amplitude-weighted circular-mean phase, (N0, N1, N2)."""
    amp = np.abs(members)
    return amp.mean(axis=0) * np.exp(1j * np.angle(members.sum(axis=0)))


def circular_std(members: np.ndarray) -> np.ndarray:
    """Circular standard deviation of the phases, sqrt(-2 ln R) (rad), (N0, N1, N2)."""
    resultant = np.abs(np.exp(1j * np.angle(members)).mean(axis=0))
    return np.sqrt(-2.0 * np.log(np.clip(resultant, 1e-12, 1.0)))


def phase_deviations(members: np.ndarray) -> np.ndarray:
    """Each member's phase minus the circular mean, wrapped to (-pi, pi] (rad), (n, ...)."""
    mean_unit = np.exp(1j * np.angle(np.exp(1j * np.angle(members)).sum(axis=0)))
    return np.angle(members * np.conj(mean_unit))


def member_strains(
    members: np.ndarray, support: np.ndarray, basis: np.ndarray, h_nm: float
) -> np.ndarray:
    """Strain along h of every member inside a common support, (n, N0, N1, N2)."""
    return np.stack([strain_along_h(m, support, basis, h_nm) for m in members])


def _nanstd(x: np.ndarray) -> np.ndarray:
    finite = np.isfinite(x)
    count = finite.sum(axis=0)
    mean = np.where(finite, x, 0.0).sum(axis=0) / np.maximum(count, 1)
    var = np.where(finite, (x - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count, 1)
    return np.where(count >= 2, np.sqrt(var), np.nan)


def ensemble_spread(
    members: np.ndarray, support: np.ndarray, basis: np.ndarray, h_nm: float
) -> Spread:
    """Voxel-wise standard deviation over members (population std, ddof 0).

    members: complex (n, N0, N1, N2); support: bool (N0, N1, N2), where displacement and
    strain are defined; basis: grid steps (3, 3) columns (nm); h_nm: |h| (nm^-1).
    """
    deviations = phase_deviations(members)
    return Spread(
        amplitude=np.abs(members).std(axis=0),
        phase=circular_std(members),
        displacement=np.where(support, deviations.std(axis=0) / h_nm, np.nan),
        strain=_nanstd(member_strains(members, support, basis, h_nm)),
    )


def bootstrap_spread(
    members: np.ndarray,
    support: np.ndarray,
    basis: np.ndarray,
    h_nm: float,
    *,
    n_resamples: int,
    seed: int = 0,
) -> Spread:
    """Standard error of the merged fields: their std over bootstrap resamples of members."""
    rng = np.random.default_rng(seed)
    n = members.shape[0]
    means = np.stack([mean_object(members[rng.integers(0, n, n)]) for _ in range(n_resamples)])
    return Spread(
        amplitude=np.abs(means).std(axis=0),
        phase=circular_std(means),
        displacement=np.where(support, phase_deviations(means).std(axis=0) / h_nm, np.nan),
        strain=_nanstd(member_strains(means, support, basis, h_nm)),
    )
