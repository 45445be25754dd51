"""The crystal as the forward models see it: shape logits and phase on the conjugate grid.

The object is psi = S exp(i phase) with S = sigmoid(logits) in [0, 1] and phase = -h.u (rad;
geometry.py fixes the sign). Fitted parameters live in FFT order inside a reconstruction and
centred (crystal at the array centre) everywhere else.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class CrystalParams(NamedTuple):
    """Free parameters of a crystal on the conjugate grid, each of shape (N0, N1, N2).

    logits: shape S = sigmoid(logits), dimensionless; phase: -h.u in rad (geometry.py).
    """

    logits: jax.Array
    phase: jax.Array


def shape_of(params: CrystalParams) -> jax.Array:
    """Shape function S in [0, 1], shape (N0, N1, N2)."""
    return jax.nn.sigmoid(params.logits)


def complex_dtype(real: jnp.dtype) -> jnp.dtype:
    """The complex dtype of a real dtype's precision (float64 -> complex128, else complex64)."""
    return jnp.complex128 if real == jnp.float64 else jnp.complex64


def cis(x: jax.Array) -> jax.Array:
    """exp(i x) of a real array, in the complex dtype of its precision (no implicit promotion)."""
    return jnp.exp(1j * x.astype(complex_dtype(x.dtype)))


def object_of(params: CrystalParams) -> jax.Array:
    """Complex object S exp(i phase) = S exp(-i h.u), shape (N0, N1, N2)."""
    s = shape_of(params)
    return s.astype(complex_dtype(s.dtype)) * cis(params.phase)


def logits_of(amplitude: np.ndarray) -> np.ndarray:
    """logit(S) of a shape in [0, 1] (any shape): -inf at 0 and +inf at 1, float64."""
    a = np.asarray(amplitude, float)
    with np.errstate(divide="ignore"):
        return np.log(a) - np.log1p(-a)


def support_of(obj: np.ndarray, threshold: float = 0.5) -> np.ndarray:
    """Support as |obj| above threshold times the crystal's interior level (90th percentile)."""
    mag = np.abs(obj)
    inner = mag[mag > 0.3 * mag.max()] if mag.max() > 0 else mag.ravel()
    return mag > threshold * np.quantile(inner, 0.9)
