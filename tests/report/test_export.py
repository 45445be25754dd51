"""Export of merged results: VTK image data and structured grids read back by VTK, CXI read
back by h5py, in the idealised and in a measured geometry; the exports' sizes."""

import h5py
import numpy as np
import pytest
import xarray as xr
from click.testing import CliRunner
from vtk import vtkXMLImageDataReader, vtkXMLStructuredGridReader
from vtk.util.numpy_support import vtk_to_numpy

from dyncdi_hpc.analysis.frames import support_box
from dyncdi_hpc.cli import main
from dyncdi_hpc.config import CrystalConfig, MergeRule, SimulateConfig
from dyncdi_hpc.inputs import simulated_input
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.physics.frames import frame_basis, frame_to_lab, sample_grid
from dyncdi_hpc.physics.geometry import Geometry
from dyncdi_hpc.report.export import frame_dataset, sample_frame, write_cxi, write_vtk
from dyncdi_hpc.store.groups import GRID_DIMS, grid_coords
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import GEOMETRY_32
from tests.physics.test_diffractometer import scan54_config

KEY = "xtal-kinematical"
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


def merged(path, geometry_config, size_nm) -> Store:
    """A store with a simulated input and four noisy 'reconstructions' of it, merged."""
    store = Store.create(path)
    crystal = CrystalConfig(size_nm=size_nm)
    inp = simulated_input(
        SimulateConfig(geometry=geometry_config, crystal=crystal, noise=False), "xtal"
    )
    store.write_input("xtal", inp)
    geometry = Geometry.from_attrs(inp.attrs["geometry"])
    truth = inp["truth_amplitude"].values * np.exp(1j * inp["truth_phase"].values)
    rng = np.random.default_rng(0)
    for seed in range(4):
        obj = truth * np.exp(1j * (rng.normal(0, 0.05, truth.shape) + 0.3 * seed))
        store.write_result(f"task{seed}", fake_result(obj, geometry, seed, 0.1 + seed))
    merge_store(store, MergeRule(select="all"))
    return store


@pytest.fixture(scope="module")
def merged_store(tmp_path_factory):
    return merged(tmp_path_factory.mktemp("export") / "s.zarr", GEOMETRY_32, 800.0)


@pytest.fixture(scope="module")
def measured_store(tmp_path_factory):
    """Scan 54 of 34-ID-C cut to 32^3 around its peak: a sheared, measured geometry."""
    cfg = scan54_config(shape=(32, 32, 32), roi=(110, 142, 111, 143))
    return merged(tmp_path_factory.mktemp("measured") / "m.zarr", cfg, 350.0)


def _geometry(store):
    return Geometry.from_attrs(store.input_attrs("xtal")["geometry"])


def _arrays(data, shape) -> dict[str, np.ndarray]:
    """Point arrays of a VTK dataset as numpy arrays of shape (i, j, k) (VTK: i fastest)."""
    points = data.GetPointData()
    return {
        points.GetArrayName(i): vtk_to_numpy(points.GetArray(i)).reshape(shape[::-1]).T
        for i in range(points.GetNumberOfArrays())
    }


def _read_vti(path):
    reader = vtkXMLImageDataReader()
    reader.SetFileName(str(path))
    reader.Update()
    image = reader.GetOutput()
    return image, _arrays(image, image.GetDimensions())


def _read_vts(path):
    reader = vtkXMLStructuredGridReader()
    reader.SetFileName(str(path))
    reader.Update()
    grid = reader.GetOutput()
    shape = [0, 0, 0]
    grid.GetDimensions(shape)
    points = vtk_to_numpy(grid.GetPoints().GetData()).reshape(*shape[::-1], 3)
    return points.transpose(2, 1, 0, 3), _arrays(grid, shape)


def test_vtk_image_data_holds_the_named_arrays_around_the_support(merged_store, tmp_path):
    vti, vts = write_vtk(merged_store, tmp_path / "vtk")
    assert (vti.suffix, vts.suffix) == (".vti", ".vts")
    image, arrays = _read_vti(vti)
    ds = frame_dataset(merged_store, KEY, "lab", margin=3)
    shape = ds["amplitude"].shape
    assert image.GetDimensions() == shape
    voxel = ds.attrs["voxel_nm"]
    assert image.GetSpacing() == pytest.approx((voxel,) * 3)
    assert image.GetOrigin() == pytest.approx(ds.attrs["origin_nm"])
    assert set(NAMES) <= set(arrays)
    for name in ("amplitude", "strain", "phase_std", "support"):
        np.testing.assert_array_equal(arrays[name], ds[name].values)
    assert arrays["amplitude"].dtype == np.float32
    # cropped: the support's box plus 3 voxels each side, out of the lab frame's whole grid
    assert support_box(arrays["support"].astype(bool), 0) == tuple(slice(3, n - 3) for n in shape)
    full = sample_grid(_geometry(merged_store), frame="lab").shape
    assert all(n < f for n, f in zip(shape, full, strict=True))
    strain = ds["strain"].values[ds["support"].values]
    assert np.isfinite(strain).mean() > 0.5
    assert voxel == pytest.approx(78.27, rel=1e-3)  # the shortest conjugate step of GEOMETRY_32


@pytest.mark.parametrize("which", ["idealised", "measured"])
@pytest.mark.parametrize("frame", ["lab", "crystal"])
def test_vtk_structured_grid_is_the_conjugate_grid_itself(
    merged_store, measured_store, tmp_path, which, frame
):
    store = merged_store if which == "idealised" else measured_store
    geometry = _geometry(store)
    _, vts = write_vtk(store, tmp_path / "vtk", frame=frame)
    points, arrays = _read_vts(vts)
    group = store.read_merged(KEY)
    box = support_box(group["support"].values, 3)
    basis = frame_basis(geometry, frame)
    m = np.stack(
        np.meshgrid(
            *(np.arange(n)[b] for n, b in zip(geometry.shape, box, strict=True)), indexing="ij"
        ),
        -1,
    )
    want = (m - np.asarray(geometry.shape) // 2) @ basis.T
    amplitude = group["amplitude"].values[box]
    if np.linalg.det(basis) < 0:  # written with the last axis reversed: right-handed cells
        want, amplitude = want[:, :, ::-1], amplitude[:, :, ::-1]
    np.testing.assert_allclose(points, want, rtol=1e-6, atol=1e-3)
    np.testing.assert_array_equal(arrays["amplitude"], amplitude)  # no interpolation
    assert set(NAMES) <= set(arrays)
    edges = np.stack([points[1, 0, 0], points[0, 1, 0], points[0, 0, 1]]) - points[0, 0, 0]
    assert np.linalg.det(edges) > 0
    if which == "measured":  # the cells keep the scan's shear
        cosine = edges[0] @ edges[1] / np.linalg.norm(edges[0]) / np.linalg.norm(edges[1])
        a = geometry.real_basis
        assert abs(cosine) == pytest.approx(
            abs(a[:, 0] @ a[:, 1]) / np.linalg.norm(a[:, 0]) / np.linalg.norm(a[:, 1]), rel=1e-4
        )


def _uncompressed_bytes(store, frame="lab") -> int:
    """What the previous export wrote per file: every field, float32, on the whole grid."""
    n_fields = len(frame_dataset(store, KEY, frame, margin=0).data_vars)
    return int(np.prod(sample_grid(_geometry(store), frame=frame).shape)) * 4 * n_fields


@pytest.mark.parametrize("which", ["idealised", "measured"])
def test_exports_are_cropped_and_compressed(merged_store, measured_store, tmp_path, which):
    """Against every field as float32 on the whole grid of the lab frame (what the previous
    export wrote per file), measured at 32^3: .vti 35x, .vts 31x, CXI (both grids) 11x
    idealised; 197x, 175x and 57x for scan 54 (its sheared grid has a large bounding box)."""
    store = merged_store if which == "idealised" else measured_store
    full = _uncompressed_bytes(store)
    vti, vts = write_vtk(store, tmp_path / "v")
    cxi = write_cxi(store, tmp_path / "r.cxi")
    for path, ratio in ((vti, 20), (vts, 20), (cxi, 8)):
        assert path.stat().st_size * ratio < full, (path.name, path.stat().st_size, full)


def test_cxi_holds_both_grids_and_the_geometry(merged_store, tmp_path):
    path = write_cxi(merged_store, tmp_path / "out.cxi")
    geometry = _geometry(merged_store)
    ds = frame_dataset(merged_store, KEY, "lab", margin=3)
    with h5py.File(path) as f:
        assert f["number_of_entries"][()] == 1
        image = f["entry_1/image_1"]
        data = image["data"][()]
        assert data.shape == ds["amplitude"].shape[::-1] and data.dtype == np.complex64
        np.testing.assert_allclose(np.abs(data).T, ds["amplitude"].values, atol=1e-5)
        assert image["data"].compression == "gzip"
        assert image["data_type"][()] == b"amplitude"
        assert image["strain"].attrs["units"] == "1"
        assert image["voxel_size"][()] == pytest.approx(ds.attrs["voxel_nm"] * 1e-9)
        assert ((image["mask"][()] & 0x00010000) > 0).T.tolist() == ds["support"].values.tolist()
        # basis_vectors: rows are the steps along the data's (z, y, x); lab frame, metres
        voxel_m = ds.attrs["voxel_nm"] * 1e-9
        np.testing.assert_allclose(image["basis_vectors"][()], voxel_m * np.eye(3)[::-1])
        first = image["corner_position"][()] + 0.5 * image["basis_vectors"][()].sum(axis=0)
        np.testing.assert_allclose(first, np.asarray(ds.attrs["origin_nm"]) * 1e-9)
        conj = f["entry_1/image_2"]
        box = support_box(merged_store.read_merged(KEY)["support"].values, 3)
        amplitude = merged_store.read_merged(KEY)["amplitude"].values[box]
        np.testing.assert_allclose(np.abs(conj["data"][()]), amplitude, rtol=1e-6)
        np.testing.assert_allclose(conj["basis_vectors"][()], geometry.real_basis_lab.T * 1e-9)
        det = f["entry_1/instrument_1/detector_1"]
        assert det["distance"][()] == 1.0
        np.testing.assert_allclose(np.linalg.norm(det["basis_vectors"][()], axis=1), 55e-6)
        energy = f["entry_1/instrument_1/source_1/energy"][()]
        assert energy == pytest.approx(9e3 * 1.602176634e-19)
        # the idealised lab frame: the crystal rocked about x, Q in the vertical plane
        q = f["entry_1/sample_1/scattering_vector"][()]
        assert q[0] == pytest.approx(0, abs=1e-6 * np.linalg.norm(q))
        assert np.linalg.norm(q) == pytest.approx(geometry.h_nm * 1e9)
        assert f["entry_1/sample_1/unit_cell"][3:].tolist() == [90.0, 90.0, 90.0]


def test_cxi_carries_the_measured_geometry_in_the_lab_frame(measured_store, tmp_path):
    geometry = _geometry(measured_store)
    path = write_cxi(measured_store, tmp_path / "m.cxi", frame="crystal")
    with h5py.File(path) as f:
        entry = f["entry_1"]
        conj = entry["image_2/basis_vectors"][()]
        np.testing.assert_allclose(conj, geometry.real_basis_lab.T * 1e-9)
        q_lab = np.asarray(geometry.frame.q_peak_lab) * 1e9
        np.testing.assert_allclose(entry["sample_1/scattering_vector"][()], q_lab, rtol=1e-9)
        q_steps = entry["instrument_1/detector_1/q_basis_vectors"][()]
        want = np.asarray(geometry.frame.q_steps_lab).T * 1e9
        np.testing.assert_allclose(q_steps, want, atol=1e-9 * np.abs(want).max())
        # the detector's row and column steps seen from the sample: one pixel each, normal to
        # the exit beam, its centre 0.5 m from the sample along k_f
        det = entry["instrument_1/detector_1"]
        steps = det["basis_vectors"][()]
        np.testing.assert_allclose(np.linalg.norm(steps, axis=1), 55e-6, rtol=1e-3)
        k_out = np.array([0, 0, geometry.k_nm * 1e9]) + q_lab
        np.testing.assert_allclose(steps @ k_out, 0, atol=1e-6 * 55e-6 * np.linalg.norm(k_out))
        centre = det["corner_position"][()] + (16 + 0.5) * steps.sum(axis=0)
        assert np.linalg.norm(centre) == pytest.approx(0.5, rel=1e-9)
        to_lab = np.asarray(geometry.sample_to_lab)
        orientation = entry["sample_1/geometry_1/orientation"][()]
        np.testing.assert_allclose(orientation, to_lab[:, :2].T.ravel())
        # image_1 in the crystal frame: its steps along (z, y, x) are the crystal axes
        voxel_m = entry["image_1/voxel_size"][()]
        rows = entry["image_1/basis_vectors"][()]
        np.testing.assert_allclose(rows, voxel_m * frame_to_lab(geometry, "crystal")[:, ::-1].T)
        assert b"crystal" in entry["image_1/process_1/comments"][()]


def test_the_report_s_sample_frame_is_unchanged(merged_store):
    s = sample_frame(merged_store, KEY)
    assert s.attrs["frame"] == "sample"
    assert s["amplitude"].shape == sample_grid(_geometry(merged_store)).shape


@pytest.mark.slow
def test_128_cubed_exports(tmp_path):
    """A 128^3 merged result (the 800 nm crystal of GEOMETRY_32 at 128^3, about 60 s to
    build). Measured while writing this: the previous export wrote 119 MB per file (.vti and
    CXI alike, every field on the whole sample-frame grid; 509 MB for scan 54 at 128^3); now
    .vti 2.4 MB, .vts 2.8 MB, CXI (both grids) 4.7 MB (50x, 43x, 26x smaller; scan 54: 3.0,
    2.5 and 4.6 MB, 110-200x)."""
    cfg = GEOMETRY_32.model_copy(update={"shape": (128, 128, 128)})
    store = merged(tmp_path / "s128.zarr", cfg, 800.0)
    full = _uncompressed_bytes(store)
    vti, vts = write_vtk(store, tmp_path / "v")
    cxi = write_cxi(store, tmp_path / "r.cxi")
    for path in (vti, vts, cxi):
        assert path.stat().st_size * 20 < full, (path.name, path.stat().st_size, full)


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
    assert (tmp_path / "v" / "xtal-kinematical.vts").is_file()
    result = runner.invoke(main, ["export", str(merged_store.path)])
    assert result.exit_code == 2 and "give --vtk DIR and/or --cxi FILE" in result.output
