"""The orthogonal sample-frame grid and where its voxels fall on a scan's conjugate grid.

A reconstruction lives on the conjugate grid of its scan: voxel m = (m0, m1, m2) sits at
r = A (m - N // 2), with A = `Geometry.real_basis` (columns a_j in nm, sample frame; see
geometry.py). The sample grid is orthogonal in the same frame:

* axes (x, y, z), right-handed: z along the reflection's h, x in the scattering plane
  perpendicular to h, y = z cross x along the rocking axis (normal to the scattering plane);
  for several reflections of one crystal (resample.py) the crystal's cubic axes instead;
* arrays are indexed [ix, iy, iz] (x first), with isotropic voxels of `voxel_nm` nm;
* voxel i sits at (i - n // 2) * voxel_nm along each axis, so r = 0 (the conjugate grid's
  voxel N // 2) is voxel n // 2 of the sample grid: origin_nm = -(n // 2) * voxel_nm.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .geometry import Geometry


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


def conjugate_indices(
    geometry: Geometry, grid: SampleGrid, rotation: np.ndarray | None = None
) -> np.ndarray:
    """Fractional conjugate-grid index of every sample-grid voxel, shape (3, nx, ny, nz).

    rotation (3, 3): from the grid's frame to the scan's (resample.Reflection.rotation), for a
    grid in the crystal's frame; None: the grid is in the scan's own sample frame.
    """
    p = grid.positions_nm().reshape(-1, 3)
    if rotation is not None:
        p = p @ np.asarray(rotation).T
    m = np.linalg.solve(geometry.real_basis, p.T) + (np.asarray(geometry.shape) // 2)[:, None]
    return m.reshape(3, *grid.shape)
