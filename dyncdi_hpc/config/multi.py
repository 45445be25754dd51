"""Multi-reflection sets: sweep datasets seen through several reflections of one crystal,
which the sweep turns, after the merge, into one displacement vector field (multi/stage.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from .base import Frozen
from .geometry import GeometryConfig
from .simulate import CrystalConfig


class VectorDisplacementConfig(Frozen):
    """Smooth simulated u(r): per component n_lobes Gaussian lobes of height amplitude_nm."""

    amplitude_nm: float = Field(0.05, ge=0, description="height of each lobe (nm)")
    n_lobes: int = Field(3, ge=1, description="Gaussian lobes per component")
    seed: int = Field(0, description="random seed of the lobes")


class MultiSimulateConfig(Frozen):
    """Simulate every reflection of the set from one crystal and one displacement vector field."""

    crystal: CrystalConfig = Field(CrystalConfig(), description="the crystal's shape")
    displacement: VectorDisplacementConfig = Field(
        VectorDisplacementConfig(), description="the displacement vector field u"
    )
    model: Literal["kinematical", "dynamical"] = Field(
        "kinematical", description="forward model that makes the intensities"
    )
    peak_counts: float = Field(1e5, gt=0, description="counts in the brightest voxel of each scan")
    noise: bool = Field(True, description="Poisson noise; false gives noiseless intensities")
    noise_seed: int = Field(0, description="random seed of the Poisson noise")


class ReflectionEntry(Frozen):
    """One reflection: the sweep dataset holding its scan and the crystal's azimuth about h.

    geometry: the scan to simulate (with MultiReflectionConfig.simulate; the dataset is then
    `from_store: true` in the sweep); otherwise the dataset's own geometry is used.
    """

    dataset: str = Field(description="the sweep dataset (a key of datasets) of this reflection")
    azimuth_deg: float = Field(
        0.0,
        description="turn of the crystal about h_j (right-handed, degrees) from the convention "
        "'the projection of the sample [001] (or [100] for h along [001]) normal to h_j lies in "
        "the scattering plane, along the lab x'",
    )
    geometry: GeometryConfig | None = Field(
        None, description="the scan to simulate (with simulate); None: the dataset's own"
    )


class SampleGridConfig(Frozen):
    """The common orthogonal sample-frame grid (the crystal's cubic axes), isotropic voxels."""

    shape: tuple[int, int, int] = Field(description="voxels along x, y, z (each >= 4)")
    voxel_nm: float = Field(gt=0, description="voxel edge (nm)")

    @field_validator("shape")
    @classmethod
    def _sizes(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 4 for n in value):
            raise ValueError("give three sizes, each >= 4")
        return value


class JointADConfig(Frozen):
    """Joint AD of one shape and one u through every reflection's forward model."""

    model: Literal["kinematical", "dynamical"] = Field(
        "kinematical", description="forward model of every reflection"
    )
    loss: Literal["poisson", "amplitude"] = Field(
        "poisson", description="data loss, summed over the reflections"
    )
    steps: int = Field(600, ge=0, description="Adam steps of the joint fit")
    log_every: int = Field(50, ge=1, description="AD steps between recorded losses")
    smooth_weight: float = Field(
        30.0, ge=0, description="weight of the squared Laplacian of |h| u (rad^2 per voxel)"
    )
    lr_shape: float = Field(5e-2, gt=0, description="Adam learning rate of the shape logits")
    lr_displacement: float = Field(4e-4, gt=0, description="Adam learning rate of u (nm)")
    fit_rocking_offset: bool = Field(
        False,
        description="dynamical model: fit each reflection's absolute rocking offset (it trades "
        "against the homogeneous strain along that h); false: held at the refraction shift",
    )


class MultiReflectionConfig(Frozen):
    """A multi-reflection set: its reflections, the sample grid, the joint AD, the tensor."""

    reflections: list[ReflectionEntry] = Field(
        min_length=1, description="one entry per reflection (dataset)"
    )
    grid: SampleGridConfig = Field(description="the common sample-frame grid of u and the shape")
    joint: JointADConfig = Field(JointADConfig(), description="the joint AD fit")
    tensor: bool = Field(True, description="require >= 3 non-coplanar reflections (a tensor)")
    simulate: MultiSimulateConfig | None = Field(
        None, description="simulate every reflection from one crystal first (None: measured)"
    )
    seed: int = Field(0, ge=0, description="seed of the reconstructions this stage runs itself")

    @model_validator(mode="after")
    def _consistent(self) -> MultiReflectionConfig:
        names = [r.dataset for r in self.reflections]
        if len(set(names)) != len(names):
            raise ValueError("each reflection must name its own dataset")
        if self.simulate is not None:
            missing = [r.dataset for r in self.reflections if r.geometry is None]
            if missing:
                raise ValueError(f"simulate needs a geometry for every reflection: {missing}")
        return self
