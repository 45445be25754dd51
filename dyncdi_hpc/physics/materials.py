"""X-ray susceptibilities of a reflection and the two-beam quantities derived from them.

Form factors come from the maintained database package xraydb (f0: Waasmaier-Kirfel;
f', f'': Chantler), never from hand-typed tables. The structure factor is summed over the
unit-cell atoms of lattice.py's CRYSTALS.

Sign convention (physics.md): time factor exp(i(k.r - w t)), crystallographic structure
factor F_g = sum_j (f0 + f' + i f'') exp(+2 pi i g.r_j), and

    chi_g = -(r_e lambda^2 / (pi V)) conj(F_g),

so that chi(r) = sum_g chi_g exp(+i G.r) with G = 2 pi g, absorption gives Im chi0 > 0, and
Re chi0 < 0 (refractive index below 1). chih couples D0 into Dh (it is the coefficient of
exp(+i h.r)) and chihbar = chi_{-h} couples back. For a centrosymmetric cell with the
origin on an inversion centre chih == chihbar.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import jax
import numpy as np

from ..errors import (
    BraggCutoffError,
    ForbiddenReflectionError,
    ParameterError,
    UnknownMaterialError,
)
from .lattice import (
    HC_KEV_NM,
    CrystalStructure,
    check_hkl,
    check_reflection,
    crystal,
    kinematical_bragg_angle,
)

R_E_NM = 2.8179403262e-6  # classical electron radius (nm, CODATA 2018)
_MIN_ENERGY_KEV = 1.0  # below this the two-beam model and the f0 tables are of no use here
_MAX_ENERGY_KEV = 400.0  # upper end of the Chantler tables in xraydb
_FORBIDDEN_RATIO = 1e-6  # |F_h| / |F_0| below this is an extinct reflection


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class Susceptibility:
    """Fourier components of the X-ray susceptibility (dimensionless, complex).

    A pytree, so it can be passed to jitted functions and traced.
    """

    chi0: complex
    chih: complex
    chihbar: complex


@dataclass(frozen=True)
class BraggCase:
    """One reflection at one energy and polarisation: all that two-beam theory needs."""

    chi: Susceptibility
    wavelength_nm: float
    bragg_angle_rad: float
    polarisation: str = "sigma"

    @property
    def polarisation_factor(self) -> float:
        """C = 1 for sigma, |cos 2 thetaB| for pi."""
        if self.polarisation == "sigma":
            return 1.0
        return float(abs(np.cos(2.0 * self.bragg_angle_rad)))

    @property
    def coupling(self) -> float:
        """C |sqrt(chih chihbar)| (dimensionless)."""
        return self.polarisation_factor * float(
            abs(np.sqrt(complex(self.chi.chih) * complex(self.chi.chihbar)))
        )

    @property
    def pendellosung_nm(self) -> float:
        """Pendellosung distance Lambda0 of the symmetric Bragg case (nm)."""
        return self.wavelength_nm * float(np.sin(self.bragg_angle_rad)) / self.coupling

    @property
    def extinction_depth_nm(self) -> float:
        """Extinction depth Lambda0 / pi of the symmetric Bragg case (nm)."""
        return self.pendellosung_nm / np.pi

    @property
    def extinction_length_ray_nm(self) -> float:
        """Coupling length lambda / (pi C |sqrt(chih chihbar)|) along a ray (nm)."""
        return self.wavelength_nm / (np.pi * self.coupling)

    @property
    def darwin_width_rad(self) -> float:
        """Full width of the Darwin plateau, 2 C |sqrt(chih chihbar)| / sin 2thetaB (rad)."""
        return 2.0 * self.coupling / float(np.sin(2.0 * self.bragg_angle_rad))

    @property
    def refraction_shift_rad(self) -> float:
        """Shift of the plateau centre from the kinematical Bragg angle, -Re chi0 / sin 2thetaB."""
        return -float(np.real(self.chi.chi0)) / float(np.sin(2.0 * self.bragg_angle_rad))


def _structure(material: str | CrystalStructure) -> CrystalStructure:
    if isinstance(material, CrystalStructure):
        return material
    return crystal(material)


def _check_energy(energy_kev: float) -> None:
    if not _MIN_ENERGY_KEV <= energy_kev <= _MAX_ENERGY_KEV:
        raise BraggCutoffError(
            "energy_kev",
            f"{energy_kev} keV is outside the supported range",
            f"give an energy between {_MIN_ENERGY_KEV} and {_MAX_ENERGY_KEV} keV",
        )


def bragg_angle_rad(
    material: str | CrystalStructure, hkl: tuple[int, int, int], energy_kev: float
) -> float:
    """Kinematical Bragg angle (rad); BraggCutoffError outside the tables or below the cutoff."""
    structure = _structure(material)
    _check_energy(energy_kev)
    return kinematical_bragg_angle(structure, tuple(hkl), energy_kev)


def _checked_hkl(structure: CrystalStructure, hkl: tuple[int, ...]) -> tuple[int, int, int]:
    hkl = check_hkl(hkl)
    try:
        check_reflection(structure, hkl)
    except KeyError:
        pass  # an element outside lattice.py's Z table: the database |F_h| test decides
    return hkl


def _atomic_factors(
    element: str, s_inv_angstrom: float, energy_ev: float
) -> tuple[complex, complex]:
    """(f at q=0, f at s = sin(theta)/lambda) = f0 + f' + i f'' from xraydb, in electrons."""
    import xraydb  # a heavy import (an SQL database): only when form factors are needed

    try:
        f0_zero, f0_s = (float(v) for v in xraydb.f0(element, np.array([0.0, s_inv_angstrom])))
        f1 = float(xraydb.f1_chantler(element, energy_ev))
        f2 = float(xraydb.f2_chantler(element, energy_ev))
    except (ValueError, KeyError, TypeError, AttributeError, IndexError):
        raise UnknownMaterialError(
            "material", f"unknown element {element!r}", "use an element symbol such as 'Au' or 'Si'"
        ) from None
    return complex(f0_zero + f1, f2), complex(f0_s + f1, f2)


def structure_factors(
    material: str | CrystalStructure,
    hkl: tuple[int, int, int],
    energy_kev: float,
    *,
    debye_waller_b: float | Mapping[str, float] = 0.0,
) -> tuple[complex, complex, complex]:
    """(F_0, F_h, F_-h) in electrons per unit cell, crystallographic exp(+2 pi i h.r) phase.

    debye_waller_b is the isotropic B factor in Angstrom^2, one value for every atom or one per
    element; the atomic factors of F_h are multiplied by exp(-B (sin theta / lambda)^2).
    """
    structure = _structure(material)
    hkl = _checked_hkl(structure, hkl)
    _check_energy(energy_kev)
    s = 0.5 / (10.0 * structure.d_spacing_nm(hkl))  # sin(theta)/lambda = 1/(2d), Angstrom^-1
    energy_ev = 1000.0 * energy_kev
    cache: dict[str, tuple[complex, complex]] = {}
    f_0 = f_h = f_mh = 0j
    for element, position in structure.atoms:
        if element not in cache:
            cache[element] = _atomic_factors(element, s, energy_ev)
        a0, ah = cache[element]
        b = (
            debye_waller_b.get(element, 0.0)
            if isinstance(debye_waller_b, Mapping)
            else debye_waller_b
        )
        ah = ah * float(np.exp(-b * s * s))
        phase = 2.0 * np.pi * float(np.dot(hkl, position))
        f_0 += a0
        f_h += ah * complex(np.exp(1j * phase))
        f_mh += ah * complex(np.exp(-1j * phase))
    if abs(f_h) < _FORBIDDEN_RATIO * abs(f_0):
        raise ForbiddenReflectionError(
            "hkl",
            f"reflection {list(hkl)} is forbidden in {structure.name} (|F_h| ~ 0)",
            "choose an allowed reflection",
        )
    return f_0, f_h, f_mh


def susceptibility(
    material: str | CrystalStructure,
    hkl: tuple[int, int, int],
    energy_kev: float,
    *,
    debye_waller_b: float | Mapping[str, float] = 0.0,
) -> Susceptibility:
    """chi0, chih, chihbar of a reflection at an energy (keV), from xraydb form factors."""
    structure = _structure(material)
    bragg_angle_rad(structure, hkl, energy_kev)
    f_0, f_h, f_mh = structure_factors(structure, hkl, energy_kev, debye_waller_b=debye_waller_b)
    wavelength = HC_KEV_NM / energy_kev
    volume = structure.lattice_constant_nm**3
    scale = -R_E_NM * wavelength**2 / (np.pi * volume)
    return Susceptibility(
        chi0=scale * f_0.conjugate(), chih=scale * f_h.conjugate(), chihbar=scale * f_mh.conjugate()
    )


def bragg_case(
    material: str | CrystalStructure,
    hkl: tuple[int, int, int],
    energy_kev: float,
    *,
    polarisation: str = "sigma",
    chi: Susceptibility | None = None,
    debye_waller_b: float | Mapping[str, float] = 0.0,
) -> BraggCase:
    """A validated BraggCase; chi, when given, replaces the database susceptibilities."""
    structure = _structure(material)
    hkl = _checked_hkl(structure, hkl)
    if polarisation not in ("sigma", "pi"):
        raise ParameterError("polarisation", repr(polarisation), "use sigma or pi")
    theta = bragg_angle_rad(structure, hkl, energy_kev)
    if chi is None:
        chi = susceptibility(structure, hkl, energy_kev, debye_waller_b=debye_waller_b)
    else:
        chi = Susceptibility(complex(chi.chi0), complex(chi.chih), complex(chi.chihbar))
        if chi.chih * chi.chihbar == 0:
            raise ParameterError("chi", "chih or chihbar is zero", "give both")
    case = BraggCase(chi, HC_KEV_NM / energy_kev, theta, polarisation)
    if case.polarisation_factor < 1e-3:
        raise ParameterError(
            "polarisation",
            f"pi polarisation at 2 thetaB = {np.degrees(2 * theta):.2f} deg does not diffract",
            "use sigma polarisation or another energy",
        )
    return case
