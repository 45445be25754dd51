"""Projection phase retrieval: ER, HIO and RAAR with shrink-wrap, optionally partially coherent.

One jitted loop serves every block of a recipe: the algorithm is a traced code, so a whole
recipe compiles once per problem shape. With P the modulus projection and psi the iterate,
every algorithm keeps P psi inside the support and sets c0 psi + c1 P psi outside it:
ER (0, 0), HIO (1, -beta), RAAR (beta, 1 - 2 beta) (Luke, Inverse Problems 21, 37, 2005).
Partial coherence is a static switch: off, the compiled loop is the fully coherent one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp

from ..config.recipe import ALGORITHMS
from ..physics.kinematical import far_field
from ..physics.objects import cis, complex_dtype
from .coherence import CoherenceFit, blur, fit_widths


class PRState(NamedTuple):
    """Phase-retrieval state: object (complex, FFT-order grid), support (bool), iteration count.

    widths: coherence-function widths (3,) in pixels, or None for a fully coherent model.
    """

    psi: jax.Array
    support: jax.Array
    iteration: jax.Array
    widths: jax.Array | None = None


@dataclass(frozen=True)
class ShrinkWrapParams:
    """Shrink-wrap schedule: every (iterations), threshold (of max), sigmas (voxels), and the
    first iteration at which the support may change."""

    every: int
    threshold: float
    sigma_start: float
    sigma_end: float
    start: int = 0


def masked(psi: jax.Array, support: jax.Array) -> jax.Array:
    """psi inside the support (bool) and +0 outside (a select, as JAX compiles psi * support;
    a product with the mask cast to complex leaves signed zeros, whose angle, the AD start's
    phase, is pi)."""
    return jnp.where(support, psi, 0)


def modulus_projection(psi: jax.Array, amplitude: jax.Array, measured: jax.Array) -> jax.Array:
    """Replace the far-field modulus by the measured one where measured; keep the phase."""
    f = far_field(psi)
    # scale by a real factor (cast to f's dtype): dividing by the complex modulus would be a
    # full complex division
    power = f.real**2 + f.imag**2
    scale = jnp.where(measured, amplitude * jax.lax.rsqrt(jnp.maximum(power, 1e-30)), 1.0)
    return jnp.fft.ifftn(f * scale.astype(f.dtype), norm="ortho")


def partial_modulus_projection(
    psi: jax.Array, amplitude: jax.Array, measured: jax.Array, widths: jax.Array
) -> jax.Array:
    """Modulus projection against the blurred model: scale F by A / sqrt(I * g) where measured.

    widths: coherence-function widths (3,), pixels (Clark et al. 2012, PyNX's psf mode).
    """
    f = far_field(psi)
    model = blur(f.real**2 + f.imag**2, widths)
    scale = jnp.where(measured, amplitude * jax.lax.rsqrt(jnp.maximum(model, 1e-30)), 1.0)
    return jnp.fft.ifftn(f * scale.astype(f.dtype), norm="ortho")


def gaussian_blur(x: jax.Array, sigma: jax.Array) -> jax.Array:
    """Periodic Gaussian blur of a real 3D array, sigma in voxels (same for each axis)."""
    freqs = jnp.meshgrid(*[jnp.fft.fftfreq(n) for n in x.shape], indexing="ij")
    f2 = sum(f**2 for f in freqs)
    kernel = jnp.exp(-2.0 * (jnp.pi * sigma) ** 2 * f2)
    spectrum = jnp.fft.fftn(x)
    return jnp.fft.ifftn(spectrum * kernel.astype(spectrum.dtype)).real


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
    psi = jnp.fft.ifftn(
        known.astype(complex_dtype(known.dtype)) * cis(phases), norm="ortho"
    ).astype(complex_dtype(amplitude.dtype))
    support = autocorrelation_support(known)
    return PRState(masked(psi, support), support, jnp.asarray(0, jnp.int32))


@jax.jit(static_argnames=("shrinkwrap", "coherence"))
def run_block(
    state: PRState,
    amplitude: jax.Array,
    measured: jax.Array,
    algorithm: jax.Array,
    n_iter: jax.Array,
    beta: jax.Array,
    total_iter: jax.Array,
    shrinkwrap: ShrinkWrapParams,
    raar_beta: jax.Array | float = 0.9,
    coherence: CoherenceFit | None = None,
) -> PRState:
    """Run n_iter iterations of one algorithm (index into ALGORITHMS) with shrink-wrap.

    beta is HIO's feedback, raar_beta RAAR's relaxation. With coherence (a static schedule;
    state.widths then holds the widths) the modulus constraint is applied to the blurred
    model from iteration coherence.start on, and the widths are refitted every coherence.every
    iterations from then on.
    """
    # outside-support coefficients (of psi, of P psi), one row per entry of ALGORITHMS
    dtype = amplitude.dtype
    rows = {
        "ER": jnp.zeros(2, dtype),
        "HIO": jnp.stack([jnp.ones((), dtype), -jnp.asarray(beta, dtype)]),
        "RAAR": jnp.stack([raar_beta, 1 - 2 * jnp.asarray(raar_beta)]).astype(dtype),
    }
    coefficients = jnp.stack([rows[name] for name in ALGORITHMS])[algorithm]

    def body(_, s: PRState) -> PRState:
        if coherence is None:
            p = modulus_projection(s.psi, amplitude, measured)
        else:
            # coherent until coherence.start: the blurred constraint is not a projection, and
            # from a random start it sharpens speckles without bound instead of finding them
            active = s.iteration >= coherence.start
            widths = jnp.where(active, s.widths, 0.0)
            p = partial_modulus_projection(s.psi, amplitude, measured, widths)
        c = coefficients.astype(s.psi.dtype)
        psi = jnp.where(s.support, p, c[0] * s.psi + c[1] * p)
        it = s.iteration + 1
        frac = jnp.clip(it / jnp.maximum(total_iter, 1), 0.0, 1.0)
        sigma = shrinkwrap.sigma_start + frac * (shrinkwrap.sigma_end - shrinkwrap.sigma_start)
        support = jax.lax.cond(
            (it % shrinkwrap.every == 0) & (it >= shrinkwrap.start),
            lambda: shrink_wrap(psi, sigma, shrinkwrap.threshold),
            lambda: s.support,
        )
        widths = s.widths
        if coherence is not None:
            widths = jax.lax.cond(
                (it % coherence.every == 0) & (it >= coherence.start),
                lambda: _refit_widths(
                    masked(psi, s.support), amplitude, measured, s.widths, coherence
                ),
                lambda: s.widths,
            )
        return PRState(psi, support, it, widths)

    return jax.lax.fori_loop(0, n_iter, body, state)


def _refit_widths(
    estimate: jax.Array,
    amplitude: jax.Array,
    measured: jax.Array,
    widths: jax.Array,
    coherence: CoherenceFit,
) -> jax.Array:
    f = far_field(estimate)
    return fit_widths(f.real**2 + f.imag**2, amplitude, measured, widths, coherence.steps)


@jax.jit
def fourier_error(
    psi: jax.Array, amplitude: jax.Array, measured: jax.Array, widths: jax.Array | None = None
) -> jax.Array:
    """Normalised far-field amplitude error sum((|F| - A)^2) / sum(A^2) over measured voxels.

    With coherence widths (3,) px, |F| is the square root of the blurred model intensity.
    """
    f = far_field(psi)
    power = f.real**2 + f.imag**2
    mag = jnp.sqrt(power if widths is None else blur(power, widths))
    num = jnp.sum(jnp.where(measured, (mag - amplitude) ** 2, 0.0))
    return num / jnp.sum(jnp.where(measured, amplitude**2, 0.0))
