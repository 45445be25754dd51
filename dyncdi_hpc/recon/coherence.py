"""Partial coherence: the modelled intensity convolved with a 3D Gaussian coherence function.

The measured intensity of a partially coherent beam is the coherent |DFT(psi)|^2 convolved with
the Fourier transform of the beam's complex degree of coherence (Clark et al., Nat. Commun. 3,
993, 2012). Here that function is a 3D Gaussian with one width per detector axis (rocking,
row, column), in detector pixels, normalised to unit sum, so the convolution keeps the total
intensity. Intensities are in FFT order (zero frequency at index 0) and the convolution is
periodic, computed as a product with the Gaussian's transfer function on the real-space grid.
"""

from __future__ import annotations

from dataclasses import dataclass

import jax
import jax.numpy as jnp

# the widths a fit may reach (pixels): below the lower bound the blur is invisible
MIN_WIDTH = 0.05
MAX_WIDTH_FRACTION = 0.25


@dataclass(frozen=True)
class CoherenceFit:
    """Static schedule of the width fit in ER/HIO/RAAR: every and from which iteration, LM steps."""

    every: int
    start: int
    steps: int = 8


def transfer(shape: tuple[int, ...], widths: jax.Array) -> jax.Array:
    """Transfer function of the Gaussian (widths (3,), pixels) on the rfftn grid of shape."""
    freqs = [jnp.fft.fftfreq(n) for n in shape[:-1]] + [jnp.fft.rfftfreq(shape[-1])]
    arg = 0.0
    for axis, f in enumerate(freqs):
        view = [1] * len(shape)
        view[axis] = f.size
        arg = arg + (widths[axis] * f.astype(widths.dtype)).reshape(view) ** 2
    return jnp.exp(-2.0 * jnp.pi**2 * arg)


def central_weight(shape: tuple[int, ...], widths: jax.Array) -> jax.Array:
    """Weight of the kernel's central pixel (1 for zero widths), a scalar."""
    weight = 1.0
    for axis, n in enumerate(shape):
        f = jnp.fft.fftfreq(n).astype(widths.dtype)
        weight = weight * jnp.mean(jnp.exp(-2.0 * jnp.pi**2 * (widths[axis] * f) ** 2))
    return weight


def blur(intensity: jax.Array, widths: jax.Array) -> jax.Array:
    """Intensity (real, >= 0, FFT order, (N0, N1, N2)) convolved with the Gaussian of widths
    (3,) px.

    The FFT's rounding (relative to the brightest voxel) would swamp the faint voxels, many
    decades down, and a modulus constraint divides by them: the result is floored at the
    bound every non-negative intensity obeys, the central weight times the intensity itself.
    """
    spectrum = jnp.fft.rfftn(intensity)
    spectrum = spectrum * transfer(intensity.shape, widths).astype(spectrum.dtype)
    smooth = jnp.fft.irfftn(spectrum, s=intensity.shape)
    return jnp.maximum(smooth, central_weight(intensity.shape, widths) * intensity)


def width_bounds(shape: tuple[int, ...]) -> tuple[float, jax.Array]:
    """Lower bound (pixels) and per-axis upper bounds (a quarter of each axis) of the widths."""
    return MIN_WIDTH, MAX_WIDTH_FRACTION * jnp.asarray(shape, jnp.float32)


def _residuals(
    log_widths: jax.Array, coherent: jax.Array, amplitude: jax.Array, measured: jax.Array
) -> jax.Array:
    """Amplitude residuals (measured voxels, flattened) of the blurred model at its best scale."""
    model = jnp.sqrt(blur(coherent, jnp.exp(log_widths)) + 1e-30)
    model = jnp.where(measured, model, 0.0)
    scale = jnp.sum(model * amplitude) / jnp.maximum(jnp.sum(model * model), 1e-30)
    return jnp.where(measured, scale * model - amplitude, 0.0).ravel()


def fit_widths(
    coherent: jax.Array,
    amplitude: jax.Array,
    measured: jax.Array,
    widths: jax.Array,
    steps: int = 8,
) -> jax.Array:
    """Widths (3,) px that best blur the coherent intensity onto the measured amplitudes.

    A few Levenberg-Marquardt steps on the log-widths, from `widths`, of the amplitude misfit
    over measured voxels with the global scale solved in closed form; traceable (no host
    copies), so it runs inside the compiled projection loop.
    coherent: |DFT(psi)|^2 (FFT order); amplitude: measured sqrt(I); measured: bool mask.
    """
    lo, hi = width_bounds(coherent.shape)
    log_lo, log_hi = jnp.log(lo), jnp.log(hi).astype(widths.dtype)

    def resid(t):
        return _residuals(t, coherent, amplitude, measured)

    def cost(t):
        r = resid(t)
        return jnp.sum(r * r)

    def body(_, carry):
        theta, lam, current = carry
        r = resid(theta)
        jac = jax.jacfwd(resid)(theta)
        grad = jac.T @ r
        hess = jac.T @ jac
        damped = hess + lam * jnp.diag(jnp.diag(hess)) + 1e-12 * jnp.eye(theta.size)
        trial = jnp.clip(theta - jnp.linalg.solve(damped, grad), log_lo, log_hi)
        trial_cost = cost(trial)
        better = trial_cost < current
        return (
            jnp.where(better, trial, theta),
            jnp.where(better, lam * 0.3, lam * 10.0),
            jnp.where(better, trial_cost, current),
        )

    theta0 = jnp.log(widths)
    lam0 = jnp.asarray(1e-2, widths.dtype)
    theta, _, _ = jax.lax.fori_loop(0, steps, body, (theta0, lam0, cost(theta0)))
    return jnp.exp(theta)
