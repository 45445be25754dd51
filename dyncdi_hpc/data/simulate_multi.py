"""Several reflections of one simulated crystal with a known displacement vector field u(r).

Frames as in physics/resample.py: the crystal, its shape and u (nm) are defined in the sample
frame (the crystal's cubic axes); reflection j's scan sees the crystal turned by R_j. Each
scan's object is evaluated analytically at its own conjugate-grid voxels (not resampled from
the sample grid, so a reconstruction through the trilinear resampler is no inverse crime):
psi_j(m) = S(r) exp(-i h_j.u(r)) at r = R_j^T A_j (m - N // 2).
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..config import CrystalConfig, VectorDisplacementConfig
from ..errors import DyncdiError
from ..physics import dynamical
from ..physics.frames import SampleGrid
from ..physics.kinematical import centred_far_field
from ..physics.objects import CrystalParams, logits_of
from ..physics.resample import Reflection, check_reflections, conjugate_positions_sample_nm
from .measurement import Truth
from .simulate import check_oversampling, crystal_shape

# the crystal's own axes: crystal_shape puts its [hkl] along z, so [001] keeps the cube axes
CRYSTAL_AXES_HKL = (0, 0, 1)

DEFAULT_CRYSTAL = CrystalConfig(size_nm=800.0)


@dataclass(frozen=True)
class SampleTruth:
    """Ground truth on the common sample grid: shape (nx, ny, nz) in [0, 1], support (bool),
    displacement (3, nx, ny, nz) nm (components along the sample x, y, z)."""

    grid: SampleGrid
    amplitude: np.ndarray
    support: np.ndarray
    displacement_nm: np.ndarray


@dataclass(frozen=True)
class MultiSimulated:
    """Peak-centred intensities (counts) of each reflection, their conjugate-grid truths (phase
    -h_j.u, displacement along h_j) and the sample-frame truth."""

    reflections: tuple[Reflection, ...]
    intensities: tuple[np.ndarray, ...]
    truths: tuple[Truth, ...]
    truth: SampleTruth
    model: str


def displacement_field(
    positions_nm: np.ndarray, cfg: VectorDisplacementConfig, size_nm: float
) -> np.ndarray:
    """u at sample-frame positions (..., 3) nm, shape (3, ...) nm."""
    rng = np.random.default_rng(cfg.seed)
    u = np.zeros((3, *positions_nm.shape[:-1]))
    for k in range(3):
        for _ in range(cfg.n_lobes):
            centre = rng.uniform(-0.3, 0.3, size=3) * size_nm
            width = rng.uniform(0.25, 0.45) * size_nm
            sign = rng.choice([-1.0, 1.0])
            d2 = np.sum((positions_nm - centre) ** 2, axis=-1)
            u[k] += sign * cfg.amplitude_nm * np.exp(-d2 / (2 * width**2))
    return u


def sample_truth(
    grid: SampleGrid, crystal: CrystalConfig, displacement: VectorDisplacementConfig
) -> SampleTruth:
    """Shape and u of the crystal on the sample grid."""
    positions = grid.positions_nm()
    amplitude = crystal_shape(positions, crystal, CRYSTAL_AXES_HKL, grid.voxel_nm)
    u = displacement_field(positions, displacement, crystal.size_nm)
    support = amplitude > 0.5
    return SampleTruth(grid, amplitude, support, np.where(amplitude > 0, u, 0.0))


def _dynamical_intensity(amplitude: np.ndarray, phase: np.ndarray, reflection: Reflection):
    """Dynamical intensity (float64, centred) of one scan at the refraction-shifted angles."""
    geometry = reflection.geometry
    box = dynamical.support_box(amplitude > 0, margin=1)
    options = dynamical.DynamicalOptions(box=box)
    offset = dynamical.refraction_shift_rad(geometry)
    with jax.enable_x64(True):
        params = CrystalParams(jnp.asarray(logits_of(amplitude)), jnp.asarray(phase, jnp.float64))
        model = dynamical.forward(params, geometry, options, offset)
        return np.fft.fftshift(np.asarray(model, float))


def simulate_multi(
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    *,
    crystal: CrystalConfig = DEFAULT_CRYSTAL,
    displacement: VectorDisplacementConfig = VectorDisplacementConfig(),
    model: str = "kinematical",
    peak_counts: float = 1e5,
    noise: bool = False,
    noise_seed: int = 0,
) -> MultiSimulated:
    """Simulate every reflection's scan of one crystal; each scan scaled to peak_counts.

    model: "kinematical" (|DFT|^2) or "dynamical" (physics.dynamical, float64, at the refraction
    shift so that each scan is centred on its measured peak). Poisson noise when noise.
    """
    check_reflections(reflections)
    if model not in ("kinematical", "dynamical"):
        raise DyncdiError("model", f"unknown model {model!r}", "use kinematical or dynamical")
    rng = np.random.default_rng(noise_seed)
    intensities, truths = [], []
    for reflection in reflections:
        geometry = reflection.geometry
        r = conjugate_positions_sample_nm(geometry, reflection.rotation)
        voxel = float(min(geometry.voxel_size_nm))
        amplitude = crystal_shape(r, crystal, CRYSTAL_AXES_HKL, voxel)
        support = amplitude > 0.5
        check_oversampling(support, geometry.shape)
        u = displacement_field(r, displacement, crystal.size_nm)
        phase = -np.tensordot(reflection.h_nm, u, axes=1)
        if model == "dynamical":
            intensity = _dynamical_intensity(amplitude, phase, reflection)
        else:
            intensity = np.abs(centred_far_field(amplitude * np.exp(1j * phase))) ** 2
        intensity = intensity * (peak_counts / intensity.max())
        if noise:
            intensity = rng.poisson(intensity).astype(float)
        intensities.append(intensity.astype(np.float32))
        truths.append(
            Truth(
                amplitude=amplitude,
                phase=np.where(amplitude > 0, phase, 0.0),
                support=support,
                displacement_nm=np.where(amplitude > 0, geometry.displacement_nm(phase), 0.0),
            )
        )
    return MultiSimulated(
        reflections=tuple(reflections),
        intensities=tuple(intensities),
        truths=tuple(truths),
        truth=sample_truth(grid, crystal, displacement),
        model=model,
    )
