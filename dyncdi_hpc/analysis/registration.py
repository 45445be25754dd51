"""Registration of volumes: the translation (whole and sub-voxel) that maps one onto another,
an ambiguity of every BCDI solution that comparisons with a reference must remove first."""

from __future__ import annotations

import numpy as np
from scipy.ndimage import shift as shift_volume


def register(moving: np.ndarray, fixed: np.ndarray) -> tuple[int, ...]:
    """Integer shift (voxels) that best maps |moving| onto |fixed| (amplitude cross-correlation)."""
    cc = np.fft.ifftn(np.fft.fftn(np.abs(fixed)) * np.conj(np.fft.fftn(np.abs(moving)))).real
    peak = np.unravel_index(int(np.argmax(cc)), cc.shape)
    return tuple(int(p - n) if p > n // 2 else int(p) for p, n in zip(peak, cc.shape, strict=True))


def fourier_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x moved by shift (3,) voxels (periodic, sub-voxel by a Fourier phase ramp)."""
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in x.shape], indexing="ij")
    ramp = np.exp(-2j * np.pi * sum(f * s for f, s in zip(freqs, shift, strict=True)))
    return np.fft.ifftn(np.fft.fftn(x) * ramp)


def subvoxel_shift(moving: np.ndarray, fixed: np.ndarray) -> np.ndarray:
    """Shift (3,) voxels that best moves |moving| onto |fixed| (periodic grid): the whole-voxel
    cross-correlation peak refined by the cross-power phase slope."""
    whole = np.asarray(register(moving, fixed), float)
    rolled = np.roll(np.abs(moving), tuple(int(w) for w in whole), axis=(0, 1, 2))
    cross = np.fft.fftn(np.abs(fixed)) * np.conj(np.fft.fftn(rolled))
    sub = []
    for axis, n in enumerate(cross.shape):
        # phase slope of the cross power along this axis: -2 pi shift / n per frequency step
        slope = np.angle(np.sum(np.roll(cross, -1, axis=axis) * np.conj(cross)))
        sub.append(-slope * n / (2 * np.pi))
    return whole + np.asarray(sub)


def remove_translation(
    shape: np.ndarray, displacement_nm: np.ndarray, reference: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Undo a crystal translation (an ambiguity of every BCDI solution) relative to a reference
    shape: shape (nx, ny, nz) and u (3, nx, ny, nz) moved by the sub-voxel shift (3,) voxels that
    best maps shape onto reference (trilinear). Returns the moved shape, u and the shift."""
    shift = subvoxel_shift(shape, reference)
    moved = shift_volume(np.asarray(shape, float), shift, order=1, mode="constant")
    u = np.stack([shift_volume(c, shift, order=1, mode="nearest") for c in displacement_nm])
    return moved, u, shift
