"""Displacement vector and full strain tensor from several reflections, in the sample frame.

Each reflection j measures one projection h_j.u of the displacement (physics/resample.py fixes
the sample frame and the h_j in it). Three or more non-coplanar h_j determine u per voxel (a
least-squares solve), and the strain tensor is its symmetric gradient,
eps_ik = (d u_i / d r_k + d u_k / d r_i) / 2 (dimensionless). With fewer, or coplanar,
reflections the component of u normal to their span is unknown, and so is the tensor: that is
an error naming the field and the fix, never a silent answer.

Derivatives are finite differences on the orthogonal sample grid (analysis.frames.SampleGrid),
central where both neighbours lie in the support, one-sided where one does, NaN elsewhere.
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import shift as shift_volume

from ..errors import DyncdiError
from ..merge.align import register
from .frames import SAMPLE_DIMS, SampleGrid

# smallest singular value of the unit-h matrix, relative to the largest, below which the
# reflections count as coplanar (1e-6 allows for rounding of exactly coplanar vectors only)
COPLANAR_TOLERANCE = 1e-6


def reflection_rank(h_vectors: np.ndarray) -> int:
    """Number of independent directions among the scattering vectors h_j, (J, 3) nm^-1."""
    h = np.asarray(h_vectors, float)
    if h.size == 0:
        return 0
    unit = h / np.linalg.norm(h, axis=1, keepdims=True)
    s = np.linalg.svd(unit, compute_uv=False)
    return int(np.sum(s > COPLANAR_TOLERANCE * s[0]))


def check_tensor_determined(h_vectors: np.ndarray, field: str = "reflections") -> None:
    """Raise a DyncdiError unless the h_j (J, 3) span 3D (>= 3 non-coplanar reflections)."""
    h = np.asarray(h_vectors, float).reshape(-1, 3)
    rank = reflection_rank(h)
    if rank < 3:
        what = "collinear" if rank == 1 else "coplanar"
        detail = f"{len(h)} reflection(s)" if len(h) < 3 else f"the {len(h)} reflections are {what}"
        raise DyncdiError(
            field,
            f"{detail} (rank {rank}): the displacement vector and the strain tensor are "
            "underdetermined",
            "add reflections until three are non-coplanar, e.g. 111, -111 and 002 for fcc",
        )


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


def displacement_dataset(
    displacement_nm: np.ndarray,
    support: np.ndarray,
    grid: SampleGrid,
    h_vectors: np.ndarray,
    hkls: list[tuple[int, int, int]] | None = None,
) -> xr.Dataset:
    """u as an xarray Dataset, dims (x, y, z) in nm (sample frame), without the tensor.

    Variables: displacement (component, x, y, z) nm, support (x, y, z). For reflections of rank
    < 3 the attrs say which directions u is blind to (its component there is 0, not measured).
    """
    support = np.asarray(support, bool)
    u = np.where(support, displacement_nm, np.nan)
    coords = {
        name: xr.DataArray(
            axis,
            dims=name,
            attrs={"units": "nm", "long_name": f"sample-frame {name}", "axis": name.upper()},
        )
        for name, axis in zip(SAMPLE_DIMS, grid.axes_nm(), strict=True)
    }
    coords["component"] = list(SAMPLE_DIMS)
    h = np.asarray(h_vectors, float).reshape(-1, 3)
    rank = reflection_rank(h)
    blind = np.linalg.svd(h)[2][rank:] if rank < 3 else np.zeros((0, 3))
    return xr.Dataset(
        {
            "displacement": (
                ("component", *SAMPLE_DIMS),
                u.astype(np.float32),
                {"units": "nm", "long_name": "displacement vector u (zero mean in the support)"},
            ),
            "support": (SAMPLE_DIMS, support),
        },
        coords=coords,
        attrs={
            "frame": "sample: the crystal's cubic axes [100], [010], [001] as x, y, z",
            "voxel_nm": grid.voxel_nm,
            "origin_nm": list(grid.origin_nm),
            "reflections": [list(map(int, hkl)) for hkl in (hkls or [])],
            "h_vectors_nm-1": h.tolist(),
            "rank": rank,
            "undetermined_directions": blind.tolist(),
        },
    )


def strain_dataset(
    displacement_nm: np.ndarray,
    support: np.ndarray,
    grid: SampleGrid,
    h_vectors: np.ndarray,
    hkls: list[tuple[int, int, int]] | None = None,
) -> xr.Dataset:
    """u and the strain tensor as an xarray Dataset, dims (x, y, z) in nm (sample frame).

    Variables: displacement (component, x, y, z) nm, strain (i, j, x, y, z), support (x, y, z).
    h_vectors (J, 3) nm^-1 of the reflections used: a DyncdiError if they do not span 3D.
    """
    check_tensor_determined(h_vectors)
    ds = displacement_dataset(displacement_nm, support, grid, h_vectors, hkls)
    support = np.asarray(support, bool)
    eps = strain_tensor(np.where(support, displacement_nm, np.nan), support, grid.voxel_nm)
    ds = ds.assign_coords(i=list(SAMPLE_DIMS), j=list(SAMPLE_DIMS))
    ds["strain"] = (
        ("i", "j", *SAMPLE_DIMS),
        eps.astype(np.float32),
        {"units": "1", "long_name": "strain tensor (du_i/dr_j + du_j/dr_i) / 2"},
    )
    return ds


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


def subvoxel_shift(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Shift (3,) voxels that best moves |moving| onto |fixed| (periodic grid): the whole-voxel
    cross-correlation peak refined by the cross-power phase slope."""
    whole = np.asarray(register(moving, fixed), float)
    rolled = np.roll(np.abs(moving), tuple(int(w) for w in whole), axis=(0, 1, 2))
    cross = np.fft.fftn(np.abs(fixed)) * np.conj(np.fft.fftn(rolled))
    sub = []
    for axis, n in enumerate(cross.shape):
        # phase slope of the cross power along this axis: -2 pi shift / n per frequency step
        slope = np.angle(np.sum(np.roll(cross, -1, axis=axis) * np.conj(cross)))
        sub.append(-slope * n / (2 * np.pi))
    return whole + np.asarray(sub)


def remove_translation(
    shape: np.ndarray, displacement_nm: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undo a crystal translation (an ambiguity of every BCDI solution) relative to a reference
    shape: shape (nx, ny, nz) and u (3, nx, ny, nz) moved by the sub-voxel shift (3,) voxels that
    best maps shape onto reference (trilinear). Returns the moved shape, u and the shift."""
    shift = subvoxel_shift(shape, reference)
    moved = shift_volume(np.asarray(shape, float), shift, order=1, mode="constant")
    u = np.stack([shift_volume(c, shift, order=1, mode="nearest") for c in displacement_nm])
    return moved, u, shift
