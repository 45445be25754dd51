"""Aliens: simulated crystal patterns with Poisson noise, strained or not, with and without an
injected blob or zinger; the centre and the mirror; the measured scan 54 when ../shared holds
it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from dyncdi_hpc.data import aliens
from dyncdi_hpc.data.corrections import mask_aliens

N = 64
SCAN54 = Path(__file__).resolve().parents[3] / "shared/data/aps34idc-au111-scan54"


def crystal(phase_rad: float = 0.0, *, seed: int = 0, blob=None) -> np.ndarray:
    """Poisson counts (N, N, N), ~1e5 at the peak: |FFT|^2 of a faceted crystal (octahedron cut
    by a box, ~28 voxels across) with a smooth phase of about phase_rad peak to peak; blob:
    (offset from the centre, peak counts, sigma in voxels) of a Gaussian alien added."""
    x, y, z = np.indices((N, N, N)) - N // 2
    size = 14
    support = (abs(x) + abs(y) + abs(z) < 1.4 * size) & (abs(x) < size) & (abs(y) < 0.8 * size)
    support &= abs(z) < size
    phase = (
        0.5
        * phase_rad
        * (np.sin(np.pi * x / (2 * size)) * np.cos(np.pi * y / (3 * size)) + 0.3 * (z / size) ** 2)
    )
    intensity = np.abs(np.fft.fftshift(np.fft.fftn(support * np.exp(1j * phase)))) ** 2
    intensity *= 1e5 / intensity.max()
    if blob is not None:
        (b0, b1, b2), height, sigma = blob
        r2 = (x - b0) ** 2 + (y - b1) ** 2 + (z - b2) ** 2
        intensity += height * np.exp(-r2 / (2 * sigma**2))
    return np.random.default_rng(seed).poisson(intensity).astype(np.float64)


def brightest(data: np.ndarray) -> tuple[int, int, int]:
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(data)), data.shape))


@pytest.mark.parametrize("phase_rad", [0.0, 4.0, 8.0, 12.0])
@pytest.mark.parametrize("seed", [0, 1])
def test_a_crystal_alone_has_no_aliens(phase_rad, seed):
    """The peak, its fringes (lopsided by the strain phase) and the noise are left alone."""
    data = crystal(phase_rad, seed=seed)
    mask = np.zeros(data.shape, bool)
    new_mask, found = mask_aliens(data, mask, brightest(data))
    assert not new_mask.any()
    assert not [f for f in found if f["masked"]]


@pytest.mark.parametrize("phase_rad", [0.0, 8.0, 12.0])
@pytest.mark.parametrize(
    ("offset", "height", "sigma"),
    [((10, -15, 8), 1000.0, 1.0), ((-12, -20, 3), 100.0, 1.5), ((-20, 10, 5), 30.0, 2.0)],
)
def test_an_injected_blob_is_masked_and_listed(phase_rad, offset, height, sigma):
    data = crystal(phase_rad, blob=(offset, height, sigma))
    mask = np.zeros(data.shape, bool)
    new_mask, found = mask_aliens(data, mask, brightest(data))
    at = tuple(N // 2 + o for o in offset)
    assert new_mask[at]
    (alien,) = [f for f in found if f["masked"]]
    assert all(lo <= a < hi for a, (lo, hi) in zip(at, alien["bbox"], strict=True))
    total = height * (2 * np.pi * sigma**2) ** 1.5
    assert 0.5 * total < alien["counts"] < 1.5 * total
    assert alien["ratio"] is None or alien["ratio"] >= aliens.RATIO
    assert alien["isolation"] is None or alien["isolation"] >= aliens.ISOLATION
    assert alien["masked_voxels"] == int(new_mask.sum()) < 2000
    # the crystal is untouched: everything masked lies within 4 sigma + 3 voxels of the blob
    reach = np.abs(np.argwhere(new_mask) - np.array(at)).max()
    assert reach <= 4 * sigma + 3


def test_a_zinger_is_masked():
    data = crystal(4.0)
    data[50, 12, 40] += 2000.0  # one voxel of one frame
    new_mask, found = mask_aliens(data, np.zeros(data.shape, bool), brightest(data))
    assert new_mask[50, 12, 40]
    assert [f["bbox"] for f in found if f["masked"]] == [[[49, 52], [11, 14], [39, 42]]]


def test_an_alien_whose_mirror_is_masked_cannot_be_judged():
    data = crystal(0.0, blob=((10, -15, 8), 1000.0, 1.0))
    mirror = (N // 2 - 10, N // 2 + 15, N // 2 - 8)  # where the blob's partner would be
    mask = np.zeros(data.shape, bool)
    mask[tuple(slice(m - 5, m + 6) for m in mirror)] = True
    new_mask, found = mask_aliens(data, mask, brightest(data))
    assert np.array_equal(new_mask, mask) and found == []


def test_the_mask_given_is_kept_and_not_changed():
    data = crystal(0.0)
    mask = np.zeros(data.shape, bool)
    mask[:, 5, :] = True
    before = mask.copy()
    new_mask, _ = mask_aliens(data, mask, brightest(data))
    assert np.array_equal(mask, before) and np.array_equal(new_mask, mask)


def test_the_centre_is_refined_to_half_a_voxel():
    """A pattern centred between voxels (an even-sized box's centre) is mirrored about it."""
    g = np.indices((N, N, N)).astype(float)
    centre = (31.5, 32.0, 30.5)
    r2 = sum((gi - c) ** 2 for gi, c in zip(g, centre, strict=True))
    values = 1e4 * np.exp(-r2 / 8.0) * (1 + np.cos(1.5 * np.sqrt(r2)))
    twice = aliens._centre(values, (31, 32, 30))
    assert twice == (63, 64, 61)
    mirrored = aliens._mirror(values, twice, 0.0)
    inside = aliens._mirror(np.ones(values.shape, bool), twice, False)
    assert np.allclose(mirrored[inside], values[inside])


def test_mirror_inverts_about_the_centre_and_fills_outside():
    a = np.arange(5 * 4 * 3, dtype=float).reshape(5, 4, 3)
    out = aliens._mirror(a, (4, 3, 2), -1.0)
    for idx in np.ndindex(a.shape):
        src = tuple(t - i for t, i in zip((4, 3, 2), idx, strict=True))
        inside = all(0 <= s < n for s, n in zip(src, a.shape, strict=True))
        assert out[idx] == (a[src] if inside else -1.0)


def test_bad_arguments():
    data = np.zeros((8, 8, 8))
    with pytest.raises(ValueError, match="equal 3D shapes"):
        mask_aliens(data, np.zeros((8, 8), bool), (4, 4, 4))
    with pytest.raises(ValueError, match="outside"):
        mask_aliens(data, np.zeros(data.shape, bool), (4, 9, 4))


@pytest.mark.slow
@pytest.mark.skipif(not SCAN54.exists(), reason="needs the measured scan in ../shared")
def test_measured_scan_54_has_no_alien_to_mask_and_one_suspect():
    """Its lopsided facet streaks are kept; a broad one-sided spot 65 frames and 65 rows from
    the peak is listed, not masked."""
    tifffile = pytest.importorskip("tifffile")
    from dyncdi_hpc.config.beamline import load_beamline
    from dyncdi_hpc.data.corrections import correct_frames
    from dyncdi_hpc.data.prepare import find_peak

    raw = np.stack([tifffile.imread(p) for p in sorted((SCAN54 / "frames").glob("*.tif"))])
    data, mask, _ = correct_frames(
        raw,
        detector=load_beamline("aps-34idc").detector(None),
        roi=(0, 256, 0, 256),
        dark=tifffile.imread(SCAN54 / "dark.tif"),
        flat=tifffile.imread(SCAN54 / "whitefield.tif"),
        threshold=2,
    )
    peak = find_peak(data, mask)
    new_mask, found = mask_aliens(data, mask, peak)
    assert np.array_equal(new_mask, mask)
    (suspect,) = found
    assert not suspect["masked"] and suspect["contrast"] >= aliens.DIFFUSE_CONTRAST
    assert suspect["bbox"][1][0] >= 50 and suspect["bbox"][1][1] <= 75  # rows, about 56-69
    assert suspect["centre"] == [97.5, 127.0, 127.5]
