"""Export of merged results: VTK image data read back by VTK, CXI read back by h5py."""

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from vtk import vtkXMLImageDataReader
from vtk.util.numpy_support import vtk_to_numpy

from dyncdi_hpc.cli import main
from dyncdi_hpc.config import MergeRule
from dyncdi_hpc.inputs import simulated_input
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.report.export import sample_frame, write_cxi, write_vtk
from dyncdi_hpc.store.groups import GRID_DIMS, grid_coords
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import sim_config

NAMES = [
    "amplitude",
    "phase",
    "displacement",
    "strain",
    "amplitude_std",
    "phase_std",
    "displacement_std",
    "strain_std",
    "support",
    "support_probability",
]


def fake_result(obj, geometry, seed, error):
    """A result group as a task writes it (an object from elsewhere, e.g. a noisy copy)."""
    spec = {
        "dataset": "xtal",
        "fingerprint": "-",
        "seed": seed,
        "params": {
            "model": "kinematical",
            "log_every": 10,
            "recipe": "ER",
            "ad_steps": 3,
            "loss": "poisson",
            "tv_weight": 0.0,
        },
    }
    return xr.Dataset(
        {
            "amplitude": (GRID_DIMS, np.abs(obj).astype(np.float32)),
            "phase": (GRID_DIMS, np.angle(obj).astype(np.float32)),
            "support": (GRID_DIMS, np.abs(obj) > 0.5),
            "pr_error": (("pr_log",), np.geomspace(1, error, 5)),
            "ad_loss": (("ad_step",), np.geomspace(1, error, 3)),
        },
        coords=grid_coords(geometry.shape),
        attrs={
            "status": "done",
            "spec": spec,
            "metrics": {"error": error, "loss": error},
            "wall_s": 1.0,
            "device": {"platform": "cpu"},
            "reason": None,
        },
    )


@pytest.fixture(scope="module")
def merged_store(tmp_path_factory):
    """A store with a simulated input and four noisy 'reconstructions' of it, merged."""
    store = Store.create(tmp_path_factory.mktemp("export") / "s.zarr")
    inp = simulated_input(sim_config(), "xtal")
    store.write_input("xtal", inp)
    truth = inp["truth_amplitude"].values * np.exp(1j * inp["truth_phase"].values)
    rng = np.random.default_rng(0)
    for seed in range(4):
        obj = truth * np.exp(1j * (rng.normal(0, 0.05, truth.shape) + 0.3 * seed))
        store.write_result(f"task{seed}", fake_result(obj, _geometry(inp), seed, 0.1 + seed))
    merge_store(store, MergeRule(select="all"))
    return store


def _geometry(inp):
    from dyncdi_hpc.physics.geometry import Geometry

    return Geometry.from_attrs(inp.attrs["geometry"])


def test_vtk_file_holds_the_named_arrays_on_the_sample_grid(merged_store, tmp_path):
    (path,) = write_vtk(merged_store, tmp_path / "vtk")
    assert path.suffix == ".vti"
    reader = vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    ds = sample_frame(merged_store, "xtal-kinematical")
    shape = ds["amplitude"].shape
    assert image.GetDimensions() == shape
    voxel = ds.attrs["voxel_nm"]
    assert image.GetSpacing() == pytest.approx((voxel,) * 3)
    assert image.GetOrigin() == pytest.approx(ds.attrs["origin_nm"])
    points = image.GetPointData()
    names = {points.GetArrayName(i) for i in range(points.GetNumberOfArrays())}
    assert set(NAMES) <= names
    for name in ("amplitude", "strain", "phase_std"):
        values = vtk_to_numpy(points.GetArray(name)).reshape(shape[::-1]).T  # VTK: x fastest
        np.testing.assert_allclose(values, ds[name].values, rtol=1e-6, equal_nan=True)
    strain = ds["strain"].values[ds["support"].values]
    assert np.isfinite(strain).mean() > 0.5
    assert voxel == pytest.approx(78.27, rel=1e-3)  # the shortest conjugate step of GEOMETRY_32


def test_cxi_file_holds_the_complex_object_and_geometry(merged_store, tmp_path):
    path = write_cxi(merged_store, tmp_path / "out.cxi")
    ds = sample_frame(merged_store, "xtal-kinematical")
    with h5py.File(path) as f:
        data = f["entry_1/image_1/data"][()]
        assert data.shape == ds["amplitude"].shape[::-1]
        np.testing.assert_allclose(np.abs(data).T, ds["amplitude"].values, atol=1e-5)
        assert f["entry_1/image_1/strain"].attrs["units"] == "1"
        assert f["entry_1/image_1/voxel_size"][()] == pytest.approx(ds.attrs["voxel_nm"] * 1e-9)
        assert f["entry_1/instrument_1/detector_1/distance"][()] == 1.0


def test_cli_load_export_and_errors(merged_store, tmp_path):
    runner = CliRunner()
    np.save(tmp_path / "scan.npy", merged_store.read_input("xtal")["intensity"].values)
    args = [
        "load",
        str(tmp_path / "scan.npy"),
        "--out",
        str(tmp_path / "new.zarr"),
        "--energy-kev",
        "9",
        "--detector-distance-m",
        "1",
        "--pixel-size-um",
        "55",
        "--rocking-step-deg",
        "0.005",
        "--material",
        "Au",
        "--hkl",
        "1",
        "1",
        "1",
    ]
    result = runner.invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "wrote inputs/scan" in result.output
    assert Store.open(tmp_path / "new.zarr").input_names() == ["scan"]
    result = runner.invoke(main, args[:6])
    assert result.exit_code == 2
    assert (
        "error: geometry: rocking_step_deg, pixel_size_um, detector_distance_m not" in result.output
    )
    result = runner.invoke(
        main,
        [
            "export",
            str(merged_store.path),
            "--vtk",
            str(tmp_path / "v"),
            "--cxi",
            str(tmp_path / "r.cxi"),
        ],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "v" / "xtal-kinematical.vti").is_file() and (tmp_path / "r.cxi").is_file()
    result = runner.invoke(main, ["export", str(merged_store.path)])
    assert result.exit_code == 2 and "give --vtk DIR and/or --cxi FILE" in result.output
