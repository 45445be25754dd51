"""Displacement vector and full strain tensor from several reflections, in the sample frame.

Each reflection j measures one projection h_j.u of the displacement (physics/resample.py fixes
the sample frame and the h_j in it). Three or more non-coplanar h_j determine u per voxel (a
least-squares solve), and the strain tensor is its symmetric gradient,
eps_ik = (d u_i / d r_k + d u_k / d r_i) / 2 (dimensionless). With fewer, or coplanar,
reflections the component of u normal to their span is unknown, and so is the tensor: that is
an error naming the field and the fix, never a silent answer.

Derivatives are finite differences on the orthogonal sample grid (physics.frames.SampleGrid),
central where both neighbours lie in the support, one-sided where one does, NaN elsewhere.
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..physics.frames import SampleGrid
from ..physics.resample import check_tensor_determined, reflection_rank
from ..store.groups import encode_displacement


def least_squares_displacement(
    projections_nm: np.ndarray, h_vectors: np.ndarray, *, full_rank: bool = True
) -> np.ndarray:
    """u (3, ...) nm from projections p_j = h_j.u / |h_j| (J, ...) nm, per-voxel least squares.

    Solves min sum_j (h_j.u - |h_j| p_j)^2 (equal phase errors for every reflection); NaN
    where any projection is NaN. h_vectors (J, 3) nm^-1 must span 3D, unless full_rank is
    False: then the minimum-norm solution (0 along the directions no h_j sees) is returned.
    """
    h = np.asarray(h_vectors, float)
    if full_rank:
        check_tensor_determined(h)
    p = np.asarray(projections_nm, float)
    rhs = np.linalg.norm(h, axis=1)[:, None] * p.reshape(len(h), -1)
    u = np.linalg.pinv(h) @ rhs
    u[:, ~np.all(np.isfinite(rhs), axis=0)] = np.nan
    return u.reshape(3, *p.shape[1:])


def gradient(field: np.ndarray, support: np.ndarray, voxel_nm: float) -> np.ndarray:
    """d field / d r_k (3, nx, ny, nz) per nm of a real field (nx, ny, nz); NaN where undefined."""
    support = np.asarray(support, bool)
    f = np.where(support, field, 0.0)
    out = []
    for axis in range(3):
        fwd = np.roll(f, -1, axis) - f
        fwd_ok = support & np.roll(support, -1, axis)
        bwd = f - np.roll(f, 1, axis)
        bwd_ok = support & np.roll(support, 1, axis)
        # no wrap-around: the last voxel has no forward neighbour, the first no backward one
        edge = [slice(None)] * 3
        edge[axis] = -1
        fwd_ok[tuple(edge)] = False
        edge[axis] = 0
        bwd_ok[tuple(edge)] = False
        count = fwd_ok.astype(float) + bwd_ok
        total = np.where(fwd_ok, fwd, 0.0) + np.where(bwd_ok, bwd, 0.0)
        out.append(np.where(count > 0, total / np.maximum(count, 1), np.nan) / voxel_nm)
    return np.stack(out)


def strain_tensor(displacement_nm: np.ndarray, support: np.ndarray, voxel_nm: float) -> np.ndarray:
    """Symmetric gradient of u (3, nx, ny, nz) nm: strain (3, 3, nx, ny, nz), NaN outside."""
    grad = np.stack([gradient(c, support, voxel_nm) for c in displacement_nm])  # [i, k] = du_i/dk
    eps = 0.5 * (grad + np.swapaxes(grad, 0, 1))
    return np.where(np.asarray(support, bool), eps, np.nan)


def _frame_attrs(grid: SampleGrid, h: np.ndarray, hkls: list | None) -> dict:
    rank = reflection_rank(h)
    blind = np.linalg.svd(h)[2][rank:] if rank < 3 else np.zeros((0, 3))
    return {
        "frame": "sample: the crystal's cubic axes [100], [010], [001] as x, y, z",
        "voxel_nm": grid.voxel_nm,
        "origin_nm": list(grid.origin_nm),
        "reflections": [list(map(int, hkl)) for hkl in (hkls or [])],
        "h_vectors_nm-1": h.tolist(),
        "rank": rank,
        "undetermined_directions": blind.tolist(),
    }


def strain_dataset(
    displacement_nm: np.ndarray,
    support: np.ndarray,
    grid: SampleGrid,
    h_vectors: np.ndarray,
    hkls: list[tuple[int, int, int]] | None = None,
    *,
    tensor: bool = True,
) -> xr.Dataset:
    """u and (tensor) the strain tensor as an xarray Dataset, dims (x, y, z) in nm.

    Variables: displacement (component, x, y, z) nm, support (x, y, z), with tensor strain
    (i, j, x, y, z): then h_vectors (J, 3) nm^-1 must span 3D (a ParameterError if not).
    Without the tensor, for reflections of rank < 3 the attrs say which directions u is blind
    to (its component there is 0, not measured).
    """
    h = np.asarray(h_vectors, float).reshape(-1, 3)
    support = np.asarray(support, bool)
    eps = None
    if tensor:
        check_tensor_determined(h_vectors)
        eps = strain_tensor(np.where(support, displacement_nm, np.nan), support, grid.voxel_nm)
    return encode_displacement(
        displacement_nm, support, grid.axes_nm(), strain=eps, attrs=_frame_attrs(grid, h, hkls)
    )


def displacement_errors(
    displacement_nm: np.ndarray, truth_nm: np.ndarray, region: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """RMS error (3,) nm per component inside region after removing the best constant (the
    rigid translation), and the truth's peak-to-peak range (3,) nm there."""
    region = np.asarray(region, bool)
    diff = displacement_nm[:, region] - truth_nm[:, region]
    diff = diff - diff.mean(axis=1, keepdims=True)
    inside = truth_nm[:, region]
    return np.sqrt(np.mean(diff**2, axis=1)), inside.max(axis=1) - inside.min(axis=1)


def strain_errors(
    displacement_nm: np.ndarray, truth_nm: np.ndarray, region: np.ndarray, voxel_nm: float
) -> float:
    """RMS error of the strain tensor (all 9 components) inside region, over the largest
    peak-to-peak range of the truth's components; both tensors from the same finite
    differences on region."""
    eps = strain_tensor(displacement_nm, region, voxel_nm)
    ref = strain_tensor(truth_nm, region, voxel_nm)
    ok = np.all(np.isfinite(eps) & np.isfinite(ref), axis=(0, 1))
    diff = (eps - ref)[:, :, ok]
    spans = np.nanmax(ref[:, :, ok], axis=-1) - np.nanmin(ref[:, :, ok], axis=-1)
    return float(np.sqrt(np.mean(diff**2)) / spans.max())
