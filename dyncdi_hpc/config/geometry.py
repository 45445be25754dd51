"""The scan geometry as a user writes it (keV, degrees, micrometres, metres)."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field

from ..errors import field_path
from ..physics.geometry import Geometry, make_geometry
from .base import Frozen


class GeometryConfig(Frozen):
    """Scan geometry in the units a beamline scientist writes down."""

    energy_kev: float = Field(gt=0)
    material: str = "Au"
    hkl: tuple[int, int, int] = (1, 1, 1)
    shape: tuple[int, int, int] = Field(description="(rocking angles, detector rows, columns)")
    rocking_step_deg: float = Field(gt=0)
    pixel_size_um: float = Field(gt=0)
    detector_distance_m: float = Field(gt=0)
    polarisation: Literal["sigma", "pi"] = "sigma"

    def build(self, field_prefix: str = "geometry") -> Geometry:
        """The physics Geometry (validated: material, reflection, Bragg cutoff); a problem is
        a ParameterError whose field is field_prefix.<parameter>."""
        with field_path(field_prefix):
            return make_geometry(
                energy_kev=self.energy_kev,
                material=self.material,
                hkl=self.hkl,
                shape=self.shape,
                rocking_step_rad=math.radians(self.rocking_step_deg),
                pixel_size_m=self.pixel_size_um * 1e-6,
                detector_distance_m=self.detector_distance_m,
                polarisation=self.polarisation,
            )
