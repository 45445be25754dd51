"""Projection phase retrieval: error reduction (ER) and hybrid input-output (HIO) with shrink-wrap.

One jitted loop serves every block of a recipe: the algorithm is a traced code, so a whole
recipe compiles once per problem shape.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..physics.kinematic import far_field
from .recipe import ALGORITHMS


class PRState(NamedTuple):
    """Phase-retrieval state: object (complex, FFT-order grid), support (bool), iteration count."""

    psi: jax.Array
    support: jax.Array
    iteration: jax.Array


class ShrinkWrapParams(NamedTuple):
    """Shrink-wrap schedule: every (iterations), threshold (of max), sigmas (voxels)."""

    every: int
    threshold: float
    sigma_start: float
    sigma_end: float


def modulus_projection(psi: jax.Array, amplitude: jax.Array, measured: jax.Array) -> jax.Array:
    """Replace the far-field modulus by the measured one where measured; keep the phase."""
    f = far_field(psi)
    # a real scale on re and im: a complex/real division would become a full complex division
    power = f.real**2 + f.imag**2
    scale = jnp.where(measured, amplitude * jax.lax.rsqrt(jnp.maximum(power, 1e-30)), 1.0)
    return jnp.fft.ifftn(f * scale.astype(f.real.dtype), norm="ortho")


def gaussian_blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
    """Periodic Gaussian blur of a real 3D array, sigma in voxels (same for each axis)."""
    freqs = jnp.meshgrid(*[jnp.fft.fftfreq(n) for n in x.shape], indexing="ij")
    f2 = sum(f**2 for f in freqs)
    kernel = jnp.exp(-2.0 * (jnp.pi * sigma) ** 2 * f2)
    return jnp.fft.ifftn(jnp.fft.fftn(x) * kernel).real


def shrink_wrap(psi: jax.Array, sigma: jax.Array, threshold: float) -> jax.Array:
    """New support: blurred |psi| above threshold times its maximum."""
    blurred = gaussian_blur(jnp.abs(psi), sigma)
    return blurred > threshold * jnp.max(blurred)


def autocorrelation_support(amplitude: jax.Array, threshold: float = 0.2) -> jax.Array:
    """Initial support (FFT-order grid): the thresholded autocorrelation |IDFT(I)|, halved.

    The autocorrelation's support is the object's support dilated by itself, about twice the
    crystal; contracting it by 2 about the origin gives a support of about the crystal's size,
    which makes far fewer random starts stagnate than the full autocorrelation does.
    """
    ac = jnp.abs(jnp.fft.ifftn(amplitude**2))
    full = gaussian_blur(ac, jnp.asarray(1.0)) > threshold * jnp.max(ac)
    for axis, n in enumerate(ac.shape):
        freq = jnp.fft.fftfreq(n)
        doubled = jnp.round(2 * freq * n).astype(jnp.int32) % n
        full = jnp.take(full, doubled, axis=axis)
        shape = [1] * ac.ndim
        shape[axis] = n
        full = full & (jnp.abs(freq) < 0.25).reshape(shape)
    return full


def random_start(key: jax.Array, amplitude: jax.Array, measured: jax.Array) -> PRState:
    """Measured amplitudes with random phases, back-propagated; autocorrelation support."""
    phases = jax.random.uniform(key, amplitude.shape, minval=0.0, maxval=2 * jnp.pi)
    known = jnp.where(measured, amplitude, 0.0)
    psi = jnp.fft.ifftn(known * jnp.exp(1j * phases), norm="ortho").astype(
        jnp.result_type(amplitude.dtype, jnp.complex64)
    )
    support = autocorrelation_support(known)
    return PRState(psi * support, support, jnp.asarray(0, jnp.int32))


@jax.jit(static_argnames="shrinkwrap")
def run_block(
    state: PRState,
    amplitude: jax.Array,
    measured: jax.Array,
    algorithm: jax.Array,
    n_iter: jax.Array,
    beta: jax.Array,
    total_iter: jax.Array,
    shrinkwrap: ShrinkWrapParams,
) -> PRState:
    """Run n_iter iterations of one algorithm (index into ALGORITHMS) with shrink-wrap."""
    is_hio = algorithm == ALGORITHMS.index("HIO")

    def body(_, s: PRState) -> PRState:
        p = modulus_projection(s.psi, amplitude, measured)
        outside = jnp.where(is_hio, s.psi - beta * p, 0.0)
        psi = jnp.where(s.support, p, outside)
        it = s.iteration + 1
        frac = jnp.clip(it / jnp.maximum(total_iter, 1), 0.0, 1.0)
        sigma = shrinkwrap.sigma_start + frac * (shrinkwrap.sigma_end - shrinkwrap.sigma_start)
        support = jax.lax.cond(
            it % shrinkwrap.every == 0,
            lambda: shrink_wrap(psi, sigma, shrinkwrap.threshold),
            lambda: s.support,
        )
        return PRState(psi, support, it)

    return jax.lax.fori_loop(0, n_iter, body, state)


@jax.jit
def fourier_error(psi: jax.Array, amplitude: jax.Array, measured: jax.Array) -> jax.Array:
    """Normalised far-field amplitude error sum((|F| - A)^2) / sum(A^2) over measured voxels."""
    mag = jnp.abs(far_field(psi))
    num = jnp.sum(jnp.where(measured, (mag - amplitude) ** 2, 0.0))
    return num / jnp.sum(jnp.where(measured, amplitude**2, 0.0))
