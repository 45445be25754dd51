"""Data losses between modelled and measured intensities (FFT order), masked, per measured voxel."""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp

Loss = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

_EPS = 1e-12


def _count(measured: jax.Array, dtype: jnp.dtype) -> jax.Array:
    """The number of measured voxels, in the loss's dtype."""
    return jnp.sum(measured).astype(dtype)


def poisson_deviance(model: jax.Array, data: jax.Array, measured: jax.Array) -> jax.Array:
    """Poisson negative log-likelihood minus its saturated value (>= 0), mean over measured."""
    m = model + _EPS
    term = m - data - data * (jnp.log(m) - jnp.log(data + _EPS))
    return jnp.sum(jnp.where(measured, term, 0.0)) / _count(measured, term.dtype)


def amplitude_misfit(model: jax.Array, data: jax.Array, measured: jax.Array) -> jax.Array:
    """Gaussian misfit on amplitudes, mean of (sqrt(model) - sqrt(data))^2 over measured."""
    diff = jnp.sqrt(model + _EPS) - jnp.sqrt(data)
    return jnp.sum(jnp.where(measured, diff**2, 0.0)) / _count(measured, diff.dtype)


LOSSES: dict[str, Loss] = {"poisson": poisson_deviance, "amplitude": amplitude_misfit}
