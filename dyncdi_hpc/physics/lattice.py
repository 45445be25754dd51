"""Crystal structures: lattice constants and unit-cell atoms of the supported materials.

Lattice constants at room temperature (nm) from the standard crystallographic literature
(e.g. Wyckoff, Crystal Structures; CRC Handbook). Form factors never live here: those come
from a maintained X-ray database package (see materials.py).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import BraggCutoffError, ForbiddenReflectionError, UnknownMaterialError

HC_KEV_NM = 1.23984198  # h c in keV nm (CODATA)

_ATOMIC_NUMBER = {
    "O": 8,
    "Ni": 28,
    "Cu": 29,
    "Ga": 31,
    "Ge": 32,
    "As": 33,
    "Si": 14,
    "Ti": 22,
    "Sr": 38,
    "Pd": 46,
    "Ag": 47,
    "Pt": 78,
    "Au": 79,
}

_FCC = ((0.0, 0.0, 0.0), (0.0, 0.5, 0.5), (0.5, 0.0, 0.5), (0.5, 0.5, 0.0))


def _fcc(element: str) -> tuple[tuple[str, tuple[float, float, float]], ...]:
    return tuple((element, p) for p in _FCC)


def _zincblende(a: str, b: str) -> tuple[tuple[str, tuple[float, float, float]], ...]:
    shifted = tuple((x + 0.25, y + 0.25, z + 0.25) for x, y, z in _FCC)
    return tuple((a, p) for p in _FCC) + tuple((b, p) for p in shifted)


@dataclass(frozen=True)
class CrystalStructure:
    """A cubic crystal: lattice constant (nm) and fractional positions of the unit-cell atoms."""

    name: str
    lattice_constant_nm: float
    atoms: tuple[tuple[str, tuple[float, float, float]], ...]

    def d_spacing_nm(self, hkl: tuple[int, int, int]) -> float:
        """Interplanar spacing of reflection hkl (nm)."""
        return self.lattice_constant_nm / float(np.sqrt(sum(i * i for i in hkl)))

    def z_weighted_structure_factor(self, hkl: tuple[int, int, int]) -> complex:
        """Sum over unit-cell atoms of Z exp(2 pi i h.r): selection rules without a database."""
        h = np.asarray(hkl, dtype=float)
        return complex(
            sum(_ATOMIC_NUMBER[el] * np.exp(2j * np.pi * h @ np.asarray(p)) for el, p in self.atoms)
        )


CRYSTALS: dict[str, CrystalStructure] = {
    s.name: s
    for s in (
        CrystalStructure("Au", 0.40782, _fcc("Au")),
        CrystalStructure("Pt", 0.39242, _fcc("Pt")),
        CrystalStructure("Ni", 0.35240, _fcc("Ni")),
        CrystalStructure("Cu", 0.36149, _fcc("Cu")),
        CrystalStructure("Ag", 0.40853, _fcc("Ag")),
        CrystalStructure("Pd", 0.38907, _fcc("Pd")),
        CrystalStructure("Si", 0.543102, _zincblende("Si", "Si")),
        CrystalStructure("Ge", 0.565791, _zincblende("Ge", "Ge")),
        CrystalStructure("GaAs", 0.565325, _zincblende("Ga", "As")),
        CrystalStructure(
            "SrTiO3",
            0.3905,
            (
                ("Sr", (0.0, 0.0, 0.0)),
                ("Ti", (0.5, 0.5, 0.5)),
                ("O", (0.5, 0.5, 0.0)),
                ("O", (0.5, 0.0, 0.5)),
                ("O", (0.0, 0.5, 0.5)),
            ),
        ),
    )
}


def crystal(name: str, parameter: str = "material") -> CrystalStructure:
    """Look up a supported crystal by name, or raise UnknownMaterialError naming the choices."""
    try:
        return CRYSTALS[name]
    except KeyError:
        known = ", ".join(sorted(CRYSTALS))
        raise UnknownMaterialError(
            parameter, f"unknown material {name!r}", f"use one of {known}"
        ) from None


def check_hkl(hkl: tuple[int, ...], parameter: str = "hkl") -> tuple[int, int, int]:
    """hkl as three ints; ForbiddenReflectionError for the origin or a wrong length."""
    hkl = tuple(int(i) for i in hkl)
    if len(hkl) != 3 or not any(hkl):
        raise ForbiddenReflectionError(
            parameter, f"{list(hkl)} is not a reflection", "give three integers, not all 0"
        )
    return hkl


def check_reflection(
    structure: CrystalStructure, hkl: tuple[int, int, int], parameter: str = "hkl"
) -> None:
    """Raise ForbiddenReflectionError when hkl is the origin or extinct in the structure."""
    hkl = check_hkl(hkl, parameter)
    total_z = sum(_ATOMIC_NUMBER[el] for el, _ in structure.atoms)
    strength = abs(structure.z_weighted_structure_factor(hkl)) / total_z
    if strength < 1e-6:
        raise ForbiddenReflectionError(
            parameter,
            f"reflection {list(hkl)} is forbidden in {structure.name}",
            "choose an allowed reflection, e.g. [1, 1, 1] or [2, 0, 0] for fcc",
        )


def kinematical_bragg_angle(
    structure: CrystalStructure, hkl: tuple[int, int, int], energy_kev: float
) -> float:
    """Kinematical Bragg angle (rad) of hkl at energy_kev; BraggCutoffError below the cutoff."""
    d = structure.d_spacing_nm(tuple(hkl))
    wavelength = HC_KEV_NM / energy_kev
    if wavelength >= 2.0 * d:
        raise BraggCutoffError(
            "energy_kev",
            f"{energy_kev} keV is below the Bragg cutoff {HC_KEV_NM / (2.0 * d):.3f} keV "
            f"of {structure.name} {list(hkl)}",
            "raise the energy or choose a reflection with a larger d-spacing",
        )
    return float(np.arcsin(wavelength / (2.0 * d)))
