"""One reconstruction from measured intensities: recipe of ER/HIO, then AD refinement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np

from ..config import ReconParams
from ..errors import TaskFailed
from ..merge.align import support_of
from ..physics.geometry import Geometry
from ..physics.kinematic import CrystalParams, shape_of
from .losses import LOSSES
from .optimise import ADParams, Hyper, Problem, StepConfig, confined, model_intensity, refine
from .projections import (
    ShrinkWrapParams,
    fourier_error,
    gaussian_blur,
    random_start,
    run_block,
)
from .recipe import ALGORITHMS, parse_recipe

Progress = Callable[[str, int, float], None]


@dataclass(frozen=True)
class Reconstruction:
    """A finished reconstruction, centred on the array, on the conjugate grid (N0, N1, N2)."""

    obj: np.ndarray
    support: np.ndarray
    pr_error: np.ndarray
    ad_loss: np.ndarray
    metrics: dict[str, float]


def to_fft_order(x: np.ndarray) -> np.ndarray:
    """Peak-centred detector array -> FFT order (zero frequency at index 0)."""
    return np.fft.ifftshift(x)


def centre_roll(support: np.ndarray) -> tuple[int, ...]:
    """Integer roll that moves the (periodic) centre of mass of support to the array centre."""
    shifts = []
    for axis, n in enumerate(support.shape):
        profile = support.sum(axis=tuple(a for a in range(support.ndim) if a != axis))
        angle = np.angle(np.sum(profile * np.exp(2j * np.pi * np.arange(n) / n)))
        shifts.append(int(n // 2 - np.round(angle * n / (2 * np.pi))) % n)
    return tuple(shifts)


def phase_retrieval(
    key: jax.Array,
    amplitude: jax.Array,
    measured: jax.Array,
    params: ReconParams,
    progress: Progress | None = None,
) -> tuple[jax.Array, jax.Array, np.ndarray]:
    """Run the recipe from a random start; returns object, support and the error history."""
    blocks = parse_recipe(params.recipe)
    total = sum(n for _, n in blocks)
    sw = params.shrinkwrap
    shrinkwrap = ShrinkWrapParams(sw.every, sw.threshold, sw.sigma_start, sw.sigma_end)
    state = random_start(key, amplitude, measured)
    errors = []
    done = 0
    for name, n in blocks:
        remaining = n
        while remaining > 0:
            chunk = min(params.log_every, remaining)
            state = run_block(
                state,
                amplitude,
                measured,
                jnp.asarray(ALGORITHMS.index(name)),
                jnp.asarray(chunk),
                jnp.asarray(params.hio_beta, amplitude.dtype),
                jnp.asarray(total),
                shrinkwrap,
            )
            remaining -= chunk
            done += chunk
            err = float(fourier_error(state.psi * state.support, amplitude, measured))
            if not np.isfinite(err):
                raise TaskFailed(f"phase retrieval error became non-finite at iteration {done}")
            if not bool(jnp.any(state.support)):
                raise TaskFailed(
                    f"the support vanished at iteration {done}: lower shrinkwrap.threshold"
                )
            errors.append(err)
            if progress is not None:
                progress(name, done, err)
    return state.psi * state.support, state.support, np.asarray(errors)


def ad_start(psi: jax.Array, support: jax.Array, data: jax.Array, measured: jax.Array) -> ADParams:
    """AD start from a projection result: logits from |psi|, its phase, least-squares scale."""
    mag = jnp.abs(psi)
    level = jnp.quantile(jnp.where(support, mag, 0.0), 0.97)
    level = jnp.where(level > 0, level, jnp.max(mag))
    frac = jnp.clip(mag / level, 0.02, 0.98)
    crystal = CrystalParams(logits=jnp.log(frac / (1 - frac)), phase=jnp.angle(psi))
    model = jnp.abs(jnp.fft.fftn(shape_of(crystal) * jnp.exp(1j * crystal.phase), norm="ortho"))
    ratio = jnp.sum(jnp.where(measured, data, 0.0)) / jnp.sum(jnp.where(measured, model**2, 0.0))
    log_scale = 0.5 * jnp.log(ratio)
    return ADParams(crystal=crystal, log_scale=log_scale.astype(data.dtype))


def reconstruct(
    intensity: np.ndarray,
    mask: np.ndarray | None,
    geometry: Geometry,
    params: ReconParams,
    *,
    key: jax.Array,
    progress: Progress | None = None,
) -> Reconstruction:
    """Reconstruct a crystal from peak-centred intensities (N0, N1, N2); mask True = ignored."""
    if intensity.shape != geometry.shape:
        raise ValueError(f"intensity shape {intensity.shape} != geometry shape {geometry.shape}")
    data = jnp.asarray(to_fft_order(intensity))
    measured = jnp.asarray(
        to_fft_order(np.ones(intensity.shape, bool) if mask is None else ~np.asarray(mask, bool))
    )
    amplitude = jnp.sqrt(data)
    pr_key, _ = jax.random.split(key)
    psi, support, pr_error = phase_retrieval(pr_key, amplitude, measured, params, progress)

    cfg = StepConfig(
        geometry=geometry,
        model=params.model,
        loss=params.loss,
        lr_shape=params.lr_shape,
        lr_phase=params.lr_phase,
        lr_scale=params.lr_scale,
    )
    start = ad_start(psi, support, data, measured)
    loose_support = gaussian_blur(support.astype(data.dtype), jnp.asarray(1.0)) > 0.1
    problem = Problem(data=data, measured=measured, support=loose_support)
    hyper = Hyper(tv_weight=jnp.asarray(params.tv_weight, data.dtype))

    def report(step, _params, _state):
        if progress is not None:
            progress("AD", step, float("nan"))

    fitted, _, ad_loss = refine(
        start, problem, hyper, cfg, params.ad_steps, params.log_every, on_chunk=report
    )
    model = model_intensity(fitted, loose_support, cfg)
    scale = float(jnp.exp(fitted.log_scale))
    if params.ad_steps > 0:
        crystal = confined(fitted.crystal, loose_support)
        obj = np.asarray(shape_of(crystal) * jnp.exp(1j * crystal.phase))
        final_support = support_of(obj)
    else:
        obj = np.asarray(psi)
        final_support = support_of(obj)
        model = jnp.abs(jnp.fft.fftn(psi, norm="ortho")) ** 2
        scale = 1.0
    error = float(jnp.sum(jnp.where(measured, (jnp.sqrt(model) - amplitude) ** 2, 0.0)))
    error /= float(jnp.sum(jnp.where(measured, data, 0.0)))
    loss = float(LOSSES[params.loss](model, data, measured))
    if not (np.isfinite(error) and np.isfinite(loss)):
        raise TaskFailed("final model intensity is not finite")
    shifts = centre_roll(final_support)
    obj = np.roll(obj, shifts, axis=(0, 1, 2))
    final_support = np.roll(final_support, shifts, axis=(0, 1, 2))
    return Reconstruction(
        obj=obj,
        support=final_support,
        pr_error=pr_error,
        ad_loss=ad_loss,
        metrics={
            "error": error,
            "loss": loss,
            "scale": scale,
            "support_voxels": int(final_support.sum()),
            "pr_iterations": int(sum(n for _, n in parse_recipe(params.recipe))),
            "ad_steps": int(params.ad_steps),
        },
    )
