"""Kinematical (Born) forward model: intensity = |DFT(S exp(-i h.u))|^2 on the conjugate grid.

Arrays live in FFT order inside the reconstruction (zero frequency at index 0), so the hot
loop does no shifts: stored datasets (peak at the centre) are ifftshifted once on the way in.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from .geometry import Geometry


class CrystalParams(NamedTuple):
    """Free parameters of a crystal on the conjugate grid, each of shape (N0, N1, N2).

    logits: shape S = sigmoid(logits), dimensionless; phase: -h.u in rad (geometry.py).
    """

    logits: jax.Array
    phase: jax.Array


def shape_of(params: CrystalParams) -> jax.Array:
    """Shape function S in [0, 1], shape (N0, N1, N2)."""
    return jax.nn.sigmoid(params.logits)


def object_of(params: CrystalParams) -> jax.Array:
    """Complex object S exp(i phase) = S exp(-i h.u), shape (N0, N1, N2)."""
    return shape_of(params) * jnp.exp(1j * params.phase)


def far_field(obj: jax.Array) -> jax.Array:
    """Unitary 3D DFT of the object (FFT order), shape (N0, N1, N2)."""
    return jnp.fft.fftn(obj, norm="ortho")


def intensity_of_object(obj: jax.Array) -> jax.Array:
    """|DFT(obj)|^2 in FFT order, shape (N0, N1, N2)."""
    f = far_field(obj)
    return f.real**2 + f.imag**2


@jax.jit(static_argnames="geometry")
def forward(params: CrystalParams, geometry: Geometry) -> jax.Array:
    """Kinematical intensity (unit scale, FFT order) of a crystal, shape geometry.shape."""
    del geometry  # the conjugate grid is the DFT grid: nothing else is needed kinematically
    return intensity_of_object(object_of(params))
