"""What a reconstruction needs of a dataset: intensities, mask, geometry and, for simulated
data, the ground truth; read from an input group (store/groups.py) and validated."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..physics.geometry import Geometry
from ..store.groups import decode_input
from .validate import check_intensity


@dataclass(frozen=True)
class Truth:
    """Ground truth on the detector-conjugate grid, each array of shape (N0, N1, N2)."""

    amplitude: np.ndarray
    phase: np.ndarray
    support: np.ndarray
    displacement_nm: np.ndarray

    def as_arrays(self) -> dict[str, np.ndarray]:
        """The truth by store/groups.py's TRUTH_VARIABLES keys."""
        return {
            "amplitude": self.amplitude,
            "phase": self.phase,
            "support": self.support,
            "displacement_nm": self.displacement_nm,
        }

    @property
    def object(self) -> np.ndarray:
        """The true complex object amplitude exp(i phase), (N0, N1, N2)."""
        return self.amplitude * np.exp(1j * self.phase)


@dataclass(frozen=True)
class Measurement:
    """What a reconstruction needs: intensities (N0, N1, N2), mask (True = ignored), geometry."""

    intensity: np.ndarray
    mask: np.ndarray | None
    geometry: Geometry
    truth: Truth | None = None


def read_measurement(ds: xr.Dataset, field: str) -> Measurement:
    """Measurement from an input group, validated against its geometry (errors name field)."""
    group = decode_input(ds)
    geometry = Geometry.from_attrs(group.geometry)
    check_intensity(group.intensity, geometry, field, group.mask)
    truth = Truth(**group.truth) if group.truth is not None else None
    return Measurement(group.intensity, group.mask, geometry, truth)
