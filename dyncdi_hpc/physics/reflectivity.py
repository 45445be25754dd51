"""Reflectivity of perfect crystals in symmetric Bragg geometry: the finite t x w crystal by
the reference 2D march (tt_march.py), and the closed forms of two-beam theory that tests and
the calculator compare it with (the slab's Riccati solution, Darwin-Prins), numpy complex128.
"""

from __future__ import annotations

import math
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..errors import ParameterError
from .materials import BraggCase
from .tt_march import (
    POINTS_PER_EXTINCTION,
    MarchSetup,
    alpha_from_dtheta,
    march_grid_nm,
    march_setup,
    rocking_exit_field,
)

GHOST_MARGIN = 2.0  # march ghosts kept at least this many rocking ranges from the peak


def _overlap(lo: np.ndarray, hi: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None) / (hi - lo)


def rectangle_on_grid(
    setup: MarchSetup, thickness_nm: float, width_nm: float, margin_cells: int = 2
) -> tuple[np.ndarray, tuple[float, float]]:
    """Shape (nx, nz) of a t x w rectangle on a march grid in vacuum, and its (x0, x1) (nm).

    Each point takes the fraction of its ray segment (length step) inside the crystal, so the
    thickness and width seen by every ray are exact for any t and w.
    """
    hx = setup.step_nm * math.cos(setup.bragg_angle_rad)
    hz = setup.step_nm * math.sin(setup.bragg_angle_rad)
    x0 = (margin_cells - 0.5) * hx
    z_top = (margin_cells - 0.5) * hz
    nx = math.ceil((x0 + width_nm) / hx) + margin_cells
    nx += nx % 2
    nz = math.ceil(((z_top + thickness_nm) / hz + margin_cells + 1) / 2)
    x, z = march_grid_nm(setup, nx, nz)
    depth = -z
    fx = _overlap(x - 0.5 * hx, x + 0.5 * hx, x0, x0 + width_nm)
    fz = _overlap(depth - 0.5 * hz, depth + 0.5 * hz, z_top, z_top + thickness_nm)
    return fx * fz, (x0, x0 + width_nm)


def ghost_period_rad(case: BraggCase, step_nm: float) -> float:
    """Rocking period of the 2D march on a grid of step step_nm (rad): lambda / (D sin 2tB).

    The march's phase per step along a ray, pi alpha D / lambda, wraps at 2 pi, so a curve
    computed at dtheta repeats at dtheta + this period: ghost Bragg peaks.
    """
    return case.wavelength_nm / (step_nm * math.sin(2.0 * case.bragg_angle_rad))


def ghost_free_step_nm(case: BraggCase, range_rad: float) -> float:
    """Coarsest march step (nm) whose ghosts lie at least GHOST_MARGIN ranges from the peak."""
    return case.wavelength_nm / (GHOST_MARGIN * range_rad * math.sin(2.0 * case.bragg_angle_rad))


def _ghost_checked_setup(case: BraggCase, step_nm, dtheta: np.ndarray, drop_chihbar: bool):
    span = float(np.ptp(dtheta)) if dtheta.size > 1 else 0.0
    if step_nm is None and span > 0:
        step_nm = min(
            case.extinction_length_ray_nm / POINTS_PER_EXTINCTION, ghost_free_step_nm(case, span)
        )
    setup = march_setup(case, step_nm, drop_chihbar=drop_chihbar)
    # 1e-9: the automatic step sits exactly on the limit, which rounding must not cross
    if span > 0 and ghost_period_rad(case, setup.step_nm) < GHOST_MARGIN * span * (1 - 1e-9):
        raise ParameterError(
            "step_nm",
            f"a grid step of {setup.step_nm:.4g} nm repeats the curve every "
            f"{1e6 * ghost_period_rad(case, setup.step_nm):.4g} urad: ghost peaks would fall "
            f"within {GHOST_MARGIN:g} x the {1e6 * span:.4g} urad range",
            f"use a step of at most {ghost_free_step_nm(case, span):.4g} nm, a narrower "
            "range, or leave step_nm unset",
        )
    return setup


def finite_crystal_reflectivity(
    case: BraggCase,
    thickness_nm: float,
    width_nm: float,
    dtheta_rad: np.ndarray,
    *,
    step_nm: float | None = None,
    drop_chihbar: bool = False,
    max_cells: float = 2e8,
    incident: str = "footprint",
) -> np.ndarray:
    """Reflectivity of a perfect t x w crystal at rocking offsets dtheta_rad (n,): shape (n,).

    The default step is the finer of 24 points per extinction length and the coarsest step
    whose ghost peaks (ghost_period_rad) stay GHOST_MARGIN ranges away; a given step that
    would put ghosts that close is refused.

    Diffracted power leaving the crystal (every exit ray, side faces included) over the
    incident power it intercepts. incident="footprint" (default): the beam's flux through the
    crystal's cross-section normal to the beam, w sin(tB) through the top face plus
    t cos(tB) through the upstream side face, so energy conservation bounds it by 1.
    incident="top": over the flux through the top face only, the slab's normalisation; it
    tends to the slab fastest as w grows but exceeds 1 for narrow thick crystals (the power
    diffracted from the side face is counted, its incident power is not). Either tends to the
    slab reflectivity with an edge term of order t cot(tB) / w.
    """
    if incident not in ("footprint", "top"):
        raise ParameterError("incident", repr(incident), "use footprint or top")
    if not thickness_nm > 0:
        raise ParameterError("thickness_nm", f"{thickness_nm}", "give a positive thickness")
    if not width_nm > 0:
        raise ParameterError("width_nm", f"{width_nm}", "give a positive width")
    dtheta = np.atleast_1d(np.asarray(dtheta_rad, dtype=float))
    setup = _ghost_checked_setup(case, step_nm, dtheta, drop_chihbar)
    hx = setup.step_nm * math.cos(setup.bragg_angle_rad)
    hz = setup.step_nm * math.sin(setup.bragg_angle_rad)
    cells = (width_nm / hx) * (thickness_nm / (2 * hz)) * dtheta.size
    if cells > max_cells:
        raise ParameterError(
            "width_nm",
            f"the march needs {cells:.3g} point updates (limit {max_cells:.3g})",
            "reduce the width, the thickness or the number of rocking angles, or use a larger step",
        )
    shape, _ = rectangle_on_grid(setup, thickness_nm, width_nm)
    phase = np.zeros_like(shape)
    out = _reflected_power(
        jnp.asarray(shape), jnp.asarray(phase), jnp.asarray(dtheta), case.chi, setup
    )
    ray_width = setup.step_nm * math.sin(2.0 * setup.bragg_angle_rad)
    flux = width_nm * math.sin(setup.bragg_angle_rad)
    if incident == "footprint":
        flux += thickness_nm * math.cos(setup.bragg_angle_rad)
    return np.asarray(out) * ray_width / flux


@partial(jax.jit, static_argnames=("setup",))
def _reflected_power(shape, phase, dtheta, chi, setup):
    field = rocking_exit_field(shape, phase, dtheta, chi, setup)
    return jnp.sum(jnp.abs(field) ** 2, axis=-1)


def _phi1(x: np.ndarray) -> np.ndarray:
    """(1 - exp(-x)) / x, finite at x = 0."""
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - 0.5 * x, -np.expm1(-safe) / safe)


def slab_reflectivity(
    case: BraggCase,
    dtheta_rad: np.ndarray | float,
    thickness_nm: float,
    *,
    drop_chihbar: bool = False,
) -> np.ndarray:
    """Closed-form reflectivity of a perfect symmetric-Bragg slab of thickness t (nm), dtheta shape.

    Riccati solution of physics.md with X(t) = 0; drop_chihbar gives its R = 0 limit (single
    scattering with refraction and absorption by chi0).
    """
    theta = case.bragg_angle_rad
    c = case.polarisation_factor
    g0, gh = math.sin(theta), -math.sin(theta)
    chi0, chih, chihbar = (complex(v) for v in (case.chi.chi0, case.chi.chih, case.chi.chihbar))
    alpha = alpha_from_dtheta(dtheta_rad, theta)
    k = math.pi / case.wavelength_nm
    p = c * chih / gh
    q = (chi0 - alpha) / gh - chi0 / g0
    if drop_chihbar:
        x0 = -p * (1j * k * thickness_nm) * _phi1(1j * k * q * thickness_nm)
        return np.abs(gh / g0) * np.abs(x0) ** 2
    r = -c * chihbar / g0
    s = np.sqrt(q * q - 4.0 * p * r + 0j)
    s = np.where(s.imag > 0, -s, s)  # the branch with |E| <= 1: no overflow for thick slabs
    xp = (-q + s) / (2.0 * r)
    xm = (-q - s) / (2.0 * r)
    e = np.exp(-1j * k * s * thickness_nm)
    x0 = xp * xm * (1.0 - e) / (xm - xp * e)
    return np.abs(gh / g0) * np.abs(x0) ** 2


def darwin_prins_reflectivity(case: BraggCase, dtheta_rad: np.ndarray | float) -> np.ndarray:
    """Thick-crystal (Darwin-Prins) reflectivity of the symmetric Bragg case, shape of dtheta."""
    theta = case.bragg_angle_rad
    c = case.polarisation_factor
    chi0, chih, chihbar = (complex(v) for v in (case.chi.chi0, case.chi.chih, case.chi.chihbar))
    eta = -(math.sin(2.0 * theta) * np.asarray(dtheta_rad) + chi0) / (c * np.sqrt(chih * chihbar))
    root = np.sqrt(eta * eta - 1.0 + 0j)
    small = np.minimum(np.abs(eta - root), np.abs(eta + root))
    return abs(chih / chihbar) * small**2
