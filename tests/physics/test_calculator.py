"""The calculator's JSON reports: values, physics trends and user errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.calculator import rocking_curve_report, susceptibility_report
from dyncdi_hpc.physics.materials import bragg_case

REPORT_KEYS = {
    "dtheta_urad",
    "reflectivity",
    "peak_reflectivity",
    "peak_position_urad",
    "fwhm_urad",
    "kinematical_peak_reflectivity",
    "peak_ratio",
}


def _integral(report: dict) -> float:
    return float(np.trapezoid(report["reflectivity"], report["dtheta_urad"]))


def test_susceptibility_report_is_json_and_consistent() -> None:
    report = susceptibility_report("Si", (1, 1, 1), 9.0)
    json.dumps(report, allow_nan=False)
    case = bragg_case("Si", (1, 1, 1), 9.0)
    assert report["chih"] == [case.chi.chih.real, case.chi.chih.imag]
    assert report["chi0"][0] < 0 < report["chi0"][1]
    assert report["bragg_angle_deg"] == pytest.approx(math.degrees(case.bragg_angle_rad))
    assert report["extinction_depth_um"] == pytest.approx(report["pendellosung_um"] / math.pi)
    # Si 111 at 9 keV: extinction depth ~1.5 um, Darwin width ~30 urad (xraydb: 30.18)
    assert report["extinction_depth_um"] == pytest.approx(1.49, abs=0.03)
    assert report["darwin_width_urad"] == pytest.approx(30.18, rel=2e-3)
    pi = susceptibility_report("Si", (1, 1, 1), 9.0, polarisation="pi")
    assert pi["darwin_width_urad"] < report["darwin_width_urad"]


def test_slab_report_physics() -> None:
    thick = rocking_curve_report("Si", (1, 1, 1), 9.0, 100.0, 1000.0, model="slab-exact")
    json.dumps(thick, allow_nan=False)
    assert REPORT_KEYS <= thick.keys()
    darwin = susceptibility_report("Si", (1, 1, 1), 9.0)["darwin_width_urad"]
    # Darwin curve: FWHM = 3 / (2 sqrt 2) of the plateau width (weak absorption)
    assert thick["fwhm_urad"] == pytest.approx(1.0607 * darwin, rel=0.02)
    assert 0.9 < thick["peak_reflectivity"] < 1.0
    assert thick["peak_ratio"] < 0.01
    thin = rocking_curve_report("Au", (1, 1, 1), 9.0, 0.02, 1.0, model="slab-exact")
    assert thin["peak_ratio"] > 0.99  # kinematical limit
    middle = rocking_curve_report("Au", (1, 1, 1), 9.0, 0.65, 10.0, model="slab-exact")
    assert middle["peak_ratio"] < 0.2  # t ~ Lambda0: extinction
    # integrated intensity: proportional to t while thin, saturating once thick
    small = [
        rocking_curve_report("Au", (1, 1, 1), 9.0, t, 1.0, model="slab-exact") for t in (0.01, 0.02)
    ]
    assert _integral(small[1]) / _integral(small[0]) == pytest.approx(2.0, rel=0.03)
    large = [
        rocking_curve_report("Au", (1, 1, 1), 9.0, t, 10.0, model="slab-exact") for t in (1.0, 2.0)
    ]
    assert _integral(large[1]) / _integral(large[0]) == pytest.approx(1.0, abs=0.05)


def test_dynamical_report_of_a_wide_crystal_matches_the_slab() -> None:
    t = 0.1
    case = bragg_case("Au", (1, 1, 1), 9.0)
    w = 40 * 2 * t / math.tan(case.bragg_angle_rad)
    dyn = rocking_curve_report("Au", (1, 1, 1), 9.0, t, w)
    slab = rocking_curve_report("Au", (1, 1, 1), 9.0, t, w, model="slab-exact")
    json.dumps(dyn, allow_nan=False)
    assert dyn["step_nm"] == pytest.approx(case.extinction_length_ray_nm / 24)
    assert dyn["dtheta_urad"] == slab["dtheta_urad"]
    # edges of a finite crystal cost ~1/width; at 40 x 2 t cot(thetaB) about 1e-3
    assert np.max(np.abs(np.subtract(dyn["reflectivity"], slab["reflectivity"]))) < 3e-3
    assert dyn["peak_ratio"] == pytest.approx(slab["peak_ratio"], abs=0.01)
    assert dyn["fwhm_urad"] == pytest.approx(slab["fwhm_urad"], rel=0.02)
    kin = rocking_curve_report("Au", (1, 1, 1), 9.0, t, w, model="kinematical")
    assert kin["peak_ratio"] == 1.0
    assert kin["peak_reflectivity"] == pytest.approx(dyn["kinematical_peak_reflectivity"])
    # the range is centred on the refracted peak, relative to the kinematical Bragg angle
    centre = 0.5 * (dyn["dtheta_urad"][0] + dyn["dtheta_urad"][-1])
    assert centre == pytest.approx(case.refraction_shift_rad * 1e6)


def test_bad_inputs_are_user_errors() -> None:
    with pytest.raises(DyncdiError, match="model"):
        rocking_curve_report("Au", (1, 1, 1), 9.0, 0.1, 1.0, model="born")
    with pytest.raises(DyncdiError) as err:
        rocking_curve_report("Au", (1, 1, 1), 9.0, -0.1, 1.0)
    assert err.value.field == "thickness_um"
    with pytest.raises(DyncdiError, match="too coarse") as err:
        rocking_curve_report("Au", (1, 1, 1), 9.0, 0.1, 1.0, step_nm=500.0)
    assert err.value.field == "step_nm"
    with pytest.raises(DyncdiError, match="too coarse") as err:
        rocking_curve_report("Au", (1, 1, 1), 9.0, 50.0, 5000.0)  # 5 mm wide: no grid fits
    assert "slab-exact" in err.value.fix
    with pytest.raises(DyncdiError, match="unknown material"):
        susceptibility_report("Kryptonite", (1, 1, 1), 9.0)
    with pytest.raises(DyncdiError, match="forbidden"):
        susceptibility_report("Si", (2, 0, 0), 9.0)
    with pytest.raises(DyncdiError, match="cutoff"):
        rocking_curve_report("Au", (1, 1, 1), 2.0, 0.1, 1.0)
