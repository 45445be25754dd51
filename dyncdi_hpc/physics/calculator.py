"""Plain-dict reports of susceptibilities and rocking curves, for the command line.

Every value is a JSON-serialisable Python scalar or list; complex numbers are [re, im].
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import ParameterError
from .materials import BraggCase, bragg_case
from .reflectivity import finite_crystal_reflectivity, slab_reflectivity
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


def rocking_angles_rad(case: BraggCase, thickness_nm: float, n: int = N_ANGLES) -> np.ndarray:
    """Automatic rocking range around the refracted peak: shape (n,) (rad from the Bragg angle).

    Half-range: 4 Darwin widths or 4 widths of the thickness fringe lambda / (2 t cos tB),
    whichever is larger, so thin (kinematical) and thick (Darwin) curves both fit.
    """
    fringe = case.wavelength_nm / (2.0 * thickness_nm * math.cos(case.bragg_angle_rad))
    half = 4.0 * max(case.darwin_width_rad, fringe)
    return case.refraction_shift_rad + np.linspace(-half, half, n)


def _auto_step_nm(case: BraggCase, thickness_nm: float, width_nm: float, n_angles: int) -> float:
    ell = case.extinction_length_ray_nm
    # point updates = w t n / (step^2 sin 2tB): the finest step within the budget
    finest = math.sqrt(
        width_nm
        * thickness_nm
        * n_angles
        / (MAX_POINT_UPDATES * math.sin(2 * case.bragg_angle_rad))
    )
    step = max(ell / POINTS_PER_EXTINCTION, finest)
    if step > ell / MIN_POINTS_PER_EXTINCTION:
        raise ParameterError(
            "width_um",
            f"a {width_nm / 1e3:.4g} x {thickness_nm / 1e3:.4g} um crystal needs a grid step of "
            f"{step:.4g} nm to fit the compute budget, too coarse for the extinction length "
            f"{ell:.4g} nm along the beam",
            "reduce width_um (a width of a few times 2 t cot(thetaB) already behaves as a slab) "
            "or use model='slab-exact'",
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
) -> dict:
    """Rocking curve of a perfect t x w crystal in symmetric Bragg geometry (angles in urad).

    model: "dynamical" (2D Takagi-Taupin march of the finite crystal), "kinematical" (the same
    march in first-order Born with refraction and absorption by chi0) or "slab-exact" (closed
    form for an infinitely wide slab). kinematical_peak_reflectivity is the first-order Born peak
    of the same crystal, so peak_ratio isolates multiple scattering (extinction).
    """
    if model not in MODELS:
        raise ParameterError("model", repr(model), f"use one of {', '.join(MODELS)}")
    for name, value in (("thickness_um", thickness_um), ("width_um", width_um)):
        if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
            raise ParameterError(name, f"{value}", "give a positive length in um")
    case = bragg_case(material, hkl, energy_kev, polarisation=polarisation)
    t_nm, w_nm = 1e3 * thickness_um, 1e3 * width_um
    dtheta = rocking_angles_rad(case, t_nm)
    if model == "slab-exact":
        used_step = None
        curve = slab_reflectivity(case, dtheta, t_nm)
        kin = slab_reflectivity(case, dtheta, t_nm, drop_chihbar=True)
    else:
        used_step = step_nm if step_nm is not None else _auto_step_nm(case, t_nm, w_nm, dtheta.size)
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
