"""Phase-retrieval transfer function (PRTF) of an ensemble of reconstructions.

PRTF(q) = |<F_k(q)>| / sqrt(I(q)): the modulus of the mean of the members' far fields over the
measured amplitude (Chapman et al., JOSA A 23, 1179, 2006). Where the members agree on the
phase it is near 1; where their phases are random it falls as 1/sqrt(K). It is averaged in
shells of |q| and the resolution is read where it first falls to 1/e.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..physics.geometry import Geometry
from ..physics.kinematical import centred_far_field

THRESHOLD = float(np.exp(-1.0))


@dataclass(frozen=True)
class PRTF:
    """A PRTF in q shells and the resolution it gives.

    q_nm: shell centres (n_shells,), nm^-1 (q includes the 2 pi); prtf: shell values
    (n_shells,); voxels: measured voxels with counts in each shell (n_shells,); q_edge_nm: the
    largest |q| with the whole shell on the detector; q_cutoff_nm: where the PRTF first falls
    to 1/e (nan if it does not within the data); resolution_nm: half-period resolution
    pi / q_cutoff_nm, or pi / q_edge_nm when limited_by_data (the PRTF stays above 1/e).
    """

    q_nm: np.ndarray
    prtf: np.ndarray
    voxels: np.ndarray
    q_edge_nm: float
    q_cutoff_nm: float
    resolution_nm: float
    limited_by_data: bool


def q_magnitude(geometry: Geometry) -> np.ndarray:
    """|q| (nm^-1) of every detector voxel (peak at the array centre), shape geometry.shape."""
    idx = [np.arange(n) - n // 2 for n in geometry.shape]
    m = np.stack(np.meshgrid(*idx, indexing="ij"), axis=-1).astype(float)
    return np.linalg.norm(m @ geometry.q_basis.T, axis=-1)


def q_edge(geometry: Geometry) -> float:
    """Radius (nm^-1) of the largest |q| sphere about the peak inside the (sheared) data."""
    dual = np.linalg.inv(geometry.q_basis)  # row j: the normal of the faces m_j = const
    half = (np.asarray(geometry.shape, float) - 1) / 2
    return float(np.min(half / np.linalg.norm(dual, axis=1)))


def prtf(
    objects: np.ndarray,
    intensity: np.ndarray,
    geometry: Geometry,
    mask: np.ndarray | None = None,
    *,
    n_shells: int | None = None,
) -> PRTF:
    """PRTF of aligned reconstructions against the measured intensity, in |q| shells.

    objects: complex (K, N0, N1, N2) or (N0, N1, N2), on the conjugate grid, aligned to each
    other (twin, translation, ramp and phase offset removed, e.g. by merge.align.align);
    intensity: counts (N0, N1, N2), peak at the array centre; mask: True where ignored.
    Each member's far field is scaled by the least-squares factor onto sqrt(I) (objects carry
    no count scale) before the mean; a shell's value is sum |<F>| / sum sqrt(I) over its
    measured voxels with counts > 0; n_shells defaults to half the smallest axis.
    """
    objects = np.asarray(objects)
    if objects.ndim == 3:
        objects = objects[None]
    intensity = np.asarray(intensity, float)
    if objects.shape[1:] != intensity.shape or intensity.shape != tuple(geometry.shape):
        raise ValueError(
            f"objects {objects.shape[1:]}, intensity {intensity.shape} and geometry "
            f"{tuple(geometry.shape)} shapes differ"
        )
    measured = np.ones(intensity.shape, bool) if mask is None else ~np.asarray(mask, bool)
    used = measured & (intensity > 0)
    amplitude = np.sqrt(np.maximum(intensity, 0.0))
    fields = centred_far_field(objects)
    mags = np.abs(fields)
    scales = np.sum(mags * amplitude * used, axis=(1, 2, 3)) / np.maximum(
        np.sum(mags**2 * used, axis=(1, 2, 3)), 1e-300
    )
    mean = np.abs(np.mean(fields * scales[:, None, None, None], axis=0))

    edge = q_edge(geometry)
    n_shells = n_shells or min(geometry.shape) // 2
    bounds = np.linspace(0.0, edge, n_shells + 1)
    shell = np.digitize(q_magnitude(geometry), bounds) - 1
    inside = used & (shell >= 0) & (shell < n_shells)
    voxels = np.bincount(shell[inside], minlength=n_shells)
    num = np.bincount(shell[inside], weights=mean[inside], minlength=n_shells)
    den = np.bincount(shell[inside], weights=amplitude[inside], minlength=n_shells)
    values = np.where(den > 0, num / np.maximum(den, 1e-300), np.nan)
    centres = 0.5 * (bounds[1:] + bounds[:-1])

    below = np.flatnonzero(values < THRESHOLD)
    if below.size == 0:
        cutoff = float("nan")
        resolution = np.pi / edge
    else:
        i = int(below[0])
        if i == 0:
            cutoff = float(centres[0])
        else:
            # linear interpolation between the last shell above 1/e and the first below
            v0, v1 = values[i - 1], values[i]
            cutoff = float(
                centres[i - 1] + (v0 - THRESHOLD) / (v0 - v1) * (centres[i] - centres[i - 1])
            )
        resolution = np.pi / cutoff
    return PRTF(
        q_nm=centres,
        prtf=values,
        voxels=voxels,
        q_edge_nm=edge,
        q_cutoff_nm=cutoff,
        resolution_nm=float(resolution),
        limited_by_data=below.size == 0,
    )
