"""One crystal seen by several reflections: orientation and differentiable resampling.

Frames (fixed here, used by data/simulate_multi.py, recon/joint.py and the multi package):

* Sample frame (x, y, z) in nm, common to every reflection: the crystal's cubic axes
  [100], [010], [001]. A reflection hkl has the scattering vector h = 2 pi hkl / a (nm^-1)
  there, and the displacement field u(r) (nm) and the strain tensor are given in it. The
  common orthogonal grid is frames.SampleGrid (voxel i at (i - n // 2) * voxel_nm).
* Reflection frame j: geometry.py's frame of reflection j's scan (z along h_j, x in the
  scattering plane, y along the rocking axis), in which its conjugate grid lives
  (Geometry.real_basis). For the scan the crystal is turned so that h_j satisfies the Bragg
  condition; R_j is that rotation, from the sample frame to the reflection frame, so a point
  r of the crystal sits at R_j r in the scan and R_j h_j = |h_j| z.
* A rotation about h_j keeps the Bragg condition, so it is fixed by a convention plus a
  user-given azimuth psi_j: the rows of R_j are e_x, e_y, e_z (sample-frame unit vectors) with
  e_z = h_j / |h_j|, e_x0 the unit projection of the reference direction [001] on the plane
  normal to h_j ([100] when h_j is along [001]), e_x = cos psi_j e_x0 + sin psi_j (e_z x e_x0)
  (a right-handed turn by psi_j about h_j) and e_y = e_z x e_x. A user who knows which sample
  direction lay in the scattering plane (normal to the rocking axis) states it through psi_j.

Resampling is trilinear with zeros outside the source grid, precomputed on the host as the
eight corner indices and weights of every output voxel (a ResamplePlan of arrays), and applied
in JAX as a weighted gather: linear, exactly differentiable (its adjoint is the scatter-add
JAX derives), and jit-friendly because the plan is traced data, not a static argument.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ParameterError
from .frames import SampleGrid, conjugate_indices
from .geometry import Geometry
from .lattice import check_reflection, crystal

REFERENCE_DIRECTION = np.array([0.0, 0.0, 1.0])  # [001]: its projection normal to h is e_x0
FALLBACK_DIRECTION = np.array([1.0, 0.0, 0.0])  # [100], used when h is along [001]
# smallest singular value of the unit-h matrix, relative to the largest, below which the
# reflections count as coplanar (1e-6 allows for rounding of exactly coplanar vectors only)
COPLANAR_TOLERANCE = 1e-6


class ResamplePlan(NamedTuple):
    """Trilinear resampling onto an output grid of shape out: flat source indices (8, *out)
    (int32) and weights (8, *out) (dimensionless, 0 for corners outside the source grid)."""

    index: jax.Array
    weight: jax.Array


def h_vector_nm(material: str, hkl: tuple[int, int, int]) -> np.ndarray:
    """Scattering vector 2 pi hkl / a of a cubic crystal in the sample frame, shape (3,) nm^-1."""
    a = crystal(material).lattice_constant_nm
    return 2.0 * np.pi * np.asarray(hkl, dtype=float) / a


def reflection_rotation(h: np.ndarray, azimuth_rad: float = 0.0) -> np.ndarray:
    """R_j (3, 3), sample frame -> reflection frame: R h = |h| z; rows e_x, e_y, e_z (above)."""
    ez = np.asarray(h, dtype=float) / np.linalg.norm(h)
    ref = REFERENCE_DIRECTION
    if np.linalg.norm(np.cross(ez, ref)) < 1e-9:
        ref = FALLBACK_DIRECTION
    ex0 = ref - (ref @ ez) * ez
    ex0 /= np.linalg.norm(ex0)
    ex = np.cos(azimuth_rad) * ex0 + np.sin(azimuth_rad) * np.cross(ez, ex0)
    ey = np.cross(ez, ex)
    return np.stack([ex, ey, ez])


@dataclass(frozen=True)
class Reflection:
    """One reflection of the crystal: its scan geometry and its azimuth psi about h (rad)."""

    geometry: Geometry
    azimuth_rad: float = 0.0

    @property
    def h_nm(self) -> np.ndarray:
        """Scattering vector in the sample frame, shape (3,) nm^-1."""
        return h_vector_nm(self.geometry.material, self.geometry.hkl)

    @property
    def rotation(self) -> np.ndarray:
        """R (3, 3), sample frame -> this reflection's frame (module docstring)."""
        return reflection_rotation(self.h_nm, self.azimuth_rad)


def check_reflections(reflections: tuple[Reflection, ...], field: str = "reflections") -> None:
    """Raise a ParameterError unless the reflections are allowed ones of one crystal at one
    energy.

    Runs before anything is computed: an unknown material, a forbidden or null hkl, a material
    or energy that differs from the first reflection's, or a repeated reflection.
    """
    if len(reflections) < 1:
        raise ParameterError(field, "no reflection given", "give at least one reflection")
    first = reflections[0].geometry
    seen: dict[tuple[int, int, int], int] = {}
    for j, reflection in enumerate(reflections):
        g = reflection.geometry
        check_reflection(crystal(g.material, f"{field}[{j}].material"), g.hkl, f"{field}[{j}].hkl")
        if g.material != first.material:
            raise ParameterError(
                f"{field}[{j}].material",
                f"{g.material!r} differs from {first.material!r} of {field}[0]: "
                "the reflections must come from one crystal",
                f"use {first.material!r} for every reflection",
            )
        if not np.isclose(g.energy_kev, first.energy_kev, rtol=1e-9, atol=0.0):
            raise ParameterError(
                f"{field}[{j}].energy_kev",
                f"{g.energy_kev} keV differs from {first.energy_kev} keV of {field}[0]",
                "give every reflection the same energy (one beam, one crystal)",
            )
        if g.hkl in seen:
            raise ParameterError(
                f"{field}[{j}].hkl",
                f"{list(g.hkl)} repeats {field}[{seen[g.hkl]}]",
                "give each reflection once",
            )
        seen[g.hkl] = j


def reflection_rank(h_vectors: np.ndarray) -> int:
    """Number of independent directions among the scattering vectors h_j, (J, 3) nm^-1."""
    h = np.asarray(h_vectors, float)
    if h.size == 0:
        return 0
    unit = h / np.linalg.norm(h, axis=1, keepdims=True)
    s = np.linalg.svd(unit, compute_uv=False)
    return int(np.sum(s > COPLANAR_TOLERANCE * s[0]))


def check_tensor_determined(h_vectors: np.ndarray, field: str = "reflections") -> None:
    """Raise a ParameterError unless the h_j (J, 3) span 3D (>= 3 non-coplanar reflections)."""
    h = np.asarray(h_vectors, float).reshape(-1, 3)
    rank = reflection_rank(h)
    if rank < 3:
        what = "collinear" if rank == 1 else "coplanar"
        detail = f"{len(h)} reflection(s)" if len(h) < 3 else f"the {len(h)} reflections are {what}"
        raise ParameterError(
            field,
            f"{detail} (rank {rank}): the displacement vector and the strain tensor are "
            "underdetermined",
            "add reflections until three are non-coplanar, e.g. 111, -111 and 002 for fcc",
        )


def check_reflection_set(
    reflections: tuple[Reflection, ...], want_tensor: bool, field: str = "reflections"
) -> None:
    """Validate a multi-reflection set before anything runs (check_reflections, and >= 3
    non-coplanar reflections when the strain tensor is asked for)."""
    check_reflections(reflections, field)
    if want_tensor:
        check_tensor_determined(np.stack([r.h_nm for r in reflections]), field)


def conjugate_positions_sample_nm(geometry: Geometry, rotation: np.ndarray) -> np.ndarray:
    """Sample-frame position R^T A (m - N // 2) of every conjugate voxel, (N0, N1, N2, 3) nm."""
    return geometry.voxel_positions_nm() @ np.asarray(rotation)


def trilinear_plan(coords: np.ndarray, source_shape: tuple[int, int, int]) -> ResamplePlan:
    """Plan sampling a source volume at fractional indices coords (3, *out) (voxels)."""
    coords = np.asarray(coords, dtype=float)
    base = np.floor(coords).astype(np.int64)
    frac = coords - base
    index, weight = [], []
    for corner in range(8):
        bits = [(corner >> axis) & 1 for axis in range(3)]
        idx = [base[a] + bits[a] for a in range(3)]
        w = np.ones(coords.shape[1:])
        inside = np.ones(coords.shape[1:], dtype=bool)
        for a in range(3):
            w = w * (frac[a] if bits[a] else 1.0 - frac[a])
            inside &= (idx[a] >= 0) & (idx[a] < source_shape[a])
        clipped = [np.clip(idx[a], 0, source_shape[a] - 1) for a in range(3)]
        index.append(np.ravel_multi_index(clipped, source_shape))
        weight.append(np.where(inside, w, 0.0))
    return ResamplePlan(
        index=jnp.asarray(np.stack(index), dtype=jnp.int32), weight=jnp.asarray(np.stack(weight))
    )


def sample_to_conjugate_plan(
    geometry: Geometry, grid: SampleGrid, rotation: np.ndarray
) -> ResamplePlan:
    """Plan from the sample grid (nx, ny, nz) onto reflection geometry's conjugate grid."""
    r = conjugate_positions_sample_nm(geometry, rotation)
    coords = r / grid.voxel_nm + np.asarray(grid.shape) // 2
    return trilinear_plan(np.moveaxis(coords, -1, 0), grid.shape)


def conjugate_to_sample_plan(
    geometry: Geometry, grid: SampleGrid, rotation: np.ndarray
) -> ResamplePlan:
    """Plan from reflection geometry's conjugate grid (N0, N1, N2) onto the sample grid."""
    return trilinear_plan(conjugate_indices(geometry, grid, rotation), geometry.shape)


def resample(volume: jax.Array, plan: ResamplePlan) -> jax.Array:
    """Trilinear resampling of a real or complex volume by plan; (*lead, *src) -> (*lead, *out).

    Leading axes (e.g. the 3 components of a vector field) are resampled independently.
    """
    n_src = int(np.prod(volume.shape[volume.ndim - 3 :]))
    lead = volume.shape[: volume.ndim - 3]
    flat = volume.reshape(*lead, n_src)
    weight = plan.weight.astype(jnp.real(flat).dtype)
    return jnp.sum(weight * flat[..., plan.index], axis=-4)
