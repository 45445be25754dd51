"""Loading measured scans: formats, geometry sources, every bad input and its record."""

import warnings

import h5py
import numpy as np
import pytest
import tifffile
import yaml

from dyncdi_hpc.config import DisplacementConfig
from dyncdi_hpc.data.load import load_scan
from dyncdi_hpc.data.measurement import read_measurement
from dyncdi_hpc.data.prepare import LoadWarning, fft_friendly
from dyncdi_hpc.data.simulate import simulate
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import GEOMETRY_32, sim_config

G = GEOMETRY_32
FLAGS = {
    "energy_kev": G.energy_kev,
    "detector_distance_m": G.detector_distance_m,
    "pixel_size_um": G.pixel_size_um,
    "rocking_step_deg": G.rocking_step_deg,
    "material": G.material,
    "hkl": G.hkl,
}


@pytest.fixture(scope="module")
def counts():
    """A noisy simulated scan of an unstrained crystal: photon counts, peak at the centre."""
    cfg = sim_config(noise=True).model_copy(
        update={"displacement": DisplacementConfig(kind="none")}
    )
    data = simulate(cfg, G.build()).intensity
    assert np.unravel_index(int(np.argmax(data)), data.shape) == (16, 16, 16)
    return data


def _geometry_yaml(path, **extra):
    fields = {k: list(v) if isinstance(v, tuple) else v for k, v in FLAGS.items()}
    path.write_text(yaml.safe_dump({**fields, **extra}))
    return path


def _write_cxi(path, data, mask=None, angles_deg=None):
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 150
        f["entry_1/data_1/data"] = data
        inst = f.create_group("entry_1/instrument_1")
        inst["source_1/energy"] = G.energy_kev * 1e3 * 1.602176634e-19  # J, as CXI says
        inst["detector_1/distance"] = G.detector_distance_m
        inst["detector_1/x_pixel_size"] = G.pixel_size_um * 1e-6
        inst["detector_1/y_pixel_size"] = G.pixel_size_um * 1e-6
        if mask is not None:
            inst["detector_1/mask"] = mask.astype(np.uint32)
        if angles_deg is None:
            angles_deg = 20.0 + G.rocking_step_deg * np.arange(data.shape[0])
        angle = f.create_dataset("entry_1/sample_1/geometry_1/rocking_angle", data=angles_deg)
        angle.attrs["units"] = "deg"
        f["entry_1/sample_1/material"] = G.material
        f["entry_1/sample_1/hkl"] = np.array(G.hkl)
    return path


def _load(path, **kw):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ds = load_scan(path, **kw)
    return ds, [str(w.message) for w in caught if issubclass(w.category, LoadWarning)]


def test_every_format_loads_into_identical_stores(counts, tmp_path):
    cxi = _write_cxi(tmp_path / "scan.cxi", counts)
    with h5py.File(tmp_path / "scan.h5", "w") as f:
        f["scan/frames"] = counts
    np.save(tmp_path / "scan.npy", counts)
    frames = tmp_path / "frames"
    frames.mkdir()
    for i, frame in enumerate(counts.astype(np.uint32)):
        tifffile.imwrite(frames / f"frame_{i:04d}.tif", frame)
    yml = _geometry_yaml(tmp_path / "geometry.yaml")
    loaded = {
        "cxi": _load(cxi),
        "hdf5": _load(tmp_path / "scan.h5", geometry_yaml=yml),
        "npy": _load(tmp_path / "scan.npy", explicit=FLAGS),
        "tiff": _load(frames, geometry_yaml=yml),
    }
    stores = {}
    for name, (ds, warned) in loaded.items():
        assert warned == [], name
        store = Store.create(tmp_path / f"{name}.zarr")
        store.write_input("xtal", ds)
        stores[name] = store.read_input("xtal")
    ref = stores["cxi"]
    np.testing.assert_array_equal(ref["intensity"].values, counts)
    for name, ds in stores.items():
        assert ds.attrs["fingerprint"] == ref.attrs["fingerprint"], name
        assert ds.attrs["geometry"] == ref.attrs["geometry"], name
        assert ds.identical(ref.assign_attrs(ds.attrs)), name
        assert "mask" not in ds
    assert ref.attrs["source"]["format"] == "cxi"
    m = read_measurement(ref, "inputs.xtal")
    assert m.geometry == G.build()


def test_flags_override_the_yaml_and_the_yaml_overrides_the_file(counts, tmp_path):
    cxi = _write_cxi(tmp_path / "scan.cxi", counts)
    yml = tmp_path / "g.yaml"
    yml.write_text(yaml.safe_dump({"energy_kev": 8.0, "detector_distance_m": 2.0}))
    ds, warned = _load(cxi, geometry_yaml=yml, explicit={"detector_distance_m": 1.5})
    assert ds.attrs["geometry"]["energy_kev"] == pytest.approx(8.0)
    assert ds.attrs["geometry"]["detector_distance_m"] == 1.5
    assert any("energy_kev" in w and "the YAML's value is used" in w for w in warned)
    sources = ds.attrs["provenance"]["load"]["sources"]
    assert sources["energy_kev"] == "yaml"
    assert sources["detector_distance_m"] == "flag"
    assert sources["pixel_size_um"] == "file"
    assert sources["polarisation"] == "default"


def test_bad_values_are_errors_naming_the_field_and_the_fix(counts, tmp_path):
    nan = counts.copy()
    nan[0, 0, 0] = -3
    np.save(tmp_path / "neg.npy", nan)
    with pytest.raises(DyncdiError, match=r"intensity: 1 negative counts.*fix: subtract"):
        load_scan(tmp_path / "neg.npy", explicit=FLAGS)
    np.save(tmp_path / "ok.npy", counts)
    flags = dict(FLAGS)
    del flags["energy_kev"]
    with pytest.raises(DyncdiError, match=r"energy_kev not found.*--energy-kev"):
        load_scan(tmp_path / "ok.npy", explicit=flags)
    yml = _geometry_yaml(tmp_path / "g.yaml", shape=[32, 32, 30])
    with pytest.raises(DyncdiError, match=r"geometry.shape: .*\[32, 32, 30\].*\[32, 32, 32\]"):
        load_scan(tmp_path / "ok.npy", geometry_yaml=yml)
    cxi = _write_cxi(tmp_path / "short.cxi", counts, angles_deg=np.arange(30) * 0.005)
    with pytest.raises(DyncdiError, match="30 rocking angles but 32 frames"):
        load_scan(cxi)
    np.save(tmp_path / "flat.npy", counts[0])
    with pytest.raises(DyncdiError, match="3D scan"):
        load_scan(tmp_path / "flat.npy", explicit=FLAGS)


def test_a_rocking_range_that_misses_the_peak_is_refused(counts, tmp_path):
    np.save(tmp_path / "half.npy", counts[14:])  # the scan starts on the peak's flank
    with pytest.raises(DyncdiError, match=r"rocking: the rocking scan does not cover the peak"):
        load_scan(tmp_path / "half.npy", explicit=FLAGS)


def test_an_empty_scan_and_a_scan_without_counts_are_named_as_such(counts, tmp_path):
    np.save(tmp_path / "empty.npy", counts[:0])
    with pytest.raises(DyncdiError, match=r"FRAMES: the scan is empty \(shape \[0, 32, 32\]\)"):
        load_scan(tmp_path / "empty.npy", explicit=FLAGS)
    np.save(tmp_path / "zero.npy", np.zeros_like(counts))
    with pytest.raises(DyncdiError, match=r"intensity: no counts: every unmasked pixel") as caught:
        load_scan(tmp_path / "zero.npy", explicit=FLAGS)
    assert "edge" not in str(caught.value)  # not told that the peak is at the edge


def test_a_peak_at_the_detector_edge_is_refused(counts, tmp_path):
    np.save(tmp_path / "edge.npy", counts[:, 13:, :])  # peak 3 rows from the edge
    with pytest.raises(DyncdiError, match=r"row: the Bragg peak at row index 3 .*fix: re-centre"):
        load_scan(tmp_path / "edge.npy", explicit=FLAGS)


def test_nan_saturated_and_masked_pixels_are_masked_and_recorded(counts, tmp_path):
    data = counts.astype(np.float64)
    data[16, 20, 20] = np.nan
    file_mask = np.zeros(counts.shape[1:], bool)
    file_mask[5, 7] = True  # a dead pixel in every frame
    data[16, 16, 17] = 2e5
    cxi = _write_cxi(tmp_path / "scan.cxi", data, mask=file_mask)
    with h5py.File(cxi, "a") as f:
        f["entry_1/instrument_1/detector_1/saturation_value"] = 2e5
    ds, warned = _load(cxi)
    mask = ds["mask"].values
    assert mask[16, 20, 20] and mask[16, 16, 17] and mask[:, 5, 7].all()
    assert mask.sum() == 32 + 2
    assert np.isfinite(ds["intensity"].values).all()
    steps = {c["step"] for c in ds.attrs["provenance"]["load"]["choices"]}
    assert {"mask", "saturation", "invalid"} <= steps
    assert any("1 NaN" in w for w in warned)
    assert any("1 saturated" in w for w in warned)
    assert any("32 pixels masked by the file's mask" in w for w in warned)
    read_measurement(ds, "inputs.x")  # the masked input validates


def test_non_integer_counts_warn(counts, tmp_path):
    np.save(tmp_path / "norm.npy", counts / 7.0)
    ds, warned = _load(tmp_path / "norm.npy", explicit=FLAGS)
    assert any("not integers" in w for w in warned)
    assert "counts" in {c["step"] for c in ds.attrs["provenance"]["load"]["choices"]}


def test_off_centre_peak_is_cropped_to_fft_sizes_and_recorded(counts, tmp_path):
    padded = np.zeros((32, 45, 40), np.float32)
    padded[:, 4:36, 6:38] = counts  # peak at row 20, col 22 of a 45 x 40 detector
    np.save(tmp_path / "wide.npy", padded)
    ds, warned = _load(tmp_path / "wide.npy", explicit=FLAGS)
    assert ds["intensity"].shape == (32, 40, 36)
    assert all(fft_friendly(n) for n in ds["intensity"].shape)
    np.testing.assert_array_equal(ds["intensity"].values[:, 4:36, 2:34], counts)
    crop = [c for c in ds.attrs["provenance"]["load"]["choices"] if c["step"] == "crop"]
    assert crop and crop[0]["source_slices"] == [[0, 32], [0, 40], [4, 40]]
    assert any("cropped" in w for w in warned)


def test_padding_to_a_requested_shape_masks_the_padding(counts, tmp_path):
    np.save(tmp_path / "scan.npy", counts)
    ds, warned = _load(tmp_path / "scan.npy", explicit=FLAGS, shape=(36, 32, 32))
    assert ds["intensity"].shape == (36, 32, 32)
    assert ds["mask"].values[:2].all() and ds["mask"].values[-2:].all()
    assert not ds["mask"].values[2:34].any()
    assert any("4096 padded voxels masked" in w for w in warned)


def test_binning_sums_pixels_and_scales_the_pixel_size(counts, tmp_path):
    np.save(tmp_path / "scan.npy", counts)
    ds, _ = _load(tmp_path / "scan.npy", explicit=FLAGS, bin_factor=2)
    assert ds["intensity"].shape == (32, 16, 16)
    assert ds.attrs["geometry"]["pixel_size_m"] == pytest.approx(2 * G.pixel_size_um * 1e-6)
    assert float(ds["intensity"].sum()) == pytest.approx(float(counts.sum()), rel=1e-6)
    assert ds.attrs["provenance"]["load"]["bin"] == 2


def test_a_peak_near_the_centre_is_kept_and_one_further_off_is_recentred(tmp_path):
    strained = simulate(sim_config(noise=True), G.build()).intensity  # maximum at (17, 16, 17)
    np.save(tmp_path / "scan.npy", strained)
    ds, warned = _load(tmp_path / "scan.npy", explicit=FLAGS)
    np.testing.assert_array_equal(ds["intensity"].values, strained)  # within 2 voxels: kept
    assert ds.attrs["provenance"]["load"]["peak_before_crop"] == [17, 16, 17]
    assert warned == []
    off = np.zeros((32, 40, 32), np.float32)
    off[:, 8:40] = strained  # the peak 4 rows from the centre: re-centred on its brightest voxel
    np.save(tmp_path / "off.npy", off)
    ds, warned = _load(tmp_path / "off.npy", explicit=FLAGS)
    np.testing.assert_array_equal(ds["intensity"].values, strained[2:, :, 2:])
    assert ds.attrs["provenance"]["load"]["peak_before_crop"] == [17, 24, 17]
    assert any("[32, 40, 32] -> [30, 32, 30]" in w for w in warned)


def test_nexus_transformations_give_the_motors_of_a_preset(tmp_path):
    from tests.data.beamline_files import (
        BRAGG_DEG,
        SHAPE,
        STEP_DEG,
        assert_measured_steps,
        peak_frames,
    )

    theta = BRAGG_DEG + STEP_DEG * (np.arange(SHAPE[0]) - SHAPE[0] // 2)
    path = tmp_path / "scan.nxs"
    with h5py.File(path, "w") as f:
        entry = f.create_group("entry")
        entry.attrs["NX_class"] = "NXentry"
        data = entry.create_group("data")
        data.attrs.update(NX_class="NXdata", signal="counts")
        data["counts"] = peak_frames((20, 32, 32))
        entry["instrument/source/energy"] = 9.0
        entry["instrument/source/energy"].attrs["units"] = "keV"
        entry["instrument/detector/distance"] = 0.5
        rotations = {
            "sample/transformations": {"Theta": theta, "Chi": 0.0, "Phi": 0.0},
            "instrument/detector/transformations": {"Delta": np.radians(2 * BRAGG_DEG)},
        }
        for where, angles in rotations.items():
            group = entry.create_group(where)
            group.attrs["NX_class"] = "NXtransformations"
            for name, value in angles.items():
                group[name] = value
                group[name].attrs.update(
                    transformation_type="rotation", units="rad" if name == "Delta" else "deg"
                )
        gamma = entry.create_group("instrument/gamma")
        gamma.attrs["NX_class"] = "NXpositioner"
        gamma["value"] = 0.0
    roi = (300, 364, 300, 364)
    ds, _ = _load(path, explicit={"beamline": "aps-34idc", "roi": roi})
    g = ds.attrs["geometry"]
    motors = {"Theta": BRAGG_DEG, "Chi": 0.0, "Phi": 0.0, "Delta": 2 * BRAGG_DEG, "Gamma": 0.0}
    assert g["motors"] == pytest.approx(motors)
    assert g["rocking_motor"] == "Theta" and g["energy_kev"] == 9.0
    assert ds.attrs["source"]["format"] == "nexus"
    assert_measured_steps(
        g,
        detector_distance_m=0.5,
        beamline="aps-34idc",
        motors=motors,
        rocking_motor="Theta",
        roi=roi,
    )
    load = ds.attrs["provenance"]["load"]
    assert load["found"]["rocking"] == "/entry/sample/transformations/Theta"
    assert load["sources"]["rocking_step_deg"] == "file"
    # without a preset the motors are noted and the geometry is the idealised one
    flags = {"pixel_size_um": 55.0, "material": "Au", "hkl": (1, 1, 1)}
    ds, warned = _load(path, explicit=flags)
    assert "q_basis_lab" not in ds.attrs["geometry"] and warned == []
    assert any(
        "not used without a beamline" in c.get("message", "")
        for c in ds.attrs["provenance"]["load"]["choices"]
    )
    with pytest.raises(DyncdiError, match=r"--roi: roi describe a measured geometry"):
        load_scan(path, explicit={**flags, "roi": roi})


def test_dark_and_threshold_need_a_beamline(counts, tmp_path):
    np.save(tmp_path / "scan.npy", counts)
    with pytest.raises(DyncdiError, match=r"--dark: detector corrections need the detector's chip"):
        load_scan(tmp_path / "scan.npy", explicit=FLAGS, dark=tmp_path / "scan.npy")
    with pytest.raises(DyncdiError, match=r"--threshold: needs a beamline preset"):
        load_scan(tmp_path / "scan.npy", explicit=FLAGS, threshold=2)
