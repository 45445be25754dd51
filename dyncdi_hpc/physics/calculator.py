"""Plain-dict reports of susceptibilities and rocking curves, for the command line.

Every value is a JSON-serialisable Python scalar or list; complex numbers are [re, im].
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .materials import BraggCase, bragg_case
from .reflectivity import (
    finite_crystal_reflectivity,
    ghost_free_step_nm,
    slab_reflectivity,
)
from .tt_march import MIN_POINTS_PER_EXTINCTION, POINTS_PER_EXTINCTION

MODELS = ("dynamical", "kinematical", "slab-exact")
N_ANGLES = 241
MAX_POINT_UPDATES = 2e8  # march points x rocking angles: a few seconds on one CPU core


def _pair(value: complex) -> list[float]:
    return [float(np.real(value)), float(np.imag(value))]


def susceptibility_report(
    material: str,
    hkl: tuple[int, int, int],
    energy_kev: float,
    polarisation: str = "sigma",
) -> dict:
    """Susceptibilities and symmetric-Bragg characteristic lengths and widths of a reflection."""
    case = bragg_case(material, hkl, energy_kev, polarisation=polarisation)
    return {
        "material": material,
        "hkl": [int(i) for i in hkl],
        "energy_kev": float(energy_kev),
        "polarisation": polarisation,
        "wavelength_nm": case.wavelength_nm,
        "chi0": _pair(case.chi.chi0),
        "chih": _pair(case.chi.chih),
        "chihbar": _pair(case.chi.chihbar),
        "bragg_angle_deg": math.degrees(case.bragg_angle_rad),
        "pendellosung_um": case.pendellosung_nm / 1e3,
        "extinction_depth_um": case.extinction_depth_nm / 1e3,
        "darwin_width_urad": case.darwin_width_rad * 1e6,
        "refraction_shift_urad": case.refraction_shift_rad * 1e6,
    }


def rocking_angles_rad(
    case: BraggCase, thickness_nm: float, n: int = N_ANGLES, half_range_rad: float | None = None
) -> np.ndarray:
    """Rocking range around the refracted peak: shape (n,) (rad from the Bragg angle).

    Automatic half-range: 4 Darwin widths or 4 widths of the thickness fringe
    lambda / (2 t cos tB), whichever is larger, so thin (kinematical) and thick (Darwin)
    curves both fit; or half_range_rad.
    """
    if half_range_rad is None:
        fringe = case.wavelength_nm / (2.0 * thickness_nm * math.cos(case.bragg_angle_rad))
        half_range_rad = 4.0 * max(case.darwin_width_rad, fringe)
    return case.refraction_shift_rad + np.linspace(-half_range_rad, half_range_rad, n)


def _auto_step_nm(
    case: BraggCase, thickness_nm: float, width_nm: float, dtheta: np.ndarray
) -> float:
    ell = case.extinction_length_ray_nm
    span = float(dtheta[-1] - dtheta[0])
    ghost_free = ghost_free_step_nm(case, span)
    # point updates = w t n / (step^2 sin 2tB): the finest step within the budget
    finest = math.sqrt(
        width_nm
        * thickness_nm
        * dtheta.size
        / (MAX_POINT_UPDATES * math.sin(2 * case.bragg_angle_rad))
    )
    step = max(min(ell / POINTS_PER_EXTINCTION, ghost_free), finest)
    if step > ell / MIN_POINTS_PER_EXTINCTION:
        raise ParameterError(
            "width_um",
            f"a {width_nm / 1e3:.4g} x {thickness_nm / 1e3:.4g} um crystal needs a grid step of "
            f"{step:.4g} nm to fit the compute budget, too coarse for the extinction length "
            f"{ell:.4g} nm along the beam",
            "reduce width_um (a width of a few times 2 t cot(thetaB) already behaves as a slab) "
            "or use model='slab-exact'",
        )
    if step > ghost_free:
        raise ParameterError(
            "range_urad",
            f"a {width_nm / 1e3:.4g} x {thickness_nm / 1e3:.4g} um crystal over "
            f"{1e6 * span:.4g} urad needs a grid step of at most {ghost_free:.4g} nm to keep the "
            f"march's ghost peaks (period lambda / (step sin 2thetaB)) out of the range, but the "
            f"compute budget allows no finer than {finest:.4g} nm",
            "narrow the range (range_urad), reduce width_um, or use model='slab-exact'",
        )
    return step


def _fwhm(x: np.ndarray, y: np.ndarray) -> float | None:
    """Full width at half maximum of the highest peak, linearly interpolated (units of x)."""
    i = int(np.argmax(y))
    half = 0.5 * y[i]
    lo = i
    while lo > 0 and y[lo - 1] >= half:
        lo -= 1
    hi = i
    while hi < len(y) - 1 and y[hi + 1] >= half:
        hi += 1
    if lo == 0 or hi == len(y) - 1:
        return None  # the peak does not fall to half within the range
    left = x[lo - 1] + (half - y[lo - 1]) * (x[lo] - x[lo - 1]) / (y[lo] - y[lo - 1])
    right = x[hi] + (half - y[hi]) * (x[hi + 1] - x[hi]) / (y[hi + 1] - y[hi])
    return float(right - left)


def rocking_curve_report(
    material: str,
    hkl: tuple[int, int, int],
    energy_kev: float,
    thickness_um: float,
    width_um: float,
    model: str = "dynamical",
    polarisation: str = "sigma",
    step_nm: float | None = None,
    range_urad: float | None = None,
) -> dict:
    """Rocking curve of a perfect t x w crystal in symmetric Bragg geometry (angles in urad).

    model: "dynamical" (2D Takagi-Taupin march of the finite crystal), "kinematical" (the same
    march in first-order Born with refraction and absorption by chi0) or "slab-exact" (closed
    form for an infinitely wide slab). kinematical_peak_reflectivity is the first-order Born peak
    of the same crystal, so peak_ratio isolates multiple scattering (extinction).
    range_urad: half-range around the refracted peak (default: from the thickness and the
    Darwin width). The finite crystal's reflectivity is normalised to the incident flux on its
    footprint (reflectivity.finite_crystal_reflectivity), so it never exceeds 1; the march
    step keeps its ghost peaks (ghost_period_rad) out of the range.
    """
    if model not in MODELS:
        raise ParameterError("model", repr(model), f"use one of {', '.join(MODELS)}")
    lengths = [("thickness_um", thickness_um), ("width_um", width_um)]
    if range_urad is not None:
        lengths.append(("range_urad", range_urad))
    for name, value in lengths:
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ParameterError(
                name, f"{value}", "give a positive value (um, or urad for range_urad)"
            )
    case = bragg_case(material, hkl, energy_kev, polarisation=polarisation)
    t_nm, w_nm = 1e3 * thickness_um, 1e3 * width_um
    dtheta = rocking_angles_rad(
        case, t_nm, half_range_rad=None if range_urad is None else 1e-6 * range_urad
    )
    if model == "slab-exact":
        used_step = None
        curve = slab_reflectivity(case, dtheta, t_nm)
        kin = slab_reflectivity(case, dtheta, t_nm, drop_chihbar=True)
    else:
        if step_nm is None:
            used_step = _auto_step_nm(case, t_nm, w_nm, dtheta)
        else:
            used_step = step_nm
        budget = 1.01 * MAX_POINT_UPDATES  # the automatic step fits by construction
        kin = finite_crystal_reflectivity(
            case, t_nm, w_nm, dtheta, step_nm=used_step, drop_chihbar=True, max_cells=budget
        )
        if model == "kinematical":
            curve = kin
        else:
            curve = finite_crystal_reflectivity(
                case, t_nm, w_nm, dtheta, step_nm=used_step, max_cells=budget
            )
    curve = np.asarray(curve, dtype=float)
    kin = np.asarray(kin, dtype=float)
    urad = dtheta * 1e6
    peak = float(curve.max())
    kin_peak = float(kin.max())
    return {
        "material": material,
        "hkl": [int(i) for i in hkl],
        "energy_kev": float(energy_kev),
        "polarisation": polarisation,
        "model": model,
        "thickness_um": float(thickness_um),
        "width_um": float(width_um),
        "step_nm": None if used_step is None else float(used_step),
        "dtheta_urad": urad.tolist(),
        "reflectivity": curve.tolist(),
        "peak_reflectivity": peak,
        "peak_position_urad": float(urad[int(np.argmax(curve))]),
        "fwhm_urad": _fwhm(urad, curve),
        "kinematical_peak_reflectivity": kin_peak,
        "peak_ratio": peak / kin_peak,
    }
