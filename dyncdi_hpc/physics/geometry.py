"""Diffraction geometry of a rocking-curve BCDI scan and its detector-conjugate real-space grid.

Conventions (fixed once, used by every forward model):

* Sample frame (x, y, z) in nm: z along the reflection's scattering vector h, x in the
  scattering plane perpendicular to h, y normal to the scattering plane (the rocking axis).
* Incident and exit wave vectors k_i = k (cos tB, 0, -sin tB), k_f = k (cos tB, 0, sin tB),
  so that k_f - k_i = h = (0, 0, 2 pi / d) at the Bragg angle tB.
* A dataset is indexed (rocking angle, detector row, detector column) = (n0, n1, n2) with the
  Bragg peak at the array centre N // 2. Its q-space steps (nm^-1) are
  b0 = |h| d_omega (1, 0, 0)              (rocking the crystal moves q across h),
  b1 = k p / D (-sin tB, 0, cos tB)        (detector row, in the scattering plane, normal to k_f),
  b2 = k p / D (0, 1, 0)                   (detector column, normal to the scattering plane).
  b0 and b1 are not orthogonal: that is the shear of a rocking scan.
* The detector-conjugate real-space grid has steps a_j with a_i . b_j = 2 pi delta_ij / N_j;
  voxel m sits at r = sum_j a_j (m_j - N_j // 2). The object on this grid is
  psi = S exp(i phi) with phi = -h.u (a crystal displaced by u scatters with exp(-i h.u) under
  the exp(-i q.r) kernel, which is also the coupling chih exp(-i h.u) of the dynamical
  model), and the kinematical intensity is |DFT(psi)|^2.
* A measured scan (physics/diffractometer.py) carries a LabFrame: its q steps come from the
  diffractometer, |h| is the measured |Q| and the frame above becomes the crystal frame (z
  along the measured Q, x along the part of k_i normal to it). The symmetric geometry sits
  in the CXI laboratory frame with a vertical scattering plane, rocked about lab x.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from ..errors import ParameterError, field_path
from .diffractometer import LabFrame
from .lattice import HC_KEV_NM, check_reflection, crystal, kinematical_bragg_angle


@dataclass(frozen=True)
class Geometry:
    """A frozen, hashable scan geometry (static under jit); angles in rad, lengths in SI units."""

    energy_kev: float
    material: str
    hkl: tuple[int, int, int]
    shape: tuple[int, int, int]
    rocking_step_rad: float
    pixel_size_m: float
    detector_distance_m: float
    polarisation: str = "sigma"
    frame: LabFrame | None = None

    @property
    def measured(self) -> bool:
        """True when the q steps come from a measured diffractometer geometry."""
        return self.frame is not None

    @property
    def wavelength_nm(self) -> float:
        """X-ray wavelength (nm)."""
        return HC_KEV_NM / self.energy_kev

    @property
    def k_nm(self) -> float:
        """Wavenumber 2 pi / lambda (nm^-1)."""
        return 2.0 * np.pi / self.wavelength_nm

    @property
    def d_spacing_nm(self) -> float:
        """Interplanar spacing of the reflection (nm)."""
        return crystal(self.material).d_spacing_nm(self.hkl)

    @property
    def h_nm(self) -> float:
        """Length of the scattering vector (nm^-1): 2 pi / d, or the measured |Q|."""
        if self.frame is not None:
            return self.frame.q_nm
        return 2.0 * np.pi / self.d_spacing_nm

    @property
    def bragg_angle_rad(self) -> float:
        """Bragg angle (rad): kinematical from d, or from the measured |Q|."""
        if self.frame is not None:
            return float(np.arcsin(self.h_nm / (2.0 * self.k_nm)))
        return float(np.arcsin(self.wavelength_nm / (2.0 * self.d_spacing_nm)))

    @property
    def lattice_strain(self) -> float:
        """d implied by the measured |Q| against the material's d, minus 1 (0 if idealised)."""
        return float(2.0 * np.pi / self.h_nm / self.d_spacing_nm - 1.0)

    @property
    def rocking_angles_rad(self) -> np.ndarray:
        """Rocking angles relative to the Bragg angle, shape (N0,) (rad)."""
        n0 = self.shape[0]
        return (np.arange(n0) - n0 // 2) * self.rocking_step_rad

    @cached_property
    def q_basis(self) -> np.ndarray:
        """q-space steps b0, b1, b2 as the columns of a (3, 3) matrix (nm^-1, sample frame)."""
        if self.frame is not None:
            return self.frame.q_steps_crystal
        tb = self.bragg_angle_rad
        dq_det = self.k_nm * self.pixel_size_m / self.detector_distance_m
        b0 = self.h_nm * self.rocking_step_rad * np.array([1.0, 0.0, 0.0])
        b1 = dq_det * np.array([-np.sin(tb), 0.0, np.cos(tb)])
        b2 = dq_det * np.array([0.0, 1.0, 0.0])
        return np.stack([b0, b1, b2], axis=1)

    @cached_property
    def real_basis(self) -> np.ndarray:
        """Real-space steps a0, a1, a2 of the conjugate grid, (3, 3) columns (nm, sample frame)."""
        n = np.asarray(self.shape, dtype=float)
        return 2.0 * np.pi * np.linalg.inv(self.q_basis).T / n[None, :]

    @cached_property
    def crystal_to_lab(self) -> np.ndarray:
        """Rotation (3, 3): columns are the crystal (sample-frame) axes in the CXI lab frame."""
        if self.frame is not None:
            return self.frame.crystal_to_lab
        s, c = np.sin(self.bragg_angle_rad), np.cos(self.bragg_angle_rad)
        return np.array([[0.0, 1.0, 0.0], [s, 0.0, c], [c, 0.0, -s]])

    @property
    def sample_to_lab(self) -> np.ndarray:
        """Rotation (3, 3) from the diffractometer's sample frame (every sample circle at
        zero) to the lab frame at the peak; the crystal frame's for the symmetric geometry."""
        if self.frame is not None:
            return np.asarray(self.frame.sample_to_lab)
        return self.crystal_to_lab

    @property
    def q_basis_lab(self) -> np.ndarray:
        """q steps b0, b1, b2 as (3, 3) columns in the CXI laboratory frame (nm^-1)."""
        return self.crystal_to_lab @ self.q_basis

    @property
    def real_basis_lab(self) -> np.ndarray:
        """Real-space steps a0, a1, a2 as (3, 3) columns in the CXI laboratory frame (nm)."""
        return self.crystal_to_lab @ self.real_basis

    @property
    def voxel_size_nm(self) -> tuple[float, float, float]:
        """Lengths of the three real-space steps of the conjugate grid (nm)."""
        return tuple(float(v) for v in np.linalg.norm(self.real_basis, axis=0))

    @property
    def field_of_view_nm(self) -> tuple[float, float, float]:
        """Extent of the conjugate grid along each of its axes (nm)."""
        return tuple(v * n for v, n in zip(self.voxel_size_nm, self.shape, strict=True))

    def voxel_positions_nm(self) -> np.ndarray:
        """Sample-frame positions of every conjugate-grid voxel, shape (N0, N1, N2, 3) (nm)."""
        idx = [np.arange(n) - n // 2 for n in self.shape]
        m = np.stack(np.meshgrid(*idx, indexing="ij"), axis=-1).astype(float)
        return m @ self.real_basis.T

    def displacement_nm(self, phase_rad: np.ndarray) -> np.ndarray:
        """Displacement along h (nm) from the object phase phi = -h.u (rad), any shape."""
        return -np.asarray(phase_rad) / self.h_nm

    def phase_rad(self, displacement_nm: np.ndarray) -> np.ndarray:
        """Object phase phi = -h.u (rad) from the displacement along h (nm), any shape."""
        return -np.asarray(displacement_nm) * self.h_nm

    def to_attrs(self) -> dict:
        """JSON-serialisable description (for store provenance)."""
        return {
            "energy_kev": self.energy_kev,
            "material": self.material,
            "hkl": list(self.hkl),
            "shape": list(self.shape),
            "rocking_step_rad": self.rocking_step_rad,
            "pixel_size_m": self.pixel_size_m,
            "detector_distance_m": self.detector_distance_m,
            "polarisation": self.polarisation,
            "wavelength_nm": self.wavelength_nm,
            "bragg_angle_deg": float(np.degrees(self.bragg_angle_rad)),
            "voxel_size_nm": list(self.voxel_size_nm),
        } | (self._measured_attrs() if self.frame is not None else {})

    def _measured_attrs(self) -> dict:
        return {
            **self.frame.to_attrs(),
            "real_basis_lab": self.real_basis_lab.tolist(),
            "q_nm": self.h_nm,
            "lattice_strain": self.lattice_strain,
        }

    @classmethod
    def from_attrs(cls, attrs: dict) -> Geometry:
        """Inverse of to_attrs (derived entries are ignored); a problem names
        geometry.<parameter>, the attrs' name in every stored group."""
        with field_path("geometry"):
            return make_geometry(
                energy_kev=attrs["energy_kev"],
                material=attrs["material"],
                hkl=tuple(attrs["hkl"]),
                shape=tuple(attrs["shape"]),
                rocking_step_rad=attrs["rocking_step_rad"],
                pixel_size_m=attrs["pixel_size_m"],
                detector_distance_m=attrs["detector_distance_m"],
                polarisation=attrs.get("polarisation", "sigma"),
                frame=LabFrame.from_attrs(attrs) if "q_basis_lab" in attrs else None,
            )


def make_geometry(
    *,
    energy_kev: float,
    material: str,
    hkl: tuple[int, int, int],
    shape: tuple[int, int, int],
    rocking_step_rad: float,
    pixel_size_m: float,
    detector_distance_m: float,
    polarisation: str = "sigma",
    frame: LabFrame | None = None,
) -> Geometry:
    """Build a validated Geometry; every problem is a ParameterError naming the parameter."""
    structure = crystal(material)
    hkl = tuple(int(i) for i in hkl)
    check_reflection(structure, hkl)
    if energy_kev <= 0:
        raise ParameterError("energy_kev", f"{energy_kev} keV", "give a positive energy")
    kinematical_bragg_angle(structure, hkl, energy_kev)
    if len(shape) != 3 or any(int(n) < 4 for n in shape):
        raise ParameterError("shape", f"{list(shape)}", "give three sizes, each >= 4")
    for name, value in (
        ("rocking_step_rad", rocking_step_rad),
        ("pixel_size_m", pixel_size_m),
        ("detector_distance_m", detector_distance_m),
    ):
        if not value > 0:
            raise ParameterError(name, f"{value}", "give a positive value")
    if polarisation not in ("sigma", "pi"):
        raise ParameterError("polarisation", repr(polarisation), "use sigma or pi")
    return Geometry(
        energy_kev=float(energy_kev),
        material=material,
        hkl=hkl,
        shape=tuple(int(n) for n in shape),
        rocking_step_rad=float(rocking_step_rad),
        pixel_size_m=float(pixel_size_m),
        detector_distance_m=float(detector_distance_m),
        polarisation=polarisation,
        frame=frame,
    )
