"""A sweep's `path:` datasets are read by the same readers, with the same checks, centring and
cropping as `dyncdi load`; the fingerprints of idealised .npy datasets written before stay."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import tifffile
import yaml

from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.data.prepare import LoadWarning
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.inputs import resolve
from tests.conftest import GEOMETRY_32, REPO

SCAN54 = REPO / "examples" / "data" / "aps34idc-au111-scan54"


def _peak(shape=(32, 32, 32), centre=(16, 16, 16)) -> np.ndarray:
    """A Gaussian peak of integer counts (exactly reproducible), float32."""
    grids = np.meshgrid(*(np.arange(n) for n in shape), indexing="ij")
    r2 = sum((g - c) ** 2 for g, c in zip(grids, centre, strict=True))
    return np.round(1e4 * np.exp(-r2 / 8.0)).astype(np.float32)


def _resolve(tmp_path, datasets: dict) -> dict:
    spec = {"name": "measured", "store": "s.zarr", "datasets": datasets}
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        found = resolve(load_sweep(path), None)
    return found, [str(w.message) for w in caught]


def test_an_idealised_npy_dataset_keeps_its_fingerprint(tmp_path):
    np.save(tmp_path / "peak.npy", _peak())
    geometry = GEOMETRY_32.model_dump(mode="json")
    found, warned = _resolve(tmp_path, {"x": {"path": "peak.npy", "geometry": geometry}})
    # the fingerprint the code before the beamline readers gave this dataset (commit 9f49a8c)
    assert found["x"].fingerprint == "636f8dcd7b58a78a"
    assert found["x"].geometry == GEOMETRY_32.build()
    assert warned == []


def test_a_tiff_folder_is_a_dataset_like_its_npy(tmp_path):
    data = _peak()
    np.save(tmp_path / "peak.npy", data)
    (tmp_path / "frames").mkdir()
    for i, frame in enumerate(data.astype(np.uint16)):
        tifffile.imwrite(tmp_path / "frames" / f"f_{i:03d}.tif", frame)
    geometry = GEOMETRY_32.model_dump(mode="json")
    found, _ = _resolve(
        tmp_path,
        {
            "npy": {"path": "peak.npy", "geometry": geometry},
            "tiff": {"path": "frames", "geometry": geometry},
        },
    )
    assert found["tiff"].fingerprint == found["npy"].fingerprint
    assert found["tiff"].group.attrs["source"]["format"] == "tiff-frames"


def test_a_raw_off_centre_scan_is_centred_and_cropped(tmp_path):
    np.save(tmp_path / "raw.npy", _peak((201, 64, 64), (99, 30, 34)))
    geometry = {**GEOMETRY_32.model_dump(mode="json"), "shape": [201, 64, 64]}
    found, warned = _resolve(tmp_path, {"x": {"path": "raw.npy", "geometry": geometry}})
    assert found["x"].geometry.shape == (192, 60, 60)
    group = found["x"].group
    assert group["intensity"].shape == (192, 60, 60)
    assert np.unravel_index(int(np.argmax(group["intensity"].values)), (192, 60, 60)) == (
        96,
        30,
        30,
    )
    assert any("[201, 64, 64] -> [192, 60, 60]" in w for w in warned)


def test_scan54_from_a_sweep_spec_is_the_measured_geometry(tmp_path):
    dataset = {
        "path": str(SCAN54 / "frames"),
        "spec": str(SCAN54 / "example.spec"),
        "scan": 54,
        "geometry": {"beamline": "aps-34idc"},
        "bin": 2,
    }
    found, warned = _resolve(tmp_path, {"s54": dataset})
    g = found["s54"].group.attrs["geometry"]
    assert found["s54"].geometry.measured and g["binning"] == [2, 2]
    assert found["s54"].geometry.shape == (192, 64, 64)
    assert g["roi"] == [62, 190, 63, 191] and g["rocking_motor"] == "Theta"
    assert any("lattice strain" in w for w in warned)


@pytest.mark.parametrize(
    ("dataset", "field"),
    [
        ({"path": "missing.npy", "geometry": {}}, "datasets.x.path: no such file"),
        (
            {"path": "frames", "geometry": {"beamline": "aps-34idc"}, "spec": "no.spec"},
            "datasets.x.spec: no such file",
        ),
        (
            {"path": "raw.npy", "geometry": {"energy_kev": 9.0}},
            "datasets.x.geometry: rocking_step_deg",
        ),
        ({"path": "raw.npy", "geometry": {"colour": 1}}, "datasets.x.geometry: unknown key colour"),
    ],
)
def test_bad_path_datasets_name_their_field(tmp_path, dataset, field):
    np.save(tmp_path / "raw.npy", _peak())
    with pytest.raises(DyncdiError) as err:
        _resolve(tmp_path, {"x": dataset})
    assert field in str(err.value)


def test_a_stored_scan_without_its_mask_causes_is_rewritten_with_them(tmp_path):
    """An input loaded before mask_cause was stored has the same fingerprint: a sweep rewrites
    it with the causes (its results stay valid) and, once it has them, leaves it alone."""
    from dyncdi_hpc import inputs
    from dyncdi_hpc.store.zarr_store import Store

    data = _peak().astype(np.uint16)
    data[2, 3, 4] = np.iinfo(np.uint16).max  # a saturated voxel: a mask, so a cause map
    np.save(tmp_path / "peak.npy", data)
    geometry = GEOMETRY_32.model_dump(mode="json")
    spec_path = tmp_path / "spec.yaml"
    spec_path.write_text(
        yaml.safe_dump(
            {
                "name": "m",
                "store": "s.zarr",
                "datasets": {"x": {"path": "peak.npy", "geometry": geometry}},
            }
        )
    )
    spec = load_sweep(spec_path)
    store = Store.create(tmp_path / "s.zarr")

    def build() -> dict:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", LoadWarning)
            return inputs.build(spec, resolve(spec, store), store)

    inputs.write(store, build())
    old = store.read_input("x")
    assert old["mask_cause"].values[2, 3, 4] > 0
    store.write_input("x", old.drop_vars("mask_cause"))  # as the code before wrote it
    groups = build()
    assert list(groups) == ["x"] and "mask_cause" in groups["x"]
    inputs.write(store, groups)
    assert store.input_attrs("x")["fingerprint"] == old.attrs["fingerprint"]
    assert build() == {}
