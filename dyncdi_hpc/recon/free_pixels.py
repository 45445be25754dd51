"""Free-pixel cross-validation: measured voxels held out of every fit, whose deviance is scored.

As PyNX's free log-likelihood: a fit that only reproduces the noise lowers the deviance on the
voxels it fits but not on the held-out ones, so the free deviance is the one to stop on and to
compare models with. Voxels are held out in 3 x 3 x 3 clusters: the oversampled pattern is
smooth over about a voxel, so a lone held-out voxel would be predicted by its fitted neighbours
whatever the model. The clusters are drawn from a fixed seed over the measured voxels only, so
every task on a dataset holds out the same voxels and their free deviances compare.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation

CLUSTER = 3


def free_mask(measured: np.ndarray, fraction: float, seed: int = 0) -> np.ndarray:
    """Held-out voxels (bool, measured's shape (N0, N1, N2), a subset of measured): about
    `fraction` of the measured voxels in CLUSTER^3 clusters; none when fraction is 0."""
    measured = np.asarray(measured, bool)
    held = np.zeros(measured.shape, bool)
    target = fraction * measured.sum()
    if target < 1:
        return held
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(measured)
    structure = np.ones((CLUSTER,) * measured.ndim, bool)
    per_cluster = structure.size
    while held.sum() < target:
        missing = int(np.ceil((target - held.sum()) / per_cluster))
        centres = np.zeros(measured.shape, bool)
        centres.flat[rng.choice(candidates, size=missing, replace=False)] = True
        held |= binary_dilation(centres, structure) & measured
    return held
