"""The extent of a support on the conjugate grid along the axes of a frame (the lab's)."""

from __future__ import annotations

import numpy as np

AXES = ("x", "y", "z")


def support_extent_nm(support: np.ndarray, basis_lab_nm: np.ndarray) -> dict[str, float]:
    """Extent (nm) of a support (N0, N1, N2) bool along the frame's x, y, z, as
    {"x", "y", "z"}; basis_lab_nm (3, 3): the grid steps a0, a1, a2 as columns in the frame
    (Geometry.real_basis_lab), voxel m at r = basis (m - N // 2). 0 for an empty support.

    The extent is that of the union of the voxels' parallelepipeds, not of their centres:
    max - min of the centres plus one voxel's own length along the axis, sum_j |a_j . e|, so
    that a single voxel measures one voxel and a box of n voxels n of them.
    """
    support = np.asarray(support, bool)
    basis = np.asarray(basis_lab_nm, dtype=float)
    if not support.any():
        return dict.fromkeys(AXES, 0.0)
    centre = np.asarray(support.shape)[:, None] // 2
    positions = basis @ (np.stack(np.nonzero(support)) - centre)  # (3, n_voxels), nm
    voxel = np.abs(basis).sum(axis=1)  # (3,): a voxel's length along x, y, z
    span = positions.max(axis=1) - positions.min(axis=1) + voxel
    return {axis: float(v) for axis, v in zip(AXES, span, strict=True)}
