"""Detector-conjugate (sheared) grid -> orthogonal sample-frame grid.

A reconstruction lives on the conjugate grid of its scan: voxel m = (m0, m1, m2) sits at
r = A (m - N // 2), with A = `Geometry.real_basis` (columns a_j in nm, sample frame), see
`dyncdi_hpc.physics.geometry`. This module resamples such volumes onto an orthogonal grid in
the same sample frame:

* axes (x, y, z), right-handed: z along the reflection's h, x in the scattering plane
  perpendicular to h, y = z cross x along the rocking axis (normal to the scattering plane);
* arrays are indexed [ix, iy, iz] (x first), with isotropic voxels of `voxel_nm` nm;
* voxel i sits at (i - n // 2) * voxel_nm along each axis, so r = 0 (the conjugate grid's
  voxel N // 2) is voxel n // 2 of the sample grid: origin_nm = -(n // 2) * voxel_nm.

Resampling is trilinear (scipy.ndimage.map_coordinates, order 1): monotonic, so support edges
and probabilities stay in range. A complex volume is resampled as its real and imaginary parts,
which is continuous across phase wraps (unlike resampling the phase).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr
from scipy.ndimage import map_coordinates

from ..physics.geometry import Geometry

SAMPLE_DIMS = ("x", "y", "z")


@dataclass(frozen=True)
class SampleGrid:
    """Orthogonal grid in the sample frame: shape (nx, ny, nz), isotropic voxel (nm)."""

    shape: tuple[int, int, int]
    voxel_nm: float

    @property
    def origin_nm(self) -> tuple[float, float, float]:
        """Position of voxel (0, 0, 0) (nm)."""
        return tuple(-(n // 2) * self.voxel_nm for n in self.shape)

    def axes_nm(self) -> list[np.ndarray]:
        """Coordinates along x, y and z (nm), each of shape (n,)."""
        return [(np.arange(n) - n // 2) * self.voxel_nm for n in self.shape]

    def positions_nm(self) -> np.ndarray:
        """Sample-frame position of every voxel, shape (nx, ny, nz, 3) (nm)."""
        return np.stack(np.meshgrid(*self.axes_nm(), indexing="ij"), axis=-1)

    @property
    def basis(self) -> np.ndarray:
        """Grid steps as the columns of a (3, 3) matrix (nm), like Geometry.real_basis."""
        return np.eye(3) * self.voxel_nm


def sample_grid(geometry: Geometry, voxel_nm: float | None = None) -> SampleGrid:
    """The orthogonal grid covering the whole conjugate grid (its bounding box).

    voxel_nm defaults to the shortest conjugate-grid step, so no direction is undersampled.
    """
    voxel = float(voxel_nm or min(geometry.voxel_size_nm))
    n = np.asarray(geometry.shape)
    lo, hi = -(n // 2), n - 1 - n // 2
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1)
    reach = np.abs(geometry.real_basis @ corners).max(axis=1)
    shape = tuple(int(2 * np.ceil(r / voxel) + 1) for r in reach)
    return SampleGrid(shape=shape, voxel_nm=voxel)


def conjugate_indices(geometry: Geometry, grid: SampleGrid) -> np.ndarray:
    """Fractional conjugate-grid index of every sample-grid voxel, shape (3, nx, ny, nz)."""
    r = grid.positions_nm().reshape(-1, 3).T
    m = np.linalg.solve(geometry.real_basis, r) + (np.asarray(geometry.shape) // 2)[:, None]
    return m.reshape(3, *grid.shape)


def to_sample_frame(
    volume: np.ndarray, geometry: Geometry, grid: SampleGrid | None = None, order: int = 1
) -> np.ndarray:
    """Resample a conjugate-grid volume (N0, N1, N2), real or complex, onto grid (nx, ny, nz).

    Points outside the conjugate grid's field of view are 0.
    """
    grid = grid or sample_grid(geometry)
    coords = conjugate_indices(geometry, grid)

    def resample(x: np.ndarray) -> np.ndarray:
        return map_coordinates(x, coords, order=order, mode="constant", cval=0.0)

    volume = np.asarray(volume)
    if np.iscomplexobj(volume):
        return resample(volume.real) + 1j * resample(volume.imag)
    return resample(volume.astype(float))


def _masked_resample(
    values: np.ndarray, valid: np.ndarray, geometry: Geometry, grid: SampleGrid
) -> np.ndarray:
    """Resample a map defined only where valid (normalised: no bias at the edges); NaN out."""
    num = to_sample_frame(np.where(valid, values, 0.0), geometry, grid)
    den = to_sample_frame(valid.astype(float), geometry, grid)
    return np.where(den >= 0.5, num / np.maximum(den, 1e-12), np.nan)


def merged_to_sample_frame(
    ds: xr.Dataset, geometry: Geometry, voxel_nm: float | None = None
) -> xr.Dataset:
    """A merged group's fields on the orthogonal sample grid, dims (x, y, z), coords in nm.

    amplitude and phase come from the resampled complex object; maps defined inside the
    support (displacement, strain, their spreads) are resampled where defined and NaN
    elsewhere; support is where the resampled support exceeds 0.5.
    """
    grid = sample_grid(geometry, voxel_nm)
    obj = to_sample_frame(ds["amplitude"].values * np.exp(1j * ds["phase"].values), geometry, grid)
    support = to_sample_frame(ds["support"].values.astype(float), geometry, grid) >= 0.5
    coords = {
        name: xr.DataArray(
            axis,
            dims=name,
            attrs={"units": "nm", "long_name": f"sample-frame {name}", "axis": name.upper()},
        )
        for name, axis in zip(SAMPLE_DIMS, grid.axes_nm(), strict=True)
    }
    out = {
        "amplitude": (np.abs(obj), ds["amplitude"].attrs),
        "phase": (np.angle(obj), ds["phase"].attrs),
        "support": (support, ds["support"].attrs),
    }
    for name, var in ds.data_vars.items():
        if var.dims != ds["amplitude"].dims or name in out:
            continue
        values = np.asarray(var.values, float)
        if name == "support_probability":  # 0 outside the field of view, like the support
            out[name] = (to_sample_frame(values, geometry, grid), var.attrs)
            continue
        valid = np.isfinite(values)
        out[name] = (_masked_resample(values, valid, geometry, grid), var.attrs)
    variables = {
        name: xr.Variable(SAMPLE_DIMS, np.asarray(v, np.float32 if v.dtype != bool else bool), a)
        for name, (v, a) in out.items()
    }
    return xr.Dataset(
        variables,
        coords=coords,
        attrs={
            "frame": "sample: z along h, x in the scattering plane, y along the rocking axis",
            "voxel_nm": grid.voxel_nm,
            "origin_nm": list(grid.origin_nm),
        },
    )
