"""Why each voxel is masked: the cause map the load stores beside the mask, kept its twin through
binning, crop, padding and aliens, counted like the corrections' record, out of the fingerprint."""

import warnings

import h5py
import numpy as np
import pytest

from dyncdi_hpc.data.causes import (
    MASK_CAUSES,
    bin_causes,
    cause_counts,
    code,
    flag_attrs,
    window_causes,
)
from dyncdi_hpc.data.load import load_scan
from dyncdi_hpc.data.measurement import read_measurement
from dyncdi_hpc.data.prepare import LoadWarning, Record, bin_detector, window
from dyncdi_hpc.identity import array_digest, stable_hash
from dyncdi_hpc.store.groups import decode_input
from tests.data.beamline_files import BRAGG_DEG, peak_frames

ROI = (230, 294, 300, 364)  # chip pixels: the Timepix seam (chip rows 255-256) at rows 25-26
GEOMETRY = {
    "beamline": "aps-34idc",
    "roi": list(ROI),
    "motors": {"Theta": BRAGG_DEG, "Chi": 0.0, "Phi": 0.0, "Delta": 2 * BRAGG_DEG, "Gamma": 0.0},
    "rocking_motor": "Theta",
    "energy_kev": 9.0,
    "detector_distance_m": 0.5,
    "rocking_step_deg": 0.01,
    "material": "Au",
    "hkl": [1, 1, 1],
}


@pytest.fixture(scope="module")
def frames():
    """40 x 64 x 64 frames of a peak at their centre with one voxel or pixel of each kind."""
    raw = peak_frames((20, 32, 32))
    raw[:, 40, 10] = 5  # hot: counts in every frame, no rocking curve
    raw[3, 50, 50] = -1  # invalid: a detector's unreadable pixel
    raw[21, 45, 40] = 300_000  # saturated (over 2e5)
    raw[30, 12, 45] = 5000  # a zinger: an alien, no Friedel partner
    return raw


def _load(path, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return load_scan(path, geometry=GEOMETRY, saturation=2e5, **options)


def _assert_twins(ds):
    causes = ds["mask_cause"].values
    assert causes.dtype == np.uint8 and ds["mask_cause"].dims == ds["mask"].dims
    np.testing.assert_array_equal(ds["mask"].values, causes > 0)
    assert ds["mask_cause"].attrs["flag_values"] == list(range(len(MASK_CAUSES) + 1))
    assert ds["mask_cause"].attrs["flag_meanings"].split() == ["measured", *MASK_CAUSES]
    assert cause_counts(causes) == ds.attrs["corrections"]["masked_stored"]
    return causes


def test_an_uncropped_scan_counts_each_cause_as_the_corrections_record(frames, tmp_path):
    np.save(tmp_path / "scan.npy", frames)
    ds = _load(tmp_path / "scan.npy")
    assert ds["intensity"].shape == frames.shape  # kept as it is: no crop, no binning
    causes = _assert_twins(ds)
    counts = np.bincount(causes.ravel(), minlength=len(MASK_CAUSES) + 1)
    corrections = ds.attrs["corrections"]
    for cause, voxels in corrections["masked"].items():
        assert counts[code(cause)] == voxels, cause
    assert corrections["masked"]["seam"] == 40 * 2 * 64 and (causes[:, 25:27] == code("seam")).all()
    assert causes[3, 50, 50] == code("invalid") and causes[21, 45, 40] == code("saturated")
    assert (causes[:, 40, 10] == code("hot")).all()
    alien = sum(a["masked_voxels"] for a in corrections["aliens"] if a["masked"])
    assert causes[30, 12, 45] == code("alien") and counts[code("alien")] == alien > 0


def test_binning_cropping_and_padding_keep_the_map_the_masks_twin(frames, tmp_path):
    np.save(tmp_path / "scan.npy", frames)
    ds = _load(tmp_path / "scan.npy", bin_factor=2, shape=(48, 32, 24))
    causes = _assert_twins(ds)
    assert ds["intensity"].shape == (48, 32, 24)
    assert (causes[:4] == code("padding")).all() and (causes[-4:] == code("padding")).all()
    assert (causes[4:-4, 12:14] == code("seam")).all()  # binned rows 12-13: chip rows 255-256
    assert (causes[4:-4, 20, 1] == code("hot")).all()  # the hot pixel's binned column 5, cropped


def test_the_fingerprint_hashes_data_geometry_and_mask_not_the_causes(frames, tmp_path):
    """Scans loaded before the cause map was stored keep their fingerprints (and inputs)."""
    np.save(tmp_path / "scan.npy", frames)
    ds = _load(tmp_path / "scan.npy")
    content = {
        "data": array_digest(ds["intensity"].values),
        "geometry": ds.attrs["geometry"],
        "mask": array_digest(np.packbits(ds["mask"].values)),
    }
    assert ds.attrs["fingerprint"] == stable_hash(content)
    old = ds.drop_vars("mask_cause")  # an input written before mask_cause existed
    assert decode_input(old).mask_cause is None
    assert read_measurement(old, "inputs.x").mask is not None
    np.testing.assert_array_equal(decode_input(ds).mask_cause, ds["mask_cause"].values)


def test_without_a_preset_the_file_mask_saturation_and_nan_have_their_causes(tmp_path):
    from tests.data.test_load import FLAGS, _write_cxi

    data = peak_frames((20, 32, 32))[4:36, 16:48, 16:48].astype(np.float64)
    data[16, 20, 20] = np.nan
    data[10, 16, 17] = 3e5
    file_mask = np.zeros(data.shape[1:], bool)
    file_mask[5, 7] = True
    cxi = _write_cxi(tmp_path / "scan.cxi", data, mask=file_mask)
    with h5py.File(cxi, "a") as f:
        f["entry_1/instrument_1/detector_1/saturation_value"] = 2e5
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ds = load_scan(cxi, explicit=FLAGS)
    causes = ds["mask_cause"].values
    np.testing.assert_array_equal(ds["mask"].values, causes > 0)
    assert (causes[:, 5, 7] == code("file")).all()
    assert causes[16, 20, 20] == code("invalid") and causes[10, 16, 17] == code("saturated")
    assert cause_counts(causes) == {
        **dict.fromkeys(MASK_CAUSES, 0),
        "file": 32,
        "invalid": 1,
        "saturated": 1,
    }
    assert "corrections" not in ds.attrs


def test_a_binned_pixel_takes_the_lowest_cause_of_its_pixels_and_is_masked_as_binning_says():
    rng = np.random.default_rng(0)
    causes = np.where(rng.random((3, 9, 7)) < 0.2, rng.integers(1, 10, (3, 9, 7)), 0)
    causes = causes.astype(np.uint8)
    binned = bin_causes(causes, 2)
    with pytest.warns(LoadWarning, match="trimmed from"):  # 9 x 7 pixels: trimmed to 8 x 6
        _, mask = bin_detector(np.ones(causes.shape), causes > 0, 2, Record())
    np.testing.assert_array_equal(binned > 0, mask)
    block = causes[1, 2:4, 4:6]
    expect = block[block > 0].min() if (block > 0).any() else 0
    assert binned[1, 1, 2] == expect


def test_the_window_of_the_causes_is_the_window_of_the_mask():
    causes = np.zeros((10, 12, 8), np.uint8)
    causes[2, 3, 4] = code("hot")
    peak, target = (3, 5, 4), (8, 8, 12)  # pads a frame, crops rows, pads 2 columns each side
    with pytest.warns(LoadWarning, match="cropped/padded"):
        _, mask = window(np.ones(causes.shape), causes > 0, peak, target, Record())
    start = tuple(p - t // 2 for p, t in zip(peak, target, strict=True))
    out = window_causes(causes, start, target)
    np.testing.assert_array_equal(out > 0, mask)
    assert (out[0] == code("padding")).all() and (out[:, :, :2] == code("padding")).all()
    assert out[3, 2, 6] == code("hot") and np.count_nonzero(out == code("hot")) == 1
    assert flag_attrs()["flag_meanings"].startswith("measured invalid")
