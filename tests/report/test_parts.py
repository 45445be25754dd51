"""The report of a measured scan: measured against modelled intensity through the peak, the mask
by cause, the object in the laboratory frame with units, the Fourier errors against the Poisson
floor and the support's extent; and the same store as older versions wrote it (no cause map,
no floor, no extent), whose report leaves those parts out."""

import shutil
import warnings

import numpy as np
import pytest

from dyncdi_hpc.config import MergeRule
from dyncdi_hpc.data.causes import code
from dyncdi_hpc.data.load import load_scan
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.physics.geometry import Geometry
from dyncdi_hpc.report import parts
from dyncdi_hpc.report.page import write_report
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import REPO
from tests.report.test_export import fake_result

SCAN54 = REPO / "examples" / "data" / "aps34idc-au111-scan54"
KEY = "xtal-kinematical"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
WIDTHS = (0.6, 0.8, 0.8)  # coherence widths (px) the fake members "fitted"


def _crystal(shape: tuple[int, int, int]) -> np.ndarray:
    """A compact ellipsoidal crystal (radii 4, 10, 10 voxels) with a smooth phase ramp."""
    x0, x1, x2 = (np.arange(n) - n // 2 for n in shape)
    r2 = (x0[:, None, None] / 4) ** 2 + (x1[None, :, None] / 10) ** 2 + (x2 / 10) ** 2
    return (r2 < 1) * np.exp(0.05j * x1[None, :, None] + 0.03j * x2)


@pytest.fixture(scope="module")
def measured_store(tmp_path_factory):
    """Scan 54 of 34-ID-C loaded at 32 x 80 x 80 (its one hot pixel in every frame masked) and
    three noisy copies of a compact crystal as its 'reconstructions', merged."""
    store = Store.create(tmp_path_factory.mktemp("measured") / "m.zarr")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the load's LoadWarnings: what it masked and cropped
        inp = load_scan(
            SCAN54 / "frames",
            scan_file=SCAN54 / "example.spec",
            scan=54,
            dark=SCAN54 / "dark.tif",
            flat=SCAN54 / "whitefield.tif",
            threshold=2,
            shape=(32, 80, 80),
            explicit={"beamline": "aps-34idc", "material": "Au", "hkl": (1, 1, 1)},
        )
    store.write_input("xtal", inp)
    geometry = Geometry.from_attrs(inp.attrs["geometry"])
    obj = _crystal(geometry.shape)
    rng = np.random.default_rng(0)
    for seed in range(3):
        noisy = obj * np.exp(1j * rng.normal(0, 0.05, obj.shape))
        result = fake_result(noisy, geometry, seed, 0.05 + 0.01 * seed)
        result.attrs["metrics"] |= {f"coherence_width_{j}": w for j, w in enumerate(WIDTHS)}
        store.write_result(f"task{seed}", result)
    merge_store(store, MergeRule(select="all"))
    return store


def _with_merged_attrs(store: Store, **attrs) -> None:
    """Rewrite the merged group with attrs set (None: removed), as another merge would."""
    ds = store.read_merged(KEY)
    for name, value in attrs.items():
        ds.attrs.pop(name, None)
        if value is not None:
            ds.attrs[name] = value
    store.write_merged(KEY, ds)


@pytest.mark.slow
def test_the_report_of_a_measured_scan_shows_model_masks_lab_frame_and_floor(
    measured_store, tmp_path, monkeypatch
):
    extent = {"x": 300.0, "y": 200.0, "z": 100.0, "frame": "lab"}
    _with_merged_attrs(
        measured_store, fourier_error_floor=0.002, extent_nm=extent, independent_starts=2
    )
    drawn = {}

    def spy(name, function):
        def wrapper(*args, **kwargs):
            drawn[name] = (args, kwargs)
            return function(*args, **kwargs)

        monkeypatch.setattr(parts, name, wrapper)

    spy("mask_cause_figure", parts.mask_cause_figure)
    spy("sample_slices_figure", parts.sample_slices_figure)
    page = write_report(measured_store, tmp_path / "report")
    html = page.read_text()
    for suffix in ("intensity", "mask", "lab", "object", "support"):
        png = tmp_path / "report" / f"{KEY}-{suffix}.png"
        assert png.read_bytes()[:8] == PNG_MAGIC, suffix
        assert png.name in html, suffix
    assert not (tmp_path / "report" / f"{KEY}-truth.png").exists()  # measured: no truth
    assert "Measured (top) and modelled (bottom) intensity through the peak, log scale" in html
    assert "Masked voxels by cause" in html
    assert "Amplitude, phase and strain in the laboratory frame" in html
    assert "Poisson floor of the Fourier error: 0.002" in html
    assert "x floor)" in html and "model of the mean" in html
    assert "extent 300 × 200 × 100 nm (lab)" in html
    # the members' independent starts, in the merged section and in the page's summary
    assert "(3 candidates): 3 members from 2 independent starts.</p>" in html
    assert f"<li>merged/{KEY}: 3 of 3 results (3 members from 2 independent starts)</li>" in html
    # the legend counts the stored voxels of each cause and what the corrections read
    (_, causes, legend, frame, _), _ = drawn["mask_cause_figure"]
    assert legend == {code("hot"): "hot: 32 voxels (201 in the frames read)"}
    assert frame == 16 and causes.shape == (32, 80, 80)
    # every lab-frame panel row has its colour bar's units; the axes are labelled lab, in nm
    (_, fields, axes_nm, _, _), kwargs = drawn["sample_slices_figure"]
    assert [f[3] for f in fields] == ["amplitude (1)", "phase (rad)", "strain (10^-3)"]
    assert kwargs["frame"] == "lab" and len(axes_nm) == 3


@pytest.mark.slow
def test_an_older_store_without_causes_floor_or_extent_gives_a_shorter_report(
    measured_store, tmp_path
):
    path = tmp_path / "old.zarr"
    shutil.copytree(measured_store.path, path)
    old = Store.open(path)
    _with_merged_attrs(old, fourier_error_floor=None, extent_nm=None, independent_starts=None)
    inp = old.read_input("xtal")
    old.write_input("xtal", inp.drop_vars("mask_cause"))  # loaded before mask_cause was stored
    html = write_report(old, tmp_path / "report").read_text()
    assert not (tmp_path / "report" / f"{KEY}-mask.png").exists()
    assert (tmp_path / "report" / f"{KEY}-lab.png").exists()
    assert "Poisson floor" not in html and "x floor" not in html and "Support extent" not in html
    assert "Final Fourier error" in html and "model of the mean" in html
    # merged before the merge counted independent starts: the members alone, nothing extra
    assert "independent start" not in html
    assert f"<li>merged/{KEY}: 3 of 3 results</li>" in html
