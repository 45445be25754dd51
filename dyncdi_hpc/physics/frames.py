"""Orthogonal grids in the three frames of a scan, and where their voxels fall on its
detector-conjugate grid.

A reconstruction lives on the conjugate grid of its scan: voxel m = (m0, m1, m2) sits at
r = A (m - N // 2), with A = `Geometry.real_basis` (columns a_j in nm) in the crystal frame.
Results are given on an orthogonal grid in one of three right-handed frames (`FRAMES`), all
with their origin at r = 0 (the conjugate grid's voxel N // 2, the crystal's centre):

* ``lab``: the CXI laboratory frame: z along the incident beam (downstream), y vertical up,
  x = y cross z (horizontal);
* ``crystal``: z along the scattering vector (the measured Q at the Bragg peak, h for the
  idealised geometry), x along the part of the incident wave vector normal to it (in the
  scattering plane), y = z cross x (the rocking axis of the symmetric geometry);
* ``sample``: the diffractometer's sample frame, every sample circle at zero (a crystal
  mounted once is fixed in it); for the idealised geometry it is the crystal frame, with
  identical numbers. For several reflections of one crystal (resample.py) the crystal's cubic
  axes are used instead, through `conjugate_indices`' rotation.

A grid (`SampleGrid`) is indexed [ix, iy, iz] (x first), with isotropic voxels of `voxel_nm`
nm; voxel i sits at (i - n // 2) * voxel_nm along each axis, so r = 0 is voxel n // 2:
origin_nm = -(n // 2) * voxel_nm. The frames differ only by the rotations the Geometry gives
(`frame_to_lab`): crystal_to_lab, sample_to_lab and the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError
from .geometry import Geometry

FRAMES = ("lab", "crystal", "sample")
FRAME_DESCRIPTIONS = {
    "lab": "lab (CXI): z along the incident beam (downstream), y vertical up, x = y cross z",
    "crystal": "crystal: z along the measured Q (h), x along the part of k_i normal to it, "
    "y = z cross x",
    "sample": "sample: the diffractometer's sample frame, every sample circle at zero "
    "(the crystal frame for the idealised geometry)",
}


@dataclass(frozen=True)
class SampleGrid:
    """Orthogonal grid in one frame: shape (nx, ny, nz), isotropic voxel (nm)."""

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
        """Position of every voxel in the grid's frame, shape (nx, ny, nz, 3) (nm)."""
        return np.stack(np.meshgrid(*self.axes_nm(), indexing="ij"), axis=-1)

    @property
    def basis(self) -> np.ndarray:
        """Grid steps as the columns of a (3, 3) matrix (nm), like Geometry.real_basis."""
        return np.eye(3) * self.voxel_nm


def check_frame(frame: str) -> str:
    """The frame's name, or a ParameterError naming the choices."""
    if frame not in FRAMES:
        raise ParameterError("frame", repr(frame), f"use one of {', '.join(FRAMES)}")
    return frame


def frame_to_lab(geometry: Geometry, frame: str) -> np.ndarray:
    """Rotation (3, 3) whose columns are the frame's x, y, z axes in the CXI lab frame."""
    return {
        "lab": lambda: np.eye(3),
        "crystal": lambda: np.asarray(geometry.crystal_to_lab),
        "sample": lambda: np.asarray(geometry.sample_to_lab),
    }[check_frame(frame)]()


def frame_to_crystal(geometry: Geometry, frame: str) -> np.ndarray:
    """Rotation (3, 3) taking vectors given in the frame to the crystal frame, the frame of
    Geometry.real_basis (exactly the identity for the crystal frame and, idealised, sample)."""
    if frame == "crystal" or (check_frame(frame) == "sample" and not geometry.measured):
        return np.eye(3)
    return np.asarray(geometry.crystal_to_lab).T @ frame_to_lab(geometry, frame)


def frame_basis(geometry: Geometry, frame: str) -> np.ndarray:
    """Conjugate-grid steps a0, a1, a2 as (3, 3) columns in the frame (nm); real_basis_lab
    for the lab frame, real_basis for the crystal frame."""
    return frame_to_crystal(geometry, frame).T @ geometry.real_basis


def sample_grid(
    geometry: Geometry, voxel_nm: float | None = None, frame: str = "sample"
) -> SampleGrid:
    """The orthogonal grid in the frame covering the whole conjugate grid (its bounding box).

    voxel_nm defaults to the shortest conjugate-grid step, so no direction is undersampled.
    """
    voxel = float(voxel_nm or min(geometry.voxel_size_nm))
    n = np.asarray(geometry.shape)
    lo, hi = -(n // 2), n - 1 - n // 2
    corners = np.array(np.meshgrid(*zip(lo, hi, strict=True), indexing="ij")).reshape(3, -1)
    reach = np.abs(frame_basis(geometry, frame) @ corners).max(axis=1)
    shape = tuple(int(2 * np.ceil(r / voxel) + 1) for r in reach)
    return SampleGrid(shape=shape, voxel_nm=voxel)


def conjugate_indices(
    geometry: Geometry, grid: SampleGrid, rotation: np.ndarray | None = None
) -> np.ndarray:
    """Fractional conjugate-grid index of every grid voxel, shape (3, nx, ny, nz).

    rotation (3, 3): from the grid's frame to the crystal frame of the scan (frame_to_crystal,
    or resample.Reflection.rotation for a grid in the crystal's cubic axes); None: the grid
    is in the crystal frame (the idealised geometry's sample frame).
    """
    return indices_at(geometry, grid.positions_nm(), rotation)


def indices_at(
    geometry: Geometry, points_nm: np.ndarray, rotation: np.ndarray | None = None
) -> np.ndarray:
    """Fractional conjugate-grid index of points (..., 3) (nm), shape (3, ...); rotation as
    in conjugate_indices."""
    p = np.asarray(points_nm).reshape(-1, 3)
    if rotation is not None:
        p = p @ np.asarray(rotation).T
    m = np.linalg.solve(geometry.real_basis, p.T) + (np.asarray(geometry.shape) // 2)[:, None]
    return m.reshape(3, *np.shape(points_nm)[:-1])


def support_window(
    geometry: Geometry, grid: SampleGrid, frame: str, support: np.ndarray
) -> tuple[slice, ...]:
    """Slices of grid (in frame) holding every point within one conjugate-grid cell of a
    support voxel (support: bool (N0, N1, N2)): where a trilinear resampling of the support
    can be non-zero. The whole grid when the support is empty."""
    if not np.any(support):
        return tuple(slice(0, n) for n in grid.shape)
    basis = frame_basis(geometry, frame)
    r = (np.argwhere(support) - np.asarray(geometry.shape) // 2) @ basis.T
    reach = np.abs(basis).sum(axis=1)  # a conjugate cell's extent along x, y, z
    centre = np.asarray(grid.shape) // 2
    lo = np.floor((r.min(axis=0) - reach) / grid.voxel_nm).astype(int) + centre
    hi = np.ceil((r.max(axis=0) + reach) / grid.voxel_nm).astype(int) + centre + 1
    return tuple(
        slice(max(int(a), 0), min(int(b), n)) for a, b, n in zip(lo, hi, grid.shape, strict=True)
    )


def conjugate_positions_nm(geometry: Geometry, frame: str) -> np.ndarray:
    """Position of every conjugate-grid voxel in the frame, shape (N0, N1, N2, 3) (nm)."""
    idx = [np.arange(n) - n // 2 for n in geometry.shape]
    m = np.stack(np.meshgrid(*idx, indexing="ij"), axis=-1).astype(float)
    return m @ frame_basis(geometry, frame).T
