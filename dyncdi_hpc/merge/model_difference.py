"""The difference between two models' reconstructions of one dataset: displacement and strain.

The kinematical and the dynamical model fit the same intensities; where the crystal is thin
against the Pendellosung distance they should agree, where it is not the dynamical one
corrects the kinematical one's distortions. The kinematical object is aligned onto the
dynamical one (merge/align.py: twin, translation, phase ramp and offset): the dynamical model
tells the object from its twin, the kinematical cannot, so the dynamical one is the reference.
Align removes a phase ramp, which is a uniform strain: what is left is the non-uniform part
of the difference, which is what the two models' physics can disagree on beyond a rocking
offset (refraction shifts the curve, a uniform strain does the same).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..analysis.strain import displacement_along_q, strain_along_q
from ..physics.geometry import Geometry
from ..physics.objects import support_of
from .align import align, dice, phase_rms


@dataclass(frozen=True)
class ModelDifference:
    """Displacement (nm) and strain of both models inside their common support, (N0, N1, N2)
    each with NaN outside; the kinematical maps are those of the aligned object.
    displacement_difference_nm: dynamical less kinematical, from the wrapped phase difference
    (no unwrapping: the two agree to far less than pi), zero mean on the region."""

    region: np.ndarray
    displacement_difference_nm: np.ndarray
    kinematical_displacement_nm: np.ndarray
    dynamical_displacement_nm: np.ndarray
    kinematical_strain: np.ndarray
    dynamical_strain: np.ndarray
    twin: bool
    support_dice: float
    phase_rms_rad: float

    @property
    def strain_difference(self) -> np.ndarray:
        """Dynamical less kinematical strain along Q (dimensionless)."""
        return self.dynamical_strain - self.kinematical_strain

    def summary(self) -> dict[str, float | bool | int]:
        """RMS differences and magnitudes over the region (nm and dimensionless), for JSON."""
        du, de = self.displacement_difference_nm, self.strain_difference
        ok = np.isfinite(de)
        return {
            "common_voxels": int(self.region.sum()),
            "support_dice": self.support_dice,
            "kinematical_was_twin": self.twin,
            "phase_rms_rad": self.phase_rms_rad,
            "displacement_difference_rms_nm": _rms(du[self.region]),
            "displacement_rms_nm": _rms(self.dynamical_displacement_nm[self.region]),
            "strain_difference_rms": _rms(de[ok]),
            "strain_rms": _rms(self.dynamical_strain[ok]),
            "strain_voxels": int(ok.sum()),
        }


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x)))) if x.size else float("nan")


def model_difference(
    kinematical: np.ndarray, dynamical: np.ndarray, geometry: Geometry
) -> ModelDifference:
    """Both models' displacement and strain along Q on the common support of two complex
    objects (N0, N1, N2) on one conjugate grid, the kinematical aligned onto the dynamical."""
    if kinematical.shape != dynamical.shape or dynamical.shape != geometry.shape:
        raise ValueError(
            f"shapes differ: kinematical {kinematical.shape}, dynamical {dynamical.shape}, "
            f"geometry {geometry.shape}"
        )
    aligned = align(kinematical, dynamical)
    kin_support, dyn_support = support_of(aligned.obj), support_of(dynamical)
    region = kin_support & dyn_support
    u_kin = displacement_along_q(np.angle(aligned.obj), region, geometry)
    u_dyn = displacement_along_q(np.angle(dynamical), region, geometry)
    du = -np.angle(dynamical * np.conj(aligned.obj)) / geometry.h_nm
    du = np.where(region, du - (du[region].mean() if region.any() else 0.0), np.nan)
    return ModelDifference(
        region=region,
        displacement_difference_nm=du,
        kinematical_displacement_nm=u_kin,
        dynamical_displacement_nm=u_dyn,
        kinematical_strain=strain_along_q(aligned.obj, region, geometry),
        dynamical_strain=strain_along_q(dynamical, region, geometry),
        twin=aligned.twin,
        support_dice=dice(kin_support, dyn_support),
        phase_rms_rad=phase_rms(aligned.obj, dynamical, region),
    )
