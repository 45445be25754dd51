"""The measured geometry against xrayutilities called directly here (its own QConversion,
secant steps from a full-chip `area`), and the symmetric geometry as one case of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
import xrayutilities as xu

from dyncdi_hpc.config import GeometryConfig
from dyncdi_hpc.config.beamline import load_beamline, packaged_beamlines
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.diffractometer import symmetric_frame
from dyncdi_hpc.physics.geometry import Geometry, make_geometry

# scan 54 of Staff20-1a at 34-ID-C (shared/data/aps34idc-au111-scan54): the motors at the
# brightest frame (Theta of frame 99) and the peak pixel (row 126, column 127 of the ROI)
SCAN54 = {"Theta": 0.2150018, "Chi": 90.0, "Phi": -5.0, "Delta": 32.174, "Gamma": 12.6346}


def xu_steps(
    sample_axes,
    detector_axes,
    row_dir,
    col_dir,
    cch,
    chip,
    pixel_m,
    distance_m,
    energy_ev,
    sample_deg,
    detector_deg,
    rocking,
    step_deg,
    peak,
):
    """q steps (nm^-1, lab frame of the circles) by xrayutilities alone: Q at the peak pixel
    and one rocking step, one row and one column away (secant differences)."""
    qc = xu.experiment.QConversion(list(sample_axes), list(detector_axes), (0, 0, 1), en=energy_ev)
    qc.init_area(
        row_dir,
        col_dir,
        cch1=cch[0],
        cch2=cch[1],
        Nch1=chip[0],
        Nch2=chip[1],
        distance=distance_m,
        pwidth1=pixel_m,
        pwidth2=pixel_m,
    )

    def q(angles):
        qx, qy, qz = qc.area(*angles, *detector_deg, deg=True)
        return 10 * np.stack([qx, qy, qz], axis=-1)

    rocked = list(sample_deg)
    rocked[rocking] += step_deg
    here, there = q(sample_deg), q(rocked)
    r, c = peak
    steps = np.stack(
        [there[r, c] - here[r, c], here[r + 1, c] - here[r, c], here[r, c + 1] - here[r, c]], 1
    )
    to_lab = np.stack([qc.transformSample2Lab(e, *sample_deg) for e in np.eye(3)], axis=1)
    return to_lab @ steps, to_lab @ here[r, c]


def angles_between(basis: np.ndarray) -> np.ndarray:
    """Angles (deg) between b0-b1, b0-b2, b1-b2."""
    u = basis / np.linalg.norm(basis, axis=0)
    return np.degrees(np.arccos([u[:, 0] @ u[:, 1], u[:, 0] @ u[:, 2], u[:, 1] @ u[:, 2]]))


def scan54_config(**changes) -> GeometryConfig:
    fields = {
        "energy_kev": 9.0,
        "material": "Au",
        "hkl": (1, 1, 1),
        "shape": (64, 64, 64),
        "rocking_step_deg": 0.005,
        "detector_distance_m": 0.5,
        "beamline": "aps-34idc",
        "motors": SCAN54,
        "rocking_motor": "Theta",
        "roi": (94, 158, 95, 159),  # centre at chip pixel (126, 127)
    }
    return GeometryConfig(**{**fields, **changes})


def test_symmetric_geometry_is_a_case_of_the_measured_one():
    g = make_geometry(
        energy_kev=9.0,
        material="Au",
        hkl=(1, 1, 1),
        shape=(32, 48, 64),
        rocking_step_rad=math.radians(0.004),
        pixel_size_m=55e-6,
        detector_distance_m=0.5,
    )
    frame = symmetric_frame(
        g.energy_kev, g.bragg_angle_rad, g.rocking_step_rad, g.pixel_size_m, g.detector_distance_m
    )
    scale = np.abs(g.q_basis).max(axis=0)
    assert np.abs(frame.q_steps_crystal - g.q_basis).max(axis=0) / scale == pytest.approx(
        0, abs=1e-6
    )
    np.testing.assert_allclose(frame.crystal_to_lab, g.crystal_to_lab, atol=1e-9)
    np.testing.assert_allclose(frame.q_steps_lab, g.q_basis_lab, atol=1e-6 * scale.max())
    assert frame.q_nm == pytest.approx(g.h_nm, rel=1e-7)


def _scan54_xu(centre_channel: tuple[int, int]):
    """xrayutilities' q steps of scan 54 at its peak pixel, for a given centre channel."""
    return xu_steps(
        ("y+", "z-", "y+"),
        ("y+", "x-"),
        "y-",
        "x+",
        centre_channel,
        (512, 512),
        55e-6,
        0.5,
        9000.0,
        (SCAN54["Theta"], SCAN54["Chi"], SCAN54["Phi"]),
        (SCAN54["Delta"], SCAN54["Gamma"]),
        0,
        0.005,
        (126, 127),
    )


def test_scan54_steps_match_xrayutilities():
    geometry = scan54_config().build()
    expected, q_peak = _scan54_xu((256, 256))
    got = geometry.q_basis_lab
    np.testing.assert_allclose(
        np.linalg.norm(got, axis=0), np.linalg.norm(expected, axis=0), rtol=0.005
    )
    np.testing.assert_allclose(angles_between(got), angles_between(expected), atol=0.2)
    # the idealised geometry's rocking step is 9% long and normal to the detector rows;
    # measured, the rocking step makes about 77 deg with a detector row
    assert angles_between(got)[0] == pytest.approx(76.9, abs=0.3)
    d_measured = 2 * np.pi / np.linalg.norm(q_peak)
    assert 2 * np.pi / geometry.h_nm == pytest.approx(d_measured, rel=1e-4)
    assert geometry.lattice_strain == pytest.approx(0, abs=0.015)  # d within 1.5% of Au 111


def test_centre_channel_moved_by_100_pixels_moves_the_steps():
    base = scan54_config().build().q_basis_lab
    moved_cfg = scan54_config(centre_channel=(356, 256))
    moved = moved_cfg.build().q_basis_lab
    expected, _ = _scan54_xu((356, 256))
    np.testing.assert_allclose(
        np.linalg.norm(moved, axis=0), np.linalg.norm(expected, axis=0), rtol=0.005
    )
    np.testing.assert_allclose(angles_between(moved), angles_between(expected), atol=0.2)
    # 100 rows (5.5 mm, 11 mrad at 0.5 m) move the peak's scattering angle: the Bragg angle by
    # about 0.11 deg, the implied lattice strain by about -0.65%, and the angle between the
    # rocking step and a detector row by about -0.6 deg
    before, after = scan54_config().build(), moved_cfg.build()
    assert np.degrees(after.bragg_angle_rad - before.bragg_angle_rad) == pytest.approx(
        0.11, abs=0.03
    )
    assert after.lattice_strain - before.lattice_strain == pytest.approx(-0.0065, abs=0.001)
    shift = angles_between(moved)[0] - angles_between(base)[0]
    assert shift == pytest.approx(-0.63, abs=0.15)


@pytest.mark.parametrize("name", sorted(packaged_beamlines()))
def test_every_preset_matches_xrayutilities(name):
    preset = load_beamline(name)
    detector = preset.detectors[preset.default_detector]
    rng = np.random.default_rng(sum(map(ord, name)))
    for _ in range(3):
        motors = {c.name: float(rng.uniform(-5, 5)) for c in preset.sample_circles}
        motors |= {c.name: float(rng.uniform(10, 40)) for c in preset.detector_circles}
        rocking = preset.sample_circles[int(rng.integers(len(preset.sample_circles)))]
        peak = (
            int(rng.integers(20, detector.chip[0] - 20)),
            int(rng.integers(20, detector.chip[1] - 20)),
        )
        cfg = GeometryConfig(
            energy_kev=9.0,
            material="Au",
            shape=(32, 32, 32),
            rocking_step_deg=0.01,
            detector_distance_m=1.0,
            beamline=name,
            motors=motors,
            rocking_motor=rocking.name,
            roi=(peak[0] - 16, peak[0] + 16, peak[1] - 16, peak[1] + 16),
        )
        sample = tuple(motors[c.name] - c.offset_deg for c in preset.sample_circles)
        expected, _ = xu_steps(
            [c.axis for c in preset.sample_circles],
            [c.axis for c in preset.detector_circles],
            detector.row_direction,
            detector.column_direction,
            detector.centre_channel,
            detector.chip,
            1e-6 * detector.pixel_size_um[0],
            1.0,
            9000.0,
            sample,
            tuple(motors[c.name] for c in preset.detector_circles),
            preset.sample_circles.index(rocking),
            0.01,
            peak,
        )
        got = cfg.build().q_basis_lab
        np.testing.assert_allclose(got, expected, atol=2e-3 * np.abs(expected).max())


def test_measured_geometry_survives_the_store_attrs():
    geometry = scan54_config().build()
    again = Geometry.from_attrs(geometry.to_attrs())
    assert again == geometry
    np.testing.assert_allclose(again.real_basis_lab, geometry.real_basis_lab)
    assert "real_basis_lab" in geometry.to_attrs()


def test_idealised_attrs_and_dump_unchanged():
    cfg = GeometryConfig(
        energy_kev=9.0,
        shape=(32, 32, 32),
        rocking_step_deg=0.005,
        pixel_size_um=55.0,
        detector_distance_m=0.5,
    )
    assert set(cfg.model_dump(mode="json")) == {
        "energy_kev",
        "material",
        "hkl",
        "shape",
        "rocking_step_deg",
        "pixel_size_um",
        "detector_distance_m",
        "polarisation",
    }
    assert "q_basis_lab" not in cfg.build().to_attrs()


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"motors": {"Theta": 0.2, "Chi": 90.0}}, "no position for Phi, Delta, Gamma"),
        ({"rocking_motor": "Delta"}, "is a detector circle"),
        ({"rocking_motor": "omega"}, "is not a circle of aps-34idc"),
        ({"roi": (400, 600, 0, 64)}, "outside the 512 x 512 chip"),
        ({"detector": "eiger"}, "is not a detector of aps-34idc"),
        ({"beamline": "nowhere-42"}, "unknown beamline 'nowhere-42'"),
    ],
)
def test_bad_measured_geometry_is_named(changes, message):
    with pytest.raises(DyncdiError, match=message):
        scan54_config(**changes).build()
