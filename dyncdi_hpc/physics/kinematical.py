"""Kinematical (Born) forward model: intensity = |DFT(S exp(-i h.u))|^2 on the conjugate grid.

Arrays live in FFT order inside the reconstruction (zero frequency at index 0), so the hot
loop does no shifts: stored datasets (peak at the centre) are ifftshifted once on the way in.
`centred_far_field` is the same transform for centred numpy arrays (simulation, report, PRTF).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from .geometry import Geometry
from .objects import CrystalParams, object_of


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


def centred_far_field(obj: np.ndarray) -> np.ndarray:
    """Unitary DFT of centred objects (..., N0, N1, N2) over the last three axes, peak-centred
    (numpy, complex128): the far field on the detector frame as the data are sampled."""
    axes = (-3, -2, -1)
    shifted = np.fft.ifftshift(obj, axes=axes)
    return np.fft.fftshift(np.fft.fftn(shifted, axes=axes, norm="ortho"), axes=axes)
