"""Results in the lab, crystal and sample frames of a measured (strongly sheared) scan and of
the idealised one: known objects come back with their sizes and orientation, and the frames
differ by exactly the rotations the Geometry gives."""

import numpy as np
import pytest
import xarray as xr

from dyncdi_hpc.analysis.frames import (
    crop_to_support,
    merged_to_frame,
    merged_to_sample_frame,
    support_box,
    to_frame,
    to_sample_frame,
)
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.frames import (
    FRAMES,
    SampleGrid,
    conjugate_positions_nm,
    frame_basis,
    frame_to_crystal,
    frame_to_lab,
    sample_grid,
)
from dyncdi_hpc.store.groups import GRID_DIMS, grid_coords
from tests.conftest import GEOMETRY_32
from tests.physics.test_diffractometer import angles_between, scan54_config


def scan54(n: int):
    """Scan 54 of 34-ID-C cut to n^3 around its peak pixel: a measured, sheared geometry."""
    return scan54_config(
        shape=(n, n, n), roi=(126 - n // 2, 126 + n // 2, 127 - n // 2, 127 + n // 2)
    ).build()


@pytest.fixture(scope="module")
def measured():
    return scan54(48)


def _rotation(a: float, b: float, c: float) -> np.ndarray:
    """A proper rotation from three angles (rad) about z, y, x."""
    ca, sa, cb, sb, cc, sc = np.cos(a), np.sin(a), np.cos(b), np.sin(b), np.cos(c), np.sin(c)
    rz = np.array([[ca, -sa, 0], [sa, ca, 0], [0, 0, 1]])
    ry = np.array([[cb, 0, sb], [0, 1, 0], [-sb, 0, cb]])
    rx = np.array([[1, 0, 0], [0, cc, -sc], [0, sc, cc]])
    return rz @ ry @ rx


def _positions(da: xr.DataArray) -> np.ndarray:
    return np.stack(np.meshgrid(*(da[d].values for d in ("x", "y", "z")), indexing="ij"), -1)


def test_the_measured_grid_is_strongly_sheared(measured):
    assert measured.measured
    assert angles_between(measured.q_basis_lab)[0] == pytest.approx(76.9, abs=0.3)
    np.testing.assert_allclose(frame_basis(measured, "lab"), measured.real_basis_lab)
    np.testing.assert_allclose(frame_basis(measured, "crystal"), measured.real_basis)


@pytest.mark.parametrize("frame", FRAMES)
def test_frame_rotations_are_the_geometry_s_and_proper(measured, frame):
    rot = frame_to_lab(measured, frame)
    want = {"lab": np.eye(3), "crystal": measured.crystal_to_lab, "sample": measured.sample_to_lab}
    np.testing.assert_array_equal(rot, want[frame])
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-9)
    assert np.linalg.det(rot) == pytest.approx(1.0, abs=1e-9)
    # the crystal frame's z is the measured Q
    q = np.asarray(measured.frame.q_peak_lab)
    np.testing.assert_allclose(measured.crystal_to_lab[:, 2], q / np.linalg.norm(q), atol=1e-12)


def test_an_ellipsoid_defined_in_the_lab_comes_back_with_its_axes(measured):
    """Semi-axes 420, 300, 200 nm along three tilted lab directions, drawn on the sheared
    grid through real_basis_lab, resampled onto the lab grid: its second moments give the
    semi-axes within 1% and the axes within 1 deg (a uniform ellipsoid: <x^2> = a^2 / 5;
    measured: 0.3% and 0.15 deg)."""
    axes = _rotation(0.4, -0.7, 1.1)
    semi = np.array([420.0, 300.0, 200.0])
    local = conjugate_positions_nm(measured, "lab") @ axes
    rho = np.linalg.norm(local / semi, axis=-1)
    amplitude = np.clip((1.0 - rho) * semi.min() / 25.0 + 0.5, 0.0, 1.0)  # 25 nm edge ramp
    faces = [np.take(amplitude, i, axis=a) for a in range(3) for i in (0, -1)]
    assert max(f.max() for f in faces) == 0  # whole inside the field of view
    grid = SampleGrid((71, 71, 71), 15.0)  # +-525 nm: around the ellipsoid only
    vol = to_frame(amplitude, measured, "lab", grid=grid)
    inside = vol.values > 0.5
    cov = np.cov(_positions(vol)[inside].T)
    evals, evecs = np.linalg.eigh(cov)
    np.testing.assert_allclose(np.sqrt(5 * evals[::-1]), semi, rtol=0.01)
    cosines = np.abs(np.sum(evecs[:, ::-1] * axes, axis=0))
    assert np.all(cosines > np.cos(np.radians(1.0))), cosines
    # the same object in the crystal frame: its axes turned by crystal_to_lab^T
    crystal = to_frame(amplitude, measured, "crystal", grid=grid)
    cov_c = np.cov(_positions(crystal)[crystal.values > 0.5].T)
    c2l = measured.crystal_to_lab
    np.testing.assert_allclose(cov_c, c2l.T @ cov @ c2l, atol=0.01 * evals.max())


@pytest.mark.parametrize("which", ["measured", "idealised"])
def test_the_three_frames_differ_by_exactly_the_geometry_s_rotations(measured, which):
    """A field linear in the lab position is exact under trilinear resampling: on the grid of
    each frame it is g . (R_frame p) at every point with all eight neighbours inside."""
    geometry = measured if which == "measured" else GEOMETRY_32.build()
    g = np.array([1e-3, -2e-3, 0.5e-3])
    field = conjugate_positions_nm(geometry, "lab") @ g
    ones = np.ones(geometry.shape)
    for frame in FRAMES:
        vol = to_frame(field, geometry, frame)
        full = to_frame(ones, geometry, frame).values > 1 - 1e-9
        assert full.sum() > 2000
        lab = _positions(vol) @ frame_to_lab(geometry, frame).T
        np.testing.assert_allclose(vol.values[full], (lab @ g)[full], atol=1e-9)
        assert vol.attrs["frame"] == frame
        np.testing.assert_array_equal(vol.attrs["frame_to_lab"], frame_to_lab(geometry, frame))


def test_idealised_sample_and_crystal_frames_are_the_old_sample_frame_exactly():
    geometry = GEOMETRY_32.build()
    assert not geometry.measured
    np.testing.assert_array_equal(frame_to_crystal(geometry, "sample"), np.eye(3))
    rng = np.random.default_rng(0)
    volume = rng.normal(size=geometry.shape) + 1j * rng.normal(size=geometry.shape)
    old = to_sample_frame(volume, geometry)
    assert old.shape == sample_grid(geometry).shape
    for frame in ("sample", "crystal"):
        np.testing.assert_array_equal(to_frame(volume, geometry, frame).values, old)
    # the lab frame of the idealised geometry: a vertical scattering plane rocked about x
    assert sample_grid(geometry, frame="lab").shape != sample_grid(geometry).shape


def test_coordinates_are_named_with_units_and_unknown_frames_are_refused(measured):
    vol = to_frame(np.ones(measured.shape), measured, "crystal", voxel_nm=50.0)
    assert vol.dims == ("x", "y", "z")
    assert vol["x"].attrs["units"] == "nm" and vol["z"].attrs["long_name"] == "crystal-frame z"
    assert vol.attrs["origin_nm"] == [float(vol[d].values[0]) for d in ("x", "y", "z")]
    assert "measured Q" in vol.attrs["frame_description"]
    with pytest.raises(DyncdiError, match="use one of lab, crystal, sample"):
        to_frame(np.ones(measured.shape), measured, "detector")


def _merged_like(geometry):
    """A merged group's volume fields on the conjugate grid: a crystal with a strain map
    defined (finite) inside its support only."""
    r = conjugate_positions_nm(geometry, "lab")
    support = np.linalg.norm(r / [350.0, 260.0, 200.0], axis=-1) < 1.0
    phase = r @ np.array([2e-3, -1e-3, 3e-3])
    strain = np.where(support, r[..., 2] * 1e-6, np.nan)
    fields = {
        "amplitude": support.astype(np.float32),
        "phase": phase.astype(np.float32),
        "strain": strain.astype(np.float32),
        "support_probability": support.astype(np.float32),
    }
    variables = {n: (GRID_DIMS, v, {"units": "1"}) for n, v in fields.items()}
    variables["support"] = (GRID_DIMS, support, {})
    return xr.Dataset(variables, coords=grid_coords(geometry.shape))


def test_merged_fields_in_a_frame_and_their_support_box(measured):
    ds = _merged_like(measured)
    full = merged_to_frame(ds, measured, "lab")
    box = merged_to_frame(ds, measured, "lab", margin=2)
    xr.testing.assert_identical(box, crop_to_support(full, 2))
    assert box["amplitude"].size < full["amplitude"].size / 4
    s = box["support"].values
    assert s.any() and not s[0].any() and not s[-1].any() and not s[:, :, -1].any()
    assert np.isnan(box["strain"].values[~s]).mean() > 0.5
    assert np.isfinite(box["strain"].values[s]).all()
    assert box.attrs["frame"] == "lab" and box.attrs["origin_nm"][0] == box["x"].values[0]
    sample = merged_to_sample_frame(ds, measured)
    assert sample.attrs["frame"] == "sample"
    assert sample["amplitude"].shape == sample_grid(measured).shape


def test_support_box_grows_by_the_margin_and_is_clipped():
    support = np.zeros((10, 12, 8), bool)
    support[3:5, 0:2, 6:8] = True
    assert support_box(support, 2) == (slice(1, 7), slice(0, 4), slice(4, 8))
    assert support_box(np.zeros((4, 4, 4), bool), 2) == (slice(0, 4),) * 3
