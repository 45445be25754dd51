"""The classic multi-reflection route: single-reflection reconstructions brought to the common
sample frame (the crystal's cubic axes, physics/resample.py), aligned (twin, translation) and
combined into u by per-voxel least squares; and the joint AD (recon/joint.py) started from it.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
from scipy.ndimage import distance_transform_edt

from ..analysis.registration import fourier_shift, subvoxel_shift
from ..analysis.strain import displacement_along_h
from ..analysis.strain_tensor import least_squares_displacement
from ..config import JointADConfig, ReconParams
from ..merge.align import flip_periodic
from ..physics.frames import SampleGrid
from ..physics.objects import support_of
from ..physics.resample import (
    Reflection,
    check_reflection_set,
    conjugate_to_sample_plan,
    resample,
)
from ..recon.joint import JointResult, reconstruct_joint
from ..recon.pipeline import reconstruct
from ..recon.projections import gaussian_blur


@dataclass(frozen=True)
class IndependentResult:
    """The classic route on the sample grid: per reflection the aligned object (J, nx, ny, nz)
    complex and the projection h_j.u / |h_j| (J, nx, ny, nz) nm (NaN outside), the common
    support, and u (3, nx, ny, nz) nm by per-voxel least squares (NaN outside)."""

    grid: SampleGrid
    objects: np.ndarray
    projections_nm: np.ndarray
    support: np.ndarray
    displacement_nm: np.ndarray
    twins: tuple[bool, ...]


def to_common_frame(obj: np.ndarray, reflection: Reflection, grid: SampleGrid) -> np.ndarray:
    """A conjugate-grid object (N0, N1, N2) complex, centred, on the sample grid (nx, ny, nz)."""
    plan = conjugate_to_sample_plan(reflection.geometry, grid, reflection.rotation)
    obj = jnp.asarray(obj)
    return np.asarray(resample(obj.real, plan)) + 1j * np.asarray(resample(obj.imag, plan))


def bring_to_reference(obj: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, bool]:
    """Remove the twin and the translation of a sample-frame object (nx, ny, nz) relative to a
    reference amplitude, keeping its phase (a phase ramp or offset is data here: the projected
    displacement). Returns the moved object and whether it was the twin."""
    best, best_corr, best_twin = obj, -np.inf, False
    for is_twin in (False, True):
        candidate = np.conj(flip_periodic(obj)) if is_twin else obj
        moved = fourier_shift(candidate, subvoxel_shift(candidate, reference))
        a, b = np.abs(moved), np.abs(reference)
        corr = float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))
        if corr > best_corr:
            best, best_corr, best_twin = moved, corr, is_twin
    return best, best_twin


def combine_projections(
    objects: np.ndarray,
    reflections: tuple[Reflection, ...],
    support: np.ndarray,
    want_tensor: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Projections h_j.u / |h_j| (J, nx, ny, nz) nm from aligned objects' unwrapped phases (zero
    mean inside support: each reflection's phase offset is free), and u (3, nx, ny, nz) nm by
    per-voxel least squares; NaN outside support. Without want_tensor a set of rank < 3 gives
    the minimum-norm u (0 along the directions no reflection sees)."""
    projections = np.stack(
        [
            displacement_along_h(np.angle(o), support, float(np.linalg.norm(r.h_nm)))
            for o, r in zip(objects, reflections, strict=True)
        ]
    )
    h = np.stack([r.h_nm for r in reflections])
    return projections, least_squares_displacement(projections, h, full_rank=want_tensor)


def combine_reconstructions(
    objects: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    *,
    reference: np.ndarray | None = None,
    want_tensor: bool = True,
) -> IndependentResult:
    """The classic route from finished single-reflection reconstructions: each complex object
    (its conjugate grid (N0, N1, N2), centred like Reconstruction.obj or a merged group) is
    brought to the sample frame, aligned (twin, translation) to reference (a sample-grid
    amplitude; None: the first reflection's), and h_j.u = projections is solved per voxel.

    The common support is where at least half of the aligned objects' support_of holds.
    want_tensor: refuse a set of rank < 3 (else its minimum-norm u).
    """
    check_reflection_set(reflections, want_tensor)
    aligned, twins = [], []
    for j, (r, obj) in enumerate(zip(reflections, objects, strict=True)):
        moved = to_common_frame(np.asarray(obj), r, grid)
        if reference is None and j == 0:
            reference = np.abs(moved)
        moved, twinned = bring_to_reference(moved, reference)
        aligned.append(moved)
        twins.append(twinned)
    aligned = np.stack(aligned)
    # a majority vote: the intersection loses a voxel shell wherever one reconstruction's edge
    # is a little inside (measured: a joint AD started from it is worse)
    support = np.mean([support_of(o) for o in aligned], axis=0) >= 0.5
    projections, u = combine_projections(aligned, reflections, support, want_tensor)
    return IndependentResult(grid, aligned, projections, support, u, tuple(twins))


def independent_route(
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    params: ReconParams,
    *,
    key: jax.Array,
    masks: tuple[np.ndarray | None, ...] | None = None,
    reference: np.ndarray | None = None,
) -> IndependentResult:
    """Reconstruct each reflection alone (recon.pipeline.reconstruct, one key each from key),
    then combine_reconstructions."""
    check_reflection_set(reflections, want_tensor=True)
    masks = masks or (None,) * len(intensities)
    keys = jax.random.split(key, len(reflections))
    objects = tuple(
        reconstruct(np.asarray(intensity), mask, r.geometry, params, key=keys[j]).obj
        for j, (r, intensity, mask) in enumerate(zip(reflections, intensities, masks, strict=True))
    )
    return combine_reconstructions(objects, reflections, grid, reference=reference)


def joint_from_independent(
    classic: IndependentResult,
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    *,
    masks: tuple[np.ndarray | None, ...] | None = None,
    options: JointADConfig = JointADConfig(),
    want_tensor: bool = True,
) -> JointResult:
    """Joint AD started from the classic route: its common support blurred by 1 voxel as the
    shape, its least-squares u (extended outside the support by the nearest inside value, so
    that the start has no step at the support's edge) as the displacement."""
    start = np.asarray(
        gaussian_blur(jnp.asarray(classic.support, jnp.float32), jnp.asarray(1.0)), float
    )
    u = classic.displacement_nm
    defined = classic.support & np.all(np.isfinite(u), axis=0)
    nearest = distance_transform_edt(~defined, return_distances=False, return_indices=True)
    u0 = u[(slice(None), *nearest)]
    return reconstruct_joint(
        intensities,
        reflections,
        classic.grid,
        start,
        options=options,
        displacement_nm=u0,
        masks=masks,
        want_tensor=want_tensor,
    )
