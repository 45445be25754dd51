import numpy as np
import pytest

from dyncdi_hpc.merge.align import align, dice, flip_periodic, move_like, phase_rms, twin


def _object(noiseless32):
    t = noiseless32.truth
    return t.amplitude * np.exp(1j * t.phase), t.support


def _ramp(shape, slopes):
    grids = np.meshgrid(*[np.arange(n) for n in shape], indexing="ij")
    return np.exp(1j * sum(g * s for g, s in zip(grids, slopes, strict=True)))


@pytest.mark.parametrize("is_twin", [False, True])
def test_shift_ramp_offset_and_twin_are_removed(noiseless32, is_twin):
    obj, support = _object(noiseless32)
    moved = np.roll(obj, (3, -5, 2), axis=(0, 1, 2)) * _ramp(obj.shape, (0.05, -0.11, 0.031))
    moved = moved * np.exp(1j * 2.2)
    if is_twin:
        moved = twin(moved)
    a = align(moved, obj)
    assert a.twin == is_twin
    if not is_twin:
        np.testing.assert_allclose(a.shift, (3, -5, 2), atol=1e-6)
    assert phase_rms(a.obj, obj, support) < 1e-3
    np.testing.assert_allclose(np.abs(a.obj), np.abs(obj), atol=1e-6)


def test_subvoxel_translation_is_removed(noiseless32):
    obj, support = _object(noiseless32)
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in obj.shape], indexing="ij")
    shift = (0.4, -0.3, 0.25)
    phase = sum(f * s for f, s in zip(freqs, shift, strict=True))
    moved = np.fft.ifftn(np.fft.fftn(obj) * np.exp(-2j * np.pi * phase))
    a = align(moved, obj)
    assert phase_rms(a.obj, obj, support) < 1e-3
    np.testing.assert_allclose(a.shift, shift, atol=1e-3)


def test_move_like_carries_real_maps_with_the_object(noiseless32):
    obj, support = _object(noiseless32)
    moved = twin(np.roll(obj, (2, 1, -3), axis=(0, 1, 2)))
    a = align(moved, obj)
    moved_support = flip_periodic(np.roll(support, (2, 1, -3), axis=(0, 1, 2)))
    assert dice(move_like(a, moved_support), support) == 1.0


def test_dice():
    a = np.zeros((4, 4), bool)
    a[:2] = True
    b = np.zeros((4, 4), bool)
    b[1:3] = True
    assert dice(a, a) == 1.0
    assert dice(a, b) == pytest.approx(0.5)
