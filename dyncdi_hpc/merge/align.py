"""Removal of the BCDI ambiguities between two reconstructions on the same grid.

A solution is defined up to a global phase offset, a linear phase ramp, a translation and the
twin (complex conjugate of the point-reflected object). `align` brings a candidate onto a
reference by testing both twins, registering the amplitudes to sub-voxel precision, and
removing ramp and offset by weighted fits of the phase difference.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.registration import register


@dataclass(frozen=True)
class Alignment:
    """An aligned object and what was removed: twin, shift (voxels), ramp (rad/voxel), offset.

    shift is the candidate's displacement from the reference; roll is its whole-voxel undoing.
    """

    obj: np.ndarray
    twin: bool
    roll: tuple[int, ...]
    shift: tuple[float, ...]
    ramp: tuple[float, ...]
    offset: float
    correlation: float


def flip_periodic(x: np.ndarray) -> np.ndarray:
    """x(-r) on the periodic grid: index n -> (-n) mod N on every axis."""
    return np.roll(np.flip(x), 1, axis=tuple(range(x.ndim)))


def twin(x: np.ndarray) -> np.ndarray:
    """The twin solution conj(x(-r)), which has the same diffraction intensity."""
    return np.conj(flip_periodic(x))


def _linear_phase(z: np.ndarray) -> tuple[float, ...]:
    """Slopes (rad/voxel) of the phase of z along each axis, robust to wrapping."""
    return tuple(
        float(np.angle(np.sum(np.roll(z, -1, axis=a) * np.conj(z)))) for a in range(z.ndim)
    )


def _ramp(shape: tuple[int, ...], slopes: tuple[float, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.arange(n) - n // 2 for n in shape], indexing="ij")
    return np.exp(1j * sum(g * s for g, s in zip(grids, slopes, strict=True)))


def _fourier_ramp(shape: tuple[int, ...], slopes: tuple[float, ...]) -> np.ndarray:
    grids = np.meshgrid(*[np.fft.fftfreq(n) * n for n in shape], indexing="ij")
    return np.exp(1j * sum(g * s for g, s in zip(grids, slopes, strict=True)))


def _refine(
    obj: np.ndarray, reference: np.ndarray, passes: int = 4
) -> tuple[np.ndarray, tuple[float, ...], tuple[float, ...], float]:
    """Alternately remove the real-space phase ramp and the far-field one (sub-voxel shift)."""
    ndim = obj.ndim
    ramp, shift = np.zeros(ndim), np.zeros(ndim)
    f_ref = np.conj(np.fft.fftn(reference))
    for _ in range(passes):
        slopes = _linear_phase(obj * np.conj(reference))
        obj = obj * _ramp(obj.shape, tuple(-s for s in slopes))
        ramp += slopes
        f_obj = np.fft.fftn(obj)
        f_slopes = _linear_phase(f_obj * f_ref)
        obj = np.fft.ifftn(f_obj * _fourier_ramp(obj.shape, tuple(-s for s in f_slopes)))
        shift += np.asarray(f_slopes) * np.asarray(obj.shape) / (2 * np.pi)
    offset = float(np.angle(np.vdot(reference, obj)))
    return obj * np.exp(-1j * offset), tuple(shift), tuple(ramp), offset


def align(candidate: np.ndarray, reference: np.ndarray) -> Alignment:
    """Remove twin, translation, phase ramp and phase offset of candidate relative to reference."""
    best: Alignment | None = None
    ref_norm = np.linalg.norm(reference)
    for is_twin in (False, True):
        obj = twin(candidate) if is_twin else candidate
        whole = register(obj, reference)
        obj = np.roll(obj, whole, axis=tuple(range(obj.ndim)))
        obj, sub, ramp, offset = _refine(obj, reference)
        shift = tuple(-(w + s) for w, s in zip(whole, sub, strict=True))
        corr = float(np.abs(np.vdot(reference, obj)) / (ref_norm * np.linalg.norm(obj) + 1e-300))
        if best is None or corr > best.correlation:
            best = Alignment(obj, is_twin, whole, shift, ramp, offset, corr)
    assert best is not None
    return best


def move_like(alignment: Alignment, voxels: np.ndarray) -> np.ndarray:
    """Apply an alignment's twin flip and whole-voxel roll to a real voxel map (N0, N1, N2)."""
    x = flip_periodic(voxels) if alignment.twin else voxels
    return np.roll(x, alignment.roll, axis=tuple(range(x.ndim)))


def phase_rms(obj: np.ndarray, reference: np.ndarray, region: np.ndarray) -> float:
    """RMS phase difference (rad) between two aligned objects inside region (bool array)."""
    diff = np.angle(obj[region] * np.conj(reference[region]))
    return float(np.sqrt(np.mean(diff**2)))


def dice(a: np.ndarray, b: np.ndarray) -> float:
    """Dice coefficient 2|A and B| / (|A| + |B|) of two boolean volumes."""
    total = a.sum() + b.sum()
    return float(2 * np.logical_and(a, b).sum() / total) if total else 1.0
