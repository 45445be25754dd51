"""Scan 54 of APS 34-ID-C from its spec file and TIFF frames (the copy shipped in examples/):
the geometry against xrayutilities called directly here, and every bad input named."""

from __future__ import annotations

import math
import shutil
import warnings

import numpy as np
import pytest
import tifffile
import xrayutilities as xu
import yaml
from scipy.ndimage import uniform_filter

from dyncdi_hpc.config import GeometryConfig
from dyncdi_hpc.config.beamline import packaged_beamlines
from dyncdi_hpc.data.load import load_scan
from dyncdi_hpc.data.prepare import LoadWarning
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.geometry import Geometry
from tests.conftest import REPO

SCAN54 = REPO / "examples" / "data" / "aps34idc-au111-scan54"
SPEC = SCAN54 / "example.spec"
FRAMES = SCAN54 / "frames"
AU111_D_NM = 0.407825 / math.sqrt(3)


def _load(frames=FRAMES, **options):
    options = {"explicit": {"beamline": "aps-34idc"}, "scan_file": SPEC, "scan": 54, **options}
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", LoadWarning)
        ds = load_scan(frames, **options)
    return ds, [str(w.message) for w in caught if issubclass(w.category, LoadWarning)]


@pytest.fixture(scope="module")
def scan54():
    return _load()


def xu_reference():
    """q steps b0, b1, b2 (nm^-1, columns) and |Q| at the Bragg peak of scan 54, from the
    spec file, the frames and xrayutilities alone: the peak is the brightest 3x3x3 average,
    the steps are secants (Q one frame, one row and one column on minus Q at the peak)."""
    old = xu.config.VERBOSITY
    xu.config.VERBOSITY = 0
    try:
        scan = next(s for s in xu.io.SPECFile(str(SPEC)).scan_list if s.nr == 54)
        scan.ReadData()
        roi_header = scan.getheader_element("UIMR5")
    finally:
        xu.config.VERBOSITY = old
    motors = {k.removeprefix("INIT_MOPO_"): v for k, v in scan.init_motor_pos.items()}
    min_x, size_x, min_y, size_y = (int(v) for v in roi_header.split()[:4])
    frames = np.stack([tifffile.imread(p) for p in sorted(FRAMES.glob("*.tif"))])
    smooth = uniform_filter(frames.astype(float), size=3, mode="constant")
    f, r, c = np.unravel_index(int(np.argmax(smooth)), frames.shape)
    # 34-ID-C: sample Theta (y+), Chi (z-), Phi (y+); detector Delta (y+), Gamma (x-);
    # Timepix rows along -y and columns along +x, direct beam on pixel (256, 256) of 512 x 512
    qconv = xu.experiment.QConversion(
        ["y+", "z-", "y+"], ["y+", "x-"], [0, 0, 1], en=1e3 * motors["Energy"]
    )
    qconv.init_area(
        "y-",
        "x+",
        cch1=256,
        cch2=256,
        Nch1=512,
        Nch2=512,
        distance=1e-3 * motors["camdist"],
        pwidth1=55e-6,
        pwidth2=55e-6,
        roi=(min_y, min_y + size_y, min_x, min_x + size_x),
    )
    theta = scan.data["Theta"]

    def q_at(th):
        qx, qy, qz = qconv.area(
            th, motors["Chi"], motors["Phi"], motors["Delta"], motors["Gamma"], deg=True
        )
        return 10.0 * np.stack([qx, qy, qz], axis=-1)

    here, rocked = q_at(theta[f]), q_at(theta[f + 1])
    steps = np.stack(
        [rocked[r, c] - here[r, c], here[r + 1, c] - here[r, c], here[r, c + 1] - here[r, c]],
        axis=1,
    )
    return steps, float(np.linalg.norm(here[r, c])), (f, min_y + r, min_x + c)


def _angles(basis: np.ndarray) -> np.ndarray:
    u = basis / np.linalg.norm(basis, axis=0)
    return np.degrees(np.arccos([u[:, 0] @ u[:, 1], u[:, 0] @ u[:, 2], u[:, 1] @ u[:, 2]]))


def test_scan54_from_its_spec_file_alone_matches_xrayutilities(scan54):
    ds, warned = scan54
    g = ds.attrs["geometry"]
    expected, q_peak, (frame, row, col) = xu_reference()
    got = np.asarray(g["q_basis_lab"])
    np.testing.assert_allclose(
        np.linalg.norm(got, axis=0), np.linalg.norm(expected, axis=0), rtol=0.005
    )
    np.testing.assert_allclose(_angles(got), _angles(expected), atol=0.2)
    assert 2 * np.pi / q_peak == pytest.approx(AU111_D_NM, rel=0.015)
    assert 2 * np.pi / g["q_nm"] == pytest.approx(2 * np.pi / q_peak, rel=1e-3)
    # every value from the files: energy (#P4), distance (#P3 camdist, mm), motors (#P0),
    # the rocking motor (th -> Theta) at the stored centre frame, the detector and its ROI
    assert g["energy_kev"] == 9.0 and g["detector_distance_m"] == 0.5
    assert g["beamline"] == "aps-34idc" and g["detector"] == "34idcTIM2"
    assert g["rocking_motor"] == "Theta" and g["binning"] == [1, 1]
    assert g["centre_channel"] == [256.0, 256.0]
    shape = ds["intensity"].shape
    assert g["roi"] == [row - shape[1] // 2, row + shape[1] // 2, col - shape[2] // 2, 191]
    assert g["motors"]["Theta"] == pytest.approx(-0.2799992 + frame * 0.005, abs=2e-4)
    assert {k: g["motors"][k] for k in ("Chi", "Phi", "Delta", "Gamma")} == {
        "Chi": 90.0,
        "Phi": -5.0,
        "Delta": 32.174,
        "Gamma": 12.6346,
    }
    assert math.degrees(g["rocking_step_rad"]) == pytest.approx(0.005, rel=1e-3)
    sources = ds.attrs["provenance"]["load"]["sources"]
    for name in ("energy_kev", "detector_distance_m", "rocking_step_deg", "roi", "detector"):
        assert sources[name] == "file", name
    assert sources["centre_channel"] == "preset" and sources["beamline"] == "flag"
    assert set(sources["motors"].values()) == {"file"}
    # the measured |Q| is 0.54% short of gold's d-spacing: warned, with the strain
    assert any("lattice strain of +0.5" in w for w in warned)


def test_the_stored_attrs_rebuild_the_stored_geometry(scan54):
    ds, _ = scan54
    g = ds.attrs["geometry"]
    fields = {k: g[k] for k in GeometryConfig.model_fields.keys() & g.keys()}
    cfg = GeometryConfig(**fields, rocking_step_deg=math.degrees(g["rocking_step_rad"]))
    expected = np.asarray(g["q_basis_lab"])
    np.testing.assert_allclose(cfg.build().q_basis_lab, expected, atol=1e-9 * abs(expected).max())
    assert Geometry.from_attrs(g).q_basis_lab == pytest.approx(np.asarray(g["q_basis_lab"]))
    assert ds["intensity"].shape == tuple(cfg.shape) == (192, 128, 128)


def test_flags_and_the_yaml_override_the_spec_file(tmp_path):
    yml = tmp_path / "g.yaml"
    yml.write_text(yaml.safe_dump({"detector_distance_m": 0.6, "motors": {"Gamma": 12.0}}))
    ds, _ = _load(
        geometry_yaml=yml, explicit={"beamline": "aps-34idc", "centre_channel": (250.0, 260.0)}
    )
    g = ds.attrs["geometry"]
    assert g["detector_distance_m"] == 0.6 and g["motors"]["Gamma"] == 12.0
    assert g["centre_channel"] == [250.0, 260.0]
    sources = ds.attrs["provenance"]["load"]["sources"]
    assert sources["detector_distance_m"] == "yaml" and sources["centre_channel"] == "flag"
    assert sources["motors"]["Gamma"] == "yaml" and sources["motors"]["Delta"] == "file"


def _copy_frames(tmp_path, edit=None):
    folder = tmp_path / "frames"
    shutil.copytree(FRAMES, folder)
    if edit is not None:
        edit(folder)
    return folder


def _preset(tmp_path, edit) -> str:
    data = yaml.safe_load(packaged_beamlines()["aps-34idc"].read_text())
    edit(data)
    path = tmp_path / "preset.yaml"
    path.write_text(yaml.safe_dump(data))
    return str(path)


def _rename_phi(data):
    data["sample_circles"][2].update(name="Kappa", mnemonic="kap")


def _drop_th(data):
    data["sample_circles"][0]["mnemonic"] = "theta"


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("no scan", r"--scan: example.spec has no scan 55 \(scans 54-54\)"),
        ("frame count", r"FRAMES: 200 frames in .* but scan 54 of example.spec recorded 201"),
        ("preset motor", r"motors: .*example.spec gives no position for Kappa"),
        ("preset rocking", r"rocks 'th', which is not a circle .*of the preset"),
        ("mixed shapes", r"FRAMES: TIFF frames of mixed shapes: Staff20-1a_S0054_00007.tif is"),
        ("dark shape", r"--dark: dark field of shape \[128, 128\], not the detector's chip 512"),
        ("flat shape", r"--flat: flat field of shape \[128, 128\], not the detector's chip 512"),
        ("roi outside", r"--roi: ROI \[450, 578, 63, 191\] lies outside the chip"),
        ("peak at edge", r"col: the Bragg peak at col index 4 is 4 voxels from the edge"),
    ],
)
def test_bad_input_is_named_with_its_fix(tmp_path, case, message):
    options: dict = {}
    frames = FRAMES
    beamline = "aps-34idc"
    if case == "no scan":
        options["scan"] = 55
    elif case == "frame count":
        frames = _copy_frames(tmp_path, lambda d: (d / "Staff20-1a_S0054_00200.tif").unlink())
    elif case == "preset motor":
        beamline = _preset(tmp_path, _rename_phi)
    elif case == "preset rocking":
        beamline = _preset(tmp_path, _drop_th)
    elif case == "mixed shapes":
        odd = np.zeros((127, 128), np.int32)
        frames = _copy_frames(
            tmp_path, lambda d: tifffile.imwrite(d / "Staff20-1a_S0054_00007.tif", odd)
        )
    elif case in ("dark shape", "flat shape"):
        tifffile.imwrite(tmp_path / "field.tif", np.ones((128, 128), np.float32))
        options["dark" if case == "dark shape" else "flat"] = tmp_path / "field.tif"
    elif case == "roi outside":
        options["explicit"] = {"beamline": beamline, "roi": (450, 578, 63, 191)}
    elif case == "peak at edge":

        def crop(folder):
            for path in folder.glob("*.tif"):
                tifffile.imwrite(path, tifffile.imread(path)[:, 60:])

        frames = _copy_frames(tmp_path, crop)
        options["explicit"] = {"beamline": beamline, "roi": (62, 190, 123, 191)}
    options.setdefault("explicit", {"beamline": beamline})
    with pytest.raises(DyncdiError, match=message) as err:
        _load(frames, **options)
    assert err.value.fix  # every error says how to fix it
    assert "\n" not in str(err.value)


def test_a_scan_file_needs_a_preset():
    with pytest.raises(DyncdiError, match=r"--spec: a scan file is read through a beamline"):
        load_scan(FRAMES, scan_file=SPEC, scan=54)
