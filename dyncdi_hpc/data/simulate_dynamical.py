"""Simulated BCDI datasets with the dynamical (two-beam Takagi-Taupin) forward model.

The crystal and displacement are simulate()'s; the intensity is dynamical.forward of the
truth at the scan's rocking angles shifted by an absolute rocking offset (default the refraction
shift -Re chi0 / sin 2thetaB, so that the scan is centred on the measured, refracted peak as an
experimenter would centre it), scaled to peak counts, optionally with a constant background and
Poisson noise.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..config import SimulateConfig
from ..physics import dynamical
from ..physics.geometry import Geometry
from ..physics.objects import CrystalParams, logits_of
from .simulate import SimulatedData, simulate


@dataclass(frozen=True)
class DynamicalData:
    """A dynamical scan: data (intensity peak-centred, truth as simulate()'s), the absolute
    rocking offset (rad) it was computed at, the scale (counts per unit of the model's
    kinematical-scale intensity) and the background (counts per voxel) added."""

    data: SimulatedData
    rocking_offset_rad: float
    scale: float
    background: float


def truth_params(data: SimulatedData, dtype=jnp.float64) -> CrystalParams:
    """The truth as model parameters: logits of the amplitude (+-inf at 1 and 0) and the phase.

    Centred on the grid as the truth is (not in FFT order): the march is not periodic, so the
    crystal must not wrap around the grid's faces; a translation changes no intensity.
    """
    logits = logits_of(data.truth.amplitude)
    return CrystalParams(jnp.asarray(logits, dtype), jnp.asarray(data.truth.phase, dtype))


def simulate_dynamical(
    cfg: SimulateConfig,
    geometry: Geometry,
    *,
    options: dynamical.DynamicalOptions | None = None,
    rocking_offset_rad: float | None = None,
    background: float = 0.0,
) -> DynamicalData:
    """Simulate one scan with the dynamical model (float64), the crystal of simulate(cfg).

    options: the march's settings (None: the defaults, with the march box around the crystal);
    rocking_offset_rad: absolute offset of the scan's angles (None: the refraction shift).
    Peak counts and noise follow cfg (the background is added before the noise).
    """
    base = simulate(cfg.model_copy(update={"noise": False}), geometry)
    if options is None:
        box = dynamical.support_box(base.truth.amplitude > 0, margin=1)
        options = dynamical.DynamicalOptions(box=box)
    offset = rocking_offset_rad
    if offset is None:
        offset = dynamical.refraction_shift_rad(geometry)
    with jax.enable_x64(True):
        model = dynamical.forward(truth_params(base), geometry, options, offset)
        intensity = np.fft.fftshift(np.asarray(model, float))
    scale = cfg.peak_counts / intensity.max()
    intensity = intensity * scale + background
    if cfg.noise:
        intensity = np.random.default_rng(cfg.noise_seed).poisson(intensity).astype(float)
    data = SimulatedData(
        geometry=geometry, intensity=intensity.astype(np.float32), truth=base.truth
    )
    return DynamicalData(data, float(offset), float(scale), float(background))
