"""Detector corrections: each rule on small synthetic frames, the record's bookkeeping, the
shape errors, and the measured scan 54 of APS 34-ID-C when ../shared holds it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from dyncdi_hpc.config.beamline import Detector, Rectangle, load_beamline
from dyncdi_hpc.data import corrections
from dyncdi_hpc.data.corrections import correct_frames
from dyncdi_hpc.errors import DyncdiError

CHIP = (64, 48)
ROI = (10, 50, 8, 40)  # 40 x 32 pixels of the chip
SCAN54 = Path(__file__).resolve().parents[3] / "shared/data/aps34idc-au111-scan54"


def detector(**update) -> Detector:
    """A small chip with a gap column pair, a seam row pair and a saturation level."""
    fields = {
        "chip": CHIP,
        "pixel_size_um": (55.0, 55.0),
        "row_direction": "y-",
        "column_direction": "x+",
        "centre_channel": (32.0, 24.0),
        "gaps": [Rectangle(rows=(0, 64), cols=(20, 22))],
        "seams": [Rectangle(rows=(31, 33), cols=(0, 48))],
        "saturation": 5000.0,
    }
    return Detector(**{**fields, **update})


def frames(n0: int = 30, seed: int = 0) -> np.ndarray:
    """Raw counts (n0, 40, 32) int32: a rocking peak (~2000 counts) on a weak background."""
    rng = np.random.default_rng(seed)
    k, r, c = np.indices((n0, 40, 32)).astype(float)
    peak = 2000 * np.exp(-((k - n0 / 2) ** 2 / 8 + (r - 12) ** 2 / 6 + (c - 26) ** 2 / 6))
    return rng.poisson(peak + 0.3).astype(np.int32)


def roi_pixel(chip_row: int, chip_col: int) -> tuple[int, int]:
    return chip_row - ROI[0], chip_col - ROI[2]


def test_without_fields_only_gaps_and_seams_are_masked_in_roi_coordinates():
    raw = frames()
    data, mask, record = correct_frames(raw, detector=detector(), roi=ROI)
    assert data.dtype == np.float64 and data.shape == raw.shape and mask.shape == raw.shape
    # the gap (chip cols 20-21) and the seam (chip rows 31-32), shifted by the ROI origin
    expected = np.zeros(raw.shape[1:], bool)
    expected[:, 20 - ROI[2] : 22 - ROI[2]] = True
    expected[31 - ROI[0] : 33 - ROI[0], :] = True
    assert np.array_equal(mask, np.broadcast_to(expected, raw.shape))
    assert record["masked_pixels"]["gap"] == 2 * 40
    assert record["masked_pixels"]["seam"] == 2 * 32 - 4  # the crossing is the gap's
    assert np.array_equal(data[~mask], raw[~mask].astype(np.float64))
    steps = ["invalid", "gap", "seam", "saturated", "hot_from_data"]
    assert [s["step"] for s in record["applied"]] == steps


def test_a_rectangle_outside_the_roi_masks_nothing():
    far = detector(gaps=[Rectangle(rows=(0, 64), cols=(44, 48))], seams=[])
    _, mask, record = correct_frames(frames(), detector=far, roi=ROI)
    assert not mask.any() and record["masked"]["gap"] == 0


def test_every_masked_voxel_has_one_cause_and_the_record_is_json():
    raw = frames().astype(np.float64)
    raw[3, 5, 5] = np.nan
    raw[4, 6, 6] = -1.0
    raw[15, 12, 26] = 9000.0  # saturated
    file_mask = np.zeros(raw.shape[1:], bool)
    file_mask[0, :] = True
    dark = np.zeros(CHIP)
    dark[ROI[0] + 2, ROI[2] + 3] = 100  # hot
    flat = np.full(CHIP, 1000.0)
    flat[ROI[0] + 4, ROI[2] + 4] = 0.0  # dead
    data, mask, record = correct_frames(
        raw, detector=detector(), roi=ROI, dark=dark, flat=flat, threshold=1.5, mask=file_mask
    )
    assert sum(record["masked"].values()) == record["masked_total"] == int(mask.sum())
    assert np.all(data[mask] == 0)
    assert record["masked"]["invalid"] == 2 and record["masked"]["saturated"] == 1
    assert record["masked_pixels"]["file"] == 32
    assert record["masked_pixels"]["hot"] == 1 and record["masked_pixels"]["dead"] == 1
    assert json.loads(json.dumps(record)) == record


def test_the_first_cause_wins():
    dark = np.zeros(CHIP)
    dark[31, 12] = 100  # hot, but on the seam row: counted as seam
    dark[12, 12] = 100
    _, _, record = correct_frames(frames(), detector=detector(), roi=ROI, dark=dark)
    assert record["masked_pixels"]["hot"] == 1
    assert record["hot_pixels"] == [[12, 12]]  # chip coordinates
    step = next(s for s in record["applied"] if s["step"] == "dark")
    assert step["hot_pixels_chip"] == 2


def test_dark_is_subtracted_with_the_roi_offset_and_clipped_at_zero():
    rng = np.random.default_rng(1)
    dark = rng.poisson(3.0, CHIP).astype(np.float64)
    raw = frames()
    data, mask, _ = correct_frames(raw, detector=detector(seams=[], gaps=[]), roi=ROI, dark=dark)
    window = dark[ROI[0] : ROI[1], ROI[2] : ROI[3]]
    expected = np.clip(raw - window, 0, None)
    assert not mask.any()
    assert np.array_equal(data, expected)


def test_hot_pixels_of_the_dark_are_far_above_its_typical_level():
    rng = np.random.default_rng(2)
    ccd = rng.normal(1000.0, 10.0, CHIP)  # a dark with an offset: its MAD sets the width
    ccd[20, 20] = 1200.0  # 20 sigma: hot
    ccd[21, 21] = 1050.0  # 5 sigma: kept
    _, mask, record = correct_frames(
        frames(), detector=detector(seams=[], gaps=[]), roi=ROI, dark=ccd
    )
    assert mask[:, 10, 12].all() and not mask[:, 11, 13].any()
    assert record["hot_pixels"] == [[20, 20]]
    # a photon counter's dark is zeros: the one-count floor sets the width
    counter = np.zeros(CHIP)
    counter[20, 20], counter[21, 21] = 100, 3
    _, mask, record = correct_frames(
        frames(), detector=detector(seams=[], gaps=[]), roi=ROI, dark=counter
    )
    assert record["hot_pixels"] == [[20, 20]]
    step = next(s for s in record["applied"] if s["step"] == "dark")
    assert step["hot_above"] == pytest.approx(corrections.HOT_DARK_SIGMA)


def test_flat_divides_by_its_median_and_masks_dead_pixels():
    rng = np.random.default_rng(3)
    flat = rng.uniform(0.8, 1.2, CHIP) * 5000.0
    typical = np.median(flat)
    flat[ROI[0] + 1, ROI[2] + 1] = 0.0
    flat[ROI[0] + 2, ROI[2] + 2] = np.nan
    flat[ROI[0] + 3, ROI[2] + 3] = 0.1 * typical  # below DEAD_FLAT_FRACTION
    flat[ROI[0] + 4, ROI[2] + 4] = 0.5 * typical  # weak, but corrected
    bare = detector(seams=[], gaps=[])
    raw = frames()
    data, mask, record = correct_frames(raw, detector=bare, roi=ROI, flat=flat)
    dead = [(1, 1), (2, 2), (3, 3)]
    assert all(mask[:, r, c].all() for r, c in dead)
    assert record["masked_pixels"]["dead"] == 3
    ok = np.isfinite(flat) & (flat > 0)
    response = flat / np.median(flat[ok])
    window = response[ROI[0] : ROI[1], ROI[2] : ROI[3]]
    keep = ~mask[0]
    assert np.allclose(data[:, keep], raw[:, keep] / window[keep])
    step = next(s for s in record["applied"] if s["step"] == "flat")
    assert step["median"] == pytest.approx(np.median(flat[ok]))


def test_flat_median_leaves_out_seams_gaps_and_hot_pixels():
    flat = np.full(CHIP, 2000.0)
    flat[31:33, :] = 1.0  # the seam rows are nearly blind: not part of the median
    flat[:, 20:22] = 1.0
    flat[:4, :] = 1.0  # but these rows are sensitive pixels: they count
    _, _, record = correct_frames(frames(), detector=detector(), roi=ROI, flat=flat)
    step = next(s for s in record["applied"] if s["step"] == "flat")
    assert step["median"] == 2000.0


def test_hot_pixels_from_the_data_are_bright_and_flat_along_the_rocking_curve():
    rng = np.random.default_rng(4)
    raw = frames(n0=40)
    raw[:, 2, 2] = 50  # stuck: the same count in every frame
    raw[:, 3, 3] = 50 + rng.integers(0, 2, 40)  # nearly stuck
    raw[:, 4, 4] = rng.poisson(50, 40)  # a constant Poisson source: variance = mean, kept
    _, mask, record = correct_frames(raw, detector=detector(seams=[], gaps=[]), roi=ROI)
    assert mask[:, 2, 2].all() and mask[:, 3, 3].all() and not mask[:, 4, 4].any()
    assert record["masked_pixels"]["hot"] == 2  # the rocking peak's pixels are not hot
    assert sorted(record["hot_pixels"]) == [[ROI[0] + 2, ROI[2] + 2], [ROI[0] + 3, ROI[2] + 3]]


def test_hot_pixels_from_the_data_need_enough_frames():
    raw = frames(n0=corrections.HOT_MIN_FRAMES - 1)
    raw[:, 2, 2] = 50
    _, mask, record = correct_frames(raw, detector=detector(seams=[], gaps=[]), roi=ROI)
    assert not mask.any()
    step = next(s for s in record["applied"] if s["step"] == "hot_from_data")
    assert "skipped" in step


def test_saturation_masks_voxels_not_pixels():
    raw = frames()
    raw[15, 12, 26] = 6000
    _, mask, record = correct_frames(raw, detector=detector(seams=[], gaps=[]), roi=ROI)
    assert mask[15, 12, 26] and mask.sum() == 1
    assert record["masked"]["saturated"] == 1 and record["masked_pixels"]["saturated"] == 0


@pytest.mark.parametrize("dtype", [np.uint16, np.int32, np.int64, np.float32, np.float64])
def test_any_count_dtype_gives_the_same_result(dtype):
    raw = frames()
    reference, ref_mask, _ = correct_frames(raw, detector=detector(), roi=ROI)
    data, mask, _ = correct_frames(raw.astype(dtype), detector=detector(), roi=ROI)
    assert np.array_equal(data, reference) and np.array_equal(mask, ref_mask)


def test_detector_flags_are_invalid():
    raw = frames().astype(np.uint16)
    raw[1, 1, 1] = np.iinfo(np.uint16).max  # Eiger-style flag for a bad pixel
    signed = frames()
    signed[1, 1, 1] = -2  # Pilatus-style
    for stack in (raw, signed):
        _, mask, record = correct_frames(stack, detector=detector(seams=[], gaps=[]), roi=ROI)
        assert mask[1, 1, 1] and record["masked"]["invalid"] == 1


def test_file_masks_of_one_frame_or_of_the_stack():
    raw = frames()
    one = np.zeros(raw.shape[1:], bool)
    one[5, 5] = True
    stack = np.zeros(raw.shape, bool)
    stack[7, 6, 6] = True
    bare = detector(seams=[], gaps=[])
    _, mask, record = correct_frames(raw, detector=bare, roi=ROI, mask=one)
    assert mask[:, 5, 5].all() and record["masked"]["file"] == raw.shape[0]
    _, mask, record = correct_frames(raw, detector=bare, roi=ROI, mask=stack.astype(np.uint8))
    assert mask.sum() == 1 and record["masked"]["file"] == 1


def test_threshold_zeroes_counts_but_masks_nothing():
    raw = frames()
    bare = detector(seams=[], gaps=[])
    data, mask, record = correct_frames(raw, detector=bare, roi=ROI, threshold=2)
    assert not mask.any()
    low = (raw > 0) & (raw < 2)
    assert np.all(data[low] == 0) and np.array_equal(data[raw >= 2], raw[raw >= 2])
    assert record["zeroed"]["threshold"] == int(low.sum())
    assert record["masked"] == dict.fromkeys(corrections.CAUSES, 0)
    assert record["counts"]["threshold_removed"] == float(raw[low].sum())
    assert record["counts"]["corrected"] == pytest.approx(record["counts"]["raw"] - low.sum())


@pytest.mark.parametrize(
    ("kwargs", "field", "words"),
    [
        ({"dark": np.zeros((40, 32))}, "--dark", "give the full-chip dark field (64 x 48)"),
        ({"flat": np.ones((48, 64))}, "--flat", "give the full-chip flat field (64 x 48)"),
        ({"roi": (30, 70, 8, 40)}, "--roi", "outside the chip"),
        ({"roi": (-1, 39, 8, 40)}, "--roi", "outside the chip"),
        ({"roi": (10, 50, 8, 41)}, "--roi", "but the frames are 40 x 32"),
        ({"roi": (10, 50, 8)}, "--roi", "not 4 numbers"),
        ({"mask": np.zeros((40, 31), bool)}, "--mask", "fits neither"),
        ({"threshold": -1.0}, "--threshold", ">= 0"),
    ],
)
def test_wrong_shapes_are_clear_errors(kwargs, field, words):
    args = {"detector": detector(), "roi": ROI, **kwargs}
    with pytest.raises(DyncdiError) as err:
        correct_frames(frames(), **args)
    assert err.value.field == field
    assert words in str(err.value)
    if field in ("--dark", "--flat"):
        assert "shape" in err.value.problem


def test_frames_must_be_a_stack():
    with pytest.raises(DyncdiError, match="frames"):
        correct_frames(frames()[0], detector=detector(), roi=ROI)


@pytest.mark.slow
@pytest.mark.skipif(not SCAN54.exists(), reason="needs the measured scan in ../shared")
def test_measured_scan_54_of_aps_34idc():
    """The reference scan: 201 frames of the 34idcTIM2 Timepix, its dark and white fields."""
    tifffile = pytest.importorskip("tifffile")
    raw = np.stack([tifffile.imread(p) for p in sorted((SCAN54 / "frames").glob("*.tif"))])
    dark = tifffile.imread(SCAN54 / "dark.tif")
    flat = tifffile.imread(SCAN54 / "whitefield.tif")
    tim2 = load_beamline("aps-34idc").detector(None)
    data, mask, record = correct_frames(
        raw, detector=tim2, roi=(0, 256, 0, 256), dark=dark, flat=flat, threshold=2
    )
    assert record["counts"]["raw"] == 46155653
    assert record["masked_pixels"]["seam"] == 511  # row 255 and column 255 of the ROI
    assert record["masked_pixels"]["hot"] == 13  # dark = 100 (the beamline's bad-pixel map)
    assert record["masked_pixels"]["dead"] == 65
    assert record["masked"]["saturated"] == record["masked"]["invalid"] == 0
    assert sum(record["masked"].values()) == int(mask.sum())
    assert record["counts"]["raw_in_masked"] == 1533  # counts on the seams and bad pixels
    # the flat of this quadrant is above the chip's median: ~13% fewer counts after it
    assert record["counts"]["corrected"] == pytest.approx(3.936e7, rel=1e-3)
    assert float(data.sum()) == pytest.approx(record["counts"]["corrected"])
    brightest = np.unravel_index(int(np.argmax(raw)), raw.shape)
    assert brightest == (99, 126, 127) and not mask[brightest]
