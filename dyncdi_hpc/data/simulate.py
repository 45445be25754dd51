"""Simulated BCDI datasets: a faceted crystal with a smooth displacement and its Bragg peak."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config import CrystalConfig, DisplacementConfig, SimulateConfig
from ..errors import DyncdiError
from ..physics.geometry import Geometry
from ..physics.kinematical import centred_far_field
from .measurement import Truth


@dataclass(frozen=True)
class SimulatedData:
    """Intensities (counts, peak at the array centre), mask and ground truth of one scan."""

    geometry: Geometry
    intensity: np.ndarray
    truth: Truth


def _rotation_to_z(direction: np.ndarray) -> np.ndarray:
    """Rotation matrix (3, 3) that maps the unit vector along direction onto +z."""
    v = direction / np.linalg.norm(direction)
    z = np.array([0.0, 0.0, 1.0])
    axis = np.cross(v, z)
    s, c = np.linalg.norm(axis), float(v @ z)
    if s < 1e-12:
        return np.eye(3) if c > 0 else np.diag([1.0, -1.0, -1.0])
    k = axis / s
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + s * kx + (1 - c) * kx @ kx


def crystal_shape(
    positions_nm: np.ndarray, cfg: CrystalConfig, hkl: tuple[int, int, int], voxel_nm: float
) -> np.ndarray:
    """Fraction of each voxel inside the crystal, in [0, 1], shape positions.shape[:-1].

    Faceted: {111} facets at size/2 and {100} facets at truncation*size/2 from the centre,
    each moved by a random fraction (up to facet_jitter) as in grown crystals, with the
    crystal's [hkl] along the sample z axis; edges are ramped over one voxel so the sampled
    shape is free of staircase aliasing.
    """
    r = positions_nm / np.asarray(cfg.aspect)
    if cfg.kind == "ellipsoid":
        distance = cfg.size_nm / 2 - np.linalg.norm(r, axis=-1)
    else:
        rot = _rotation_to_z(np.asarray(hkl, dtype=float))
        normals_111 = np.array([[1, 1, 1], [1, 1, -1], [1, -1, 1], [-1, 1, 1]]) / np.sqrt(3)
        normals_100 = np.eye(3)
        normals = np.concatenate([normals_111, normals_100]) @ rot.T
        normals = np.concatenate([normals, -normals])
        limits = np.array(([cfg.size_nm / 2] * 4 + [cfg.truncation * cfg.size_nm / 2] * 3) * 2)
        jitter = np.random.default_rng(cfg.seed).uniform(-1, 1, limits.size) * cfg.facet_jitter
        distance = np.min(limits * (1 + jitter) - r @ normals.T, axis=-1)
    return np.clip(distance / voxel_nm + 0.5, 0.0, 1.0)


def displacement_phase(
    positions_nm: np.ndarray, support: np.ndarray, cfg: DisplacementConfig, size_nm: float
) -> np.ndarray:
    """Smooth object phase -h.u (rad): Gaussian lobes of random sign, peak-to-peak range."""
    if cfg.kind == "none" or cfg.phase_range_rad == 0:
        return np.zeros(positions_nm.shape[:-1])
    rng = np.random.default_rng(cfg.seed)
    phase = np.zeros(positions_nm.shape[:-1])
    for _ in range(cfg.n_lobes):
        centre = rng.uniform(-0.3, 0.3, size=3) * size_nm
        width = rng.uniform(0.25, 0.45) * size_nm
        sign = rng.choice([-1.0, 1.0])
        d2 = np.sum((positions_nm - centre) ** 2, axis=-1)
        phase += sign * np.exp(-d2 / (2 * width**2))
    inside = phase[support]
    span = inside.max() - inside.min()
    phase = (phase - inside.mean()) * (cfg.phase_range_rad / span if span > 0 else 0.0)
    return phase


def check_oversampling(support: np.ndarray, shape: tuple[int, ...]) -> None:
    """Raise a DyncdiError unless the support spans between 1 voxel and half of each axis."""
    for axis, n in enumerate(shape):
        occupied = np.flatnonzero(support.any(axis=tuple(a for a in range(3) if a != axis)))
        extent = 0 if occupied.size == 0 else occupied[-1] - occupied[0] + 1
        if extent == 0:
            raise DyncdiError(
                "simulate.crystal.size_nm",
                "the crystal is smaller than one voxel",
                "increase size_nm or decrease geometry.detector_distance_m",
            )
        if extent > n // 2:
            raise DyncdiError(
                "simulate.crystal.size_nm",
                f"the crystal spans {extent} of {n} voxels along grid axis {axis}: "
                "oversampling below 2, phase retrieval cannot work",
                "reduce size_nm, or increase geometry.shape or geometry.detector_distance_m",
            )


def simulate(cfg: SimulateConfig, geometry: Geometry) -> SimulatedData:
    """Simulate one scan: shape and phase on the conjugate grid, |DFT|^2 scaled, Poisson noise."""
    positions = geometry.voxel_positions_nm()
    voxel = float(min(geometry.voxel_size_nm))
    amplitude = crystal_shape(positions, cfg.crystal, geometry.hkl, voxel)
    support = amplitude > 0.5
    check_oversampling(support, geometry.shape)
    phase = displacement_phase(positions, support, cfg.displacement, cfg.crystal.size_nm)
    intensity = np.abs(centred_far_field(amplitude * np.exp(1j * phase))) ** 2
    intensity *= cfg.peak_counts / intensity.max()
    if cfg.noise:
        intensity = np.random.default_rng(cfg.noise_seed).poisson(intensity).astype(float)
    truth = Truth(
        amplitude=amplitude,
        phase=np.where(amplitude > 0, phase, 0.0),
        support=support,
        displacement_nm=np.where(amplitude > 0, geometry.displacement_nm(phase), 0.0),
    )
    return SimulatedData(geometry=geometry, intensity=intensity.astype(np.float32), truth=truth)
