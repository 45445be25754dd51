"""Displacement along h and strain along h from a reconstructed phase.

The object is psi = S exp(i phi) with phi = -h.u = -|h| u_z (z along h; physics/geometry.py
fixes the sign, physics/frames.py the axes), so the displacement along h is
u_z = -phi / |h| (nm) and the strain along h is eps_zz = d u_z / d z = -(d phi / d z) / |h|.
For a measured scan h is the measured Q at the Bragg peak and z the crystal frame's z along
it (Geometry.h_nm is the measured |Q|, Geometry.real_basis is given in the crystal frame), so
the strain is relative to the lattice spacing 2 pi / |Q| the scan measured
(Geometry.lattice_strain is that spacing against the material's). strain_along_q and
displacement_along_q take these from the geometry.
Derivatives are taken of exp(i phi), as the angle of
the product of neighbouring unit phasors, never of the wrapped phase itself: a phase that
wraps across pi gives no artefact. The functions work on any grid whose steps are given as
the columns of `basis` (nm): Geometry.real_basis for the conjugate grid, SampleGrid.basis for
an orthogonal one.
"""

from __future__ import annotations

import numpy as np
from skimage.restoration import unwrap_phase

from ..physics.geometry import Geometry


def axis_derivatives(obj: np.ndarray, support: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Phase derivative (rad per voxel) along each grid axis and where it is defined.

    obj: complex (or phase as real) volume (N0, N1, N2); support: bool, same shape.
    Returns (3, N0, N1, N2) float derivatives (central where both neighbours lie in the support,
    one-sided where only one does) and a (3, N0, N1, N2) bool validity mask.
    """
    unit = np.exp(1j * np.angle(obj)) if np.iscomplexobj(obj) else np.exp(1j * obj)
    support = np.asarray(support, bool)
    grads, valid = [], []
    for axis in range(obj.ndim):
        step = np.angle(_forward(unit, axis))
        ok = np.logical_and(
            np.take(support, range(support.shape[axis] - 1), axis=axis),
            np.take(support, range(1, support.shape[axis]), axis=axis),
        )
        pad = [(0, 0)] * obj.ndim
        pad_fwd, pad_bwd = list(pad), list(pad)
        pad_fwd[axis], pad_bwd[axis] = (0, 1), (1, 0)
        fwd, fwd_ok = np.pad(step, pad_fwd), np.pad(ok, pad_fwd)
        bwd, bwd_ok = np.pad(step, pad_bwd), np.pad(ok, pad_bwd)
        count = fwd_ok.astype(float) + bwd_ok
        total = np.where(fwd_ok, fwd, 0.0) + np.where(bwd_ok, bwd, 0.0)
        grads.append(np.where(count > 0, total / np.maximum(count, 1), 0.0))
        valid.append((count > 0) & support)
    return np.stack(grads), np.stack(valid)


def _forward(unit: np.ndarray, axis: int) -> np.ndarray:
    """exp(i (phi[m+1] - phi[m])) along axis, shape N - 1 along that axis."""
    n = unit.shape[axis]
    return np.take(unit, range(1, n), axis=axis) * np.conj(np.take(unit, range(n - 1), axis=axis))


def phase_gradient_z(obj: np.ndarray, support: np.ndarray, basis: np.ndarray) -> np.ndarray:
    """d phi / d z (rad/nm), z along h, on a grid with steps basis (3, 3) columns (nm).

    NaN outside the support and where a needed derivative is undefined. Shape of obj.
    """
    derivs, valid = axis_derivatives(obj, support)
    # phi(A m): d phi/d m_j = a_j . grad phi, so grad phi = A^-T (d phi/d m)
    weights = np.linalg.inv(np.asarray(basis, float).T)[2]
    used = np.abs(weights) > 1e-12 * np.abs(weights).max()
    dz = np.tensordot(weights[used], derivs[used], axes=1)
    ok = np.all(valid[used], axis=0)
    return np.where(ok, dz, np.nan)


def strain_along_h(
    obj: np.ndarray, support: np.ndarray, basis: np.ndarray, h_nm: float
) -> np.ndarray:
    """Strain along h, -(d phi / d z) / |h| (dimensionless); NaN outside the support."""
    return -phase_gradient_z(obj, support, basis) / h_nm


def displacement_along_h(phase: np.ndarray, support: np.ndarray, h_nm: float) -> np.ndarray:
    """Displacement along h (nm): -unwrapped phase / |h|, zero mean inside the support, NaN out.

    The displacement is defined up to a constant (the global phase offset is free).
    """
    support = np.asarray(support, bool)
    if not support.any():
        return np.full(phase.shape, np.nan)
    unwrapped = np.asarray(unwrap_phase(np.ma.masked_array(phase, ~support)).filled(0.0))
    u = -unwrapped / h_nm
    u = u - u[support].mean()
    return np.where(support, u, np.nan)


def strain_along_q(obj: np.ndarray, support: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Strain along the scattering vector (dimensionless) of a conjugate-grid object
    (N0, N1, N2): d u / d z_crystal through Geometry.real_basis, with its |Q|; NaN outside."""
    return strain_along_h(obj, support, geometry.real_basis, geometry.h_nm)


def displacement_along_q(phase: np.ndarray, support: np.ndarray, geometry: Geometry) -> np.ndarray:
    """Displacement along the scattering vector (nm): -unwrapped phase / |Q|, zero mean inside
    the support, NaN outside (displacement_along_h with the geometry's |Q|)."""
    return displacement_along_h(phase, support, geometry.h_nm)
