"""Simulated datasets: the crystal, its displacement field, the geometry, counts and noise."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from .base import Frozen
from .geometry import GeometryConfig


class CrystalConfig(Frozen):
    """Shape of the simulated crystal, in the sample frame (nm)."""

    kind: Literal["faceted", "ellipsoid"] = Field(
        "faceted", description="{111} and {100} facets, or an ellipsoid"
    )
    size_nm: float = Field(600.0, gt=0, description="distance between opposite {111} facets")
    truncation: float = Field(
        0.8, gt=0, le=1.5, description="{100} facet distance relative to the {111} one"
    )
    aspect: tuple[float, float, float] = Field(
        (1.0, 1.0, 1.0), description="stretch along the sample x, y, z axes"
    )
    facet_jitter: float = Field(
        0.1, ge=0, lt=0.5, description="random relative change of each facet's distance"
    )
    seed: int = Field(0, description="random seed of the facet jitter")


class DisplacementConfig(Frozen):
    """Smooth displacement field, given by the phase h.u it produces (rad)."""

    kind: Literal["lobes", "none"] = Field(
        "lobes", description="Gaussian lobes of random sign, or none (a flat phase)"
    )
    phase_range_rad: float = Field(3.0, ge=0, description="peak-to-peak phase inside the crystal")
    n_lobes: int = Field(3, ge=1, description="number of Gaussian lobes")
    seed: int = Field(0, description="random seed of the lobes' centres, widths and signs")


class SimulateConfig(Frozen):
    """A simulated dataset: crystal, displacement, geometry, counts and noise."""

    geometry: GeometryConfig = Field(description="the scan geometry")
    crystal: CrystalConfig = Field(CrystalConfig(), description="the crystal's shape")
    displacement: DisplacementConfig = Field(
        DisplacementConfig(), description="the crystal's displacement field"
    )
    peak_counts: float = Field(1e5, gt=0, description="counts in the brightest voxel")
    noise: bool = Field(True, description="Poisson noise; false gives noiseless intensities")
    noise_seed: int = Field(0, description="random seed of the Poisson noise")
    model: Literal["kinematical", "dynamical"] = Field(
        "kinematical",
        description="forward model that makes the intensities: dynamical (two-beam Takagi-Taupin, "
        "the scan centred on the refracted peak) for crystals near or above the extinction length",
    )

    def fingerprint_payload(self) -> dict:
        """The config as hashed into the dataset fingerprint (the default model left out, so
        that stores written before the field existed keep their fingerprints)."""
        dump = self.model_dump(mode="json")
        if dump["model"] == "kinematical":
            del dump["model"]
        return dump
