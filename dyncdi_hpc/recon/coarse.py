"""Coarse-to-fine: the same crystal at half the resolution, and its object on the full grid.

The coarse problem keeps the central half of the q range on every axis (the Bragg peak stays
at the array centre): its conjugate voxels are twice as large and its field of view is the
same, so the crystal keeps its oversampling. Binning the counts instead would keep the voxels
and halve the field of view, which at the oversampling of 2 that BCDI grids have leaves none.
"""

from __future__ import annotations

import dataclasses

import numpy as np
from scipy.ndimage import map_coordinates

from ..physics.geometry import Geometry


def coarse_shape(shape: tuple[int, ...]) -> tuple[int, ...]:
    """The coarse grid's shape: half of each axis (rounded down)."""
    return tuple(n // 2 for n in shape)


def central_crop(x: np.ndarray) -> np.ndarray:
    """The central half (N_j // 2 per axis) of a peak-centred array (N0, N1, N2): index N // 2
    goes to the crop's N // 2 // 2."""
    slices = tuple(
        slice(n // 2 - m // 2, n // 2 - m // 2 + m)
        for n, m in zip(x.shape, coarse_shape(x.shape), strict=True)
    )
    return x[slices]


def coarse_geometry(geometry: Geometry) -> Geometry:
    """The geometry of central_crop's data: the same q steps on half the points each way."""
    return dataclasses.replace(geometry, shape=coarse_shape(geometry.shape))


def coarse_object(obj: np.ndarray) -> np.ndarray:
    """A centred full-grid object (N0, N1, N2), complex, on the coarse grid: the inverse
    transform of the central half of its far field (the same object, low-passed; any scale)."""
    field = np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj), norm="ortho"))
    coarse = np.fft.fftshift(np.fft.ifftn(np.fft.ifftshift(central_crop(field)), norm="ortho"))
    return coarse.astype(np.result_type(obj.dtype, np.complex64))


def upsampled(obj: np.ndarray, shape: tuple[int, int, int]) -> np.ndarray:
    """A centred coarse object (M0, M1, M2), complex, on the full centred grid `shape`: the
    amplitude and exp(i phase) interpolated (trilinear) at the same sample-frame positions
    (fine voxel m sits at coarse coordinate (m - N // 2) M / N + M // 2)."""
    coords = np.meshgrid(
        *((np.arange(n) - n // 2) * m / n + m // 2 for n, m in zip(shape, obj.shape, strict=True)),
        indexing="ij",
    )

    def interp(values: np.ndarray) -> np.ndarray:
        return map_coordinates(values, coords, order=1, mode="constant", cval=0.0)

    amplitude = interp(np.abs(obj))
    unit = np.exp(1j * np.angle(obj))
    phase = np.angle(interp(unit.real) + 1j * interp(unit.imag))
    return (amplitude * np.exp(1j * phase)).astype(obj.dtype)
