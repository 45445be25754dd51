"""Configuration of a multi-reflection set (issue #5): one crystal, several datasets.

A sweep reconstructs each reflection's dataset as usual (many seeds, merged per dataset); a
multi-reflection entry then names those datasets, the orientation of each (its azimuth about
h, physics/resample.py), the common sample grid and the joint AD options, and turns the merged
single-reflection objects into one displacement vector field and its strain tensor
(recon.multi.run_multi_reflection). With `simulate`, the named datasets are simulated together
from one crystal and one u (data.simulate_multi) instead of each on its own.

Same conventions as config.py (Frozen models: immutable, unknown keys rejected, validated once
at the edge). `load_multi_workflow` reads a sweep YAML with a top-level `multi:` mapping without
any change to SweepSpec.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Literal

import numpy as np
import xarray as xr
from pydantic import Field, field_validator, model_validator

from .config import (
    ArrayDataset,
    CrystalConfig,
    Frozen,
    GeometryConfig,
    StoredDataset,
    SweepSpec,
    read_yaml,
    stable_hash,
    validate,
)
from .errors import DyncdiError


class VectorDisplacementConfig(Frozen):
    """Smooth simulated u(r): per component n_lobes Gaussian lobes of height amplitude_nm."""

    amplitude_nm: float = Field(0.05, ge=0, description="height of each lobe (nm)")
    n_lobes: int = Field(3, ge=1)
    seed: int = 0


class MultiSimulateConfig(Frozen):
    """Simulate every reflection of the set from one crystal and one displacement vector field."""

    crystal: CrystalConfig = CrystalConfig()
    displacement: VectorDisplacementConfig = VectorDisplacementConfig()
    model: Literal["kinematical", "dynamical"] = "kinematical"
    peak_counts: float = Field(1e5, gt=0, description="counts in the brightest voxel of each scan")
    noise: bool = True
    noise_seed: int = 0


class ReflectionEntry(Frozen):
    """One reflection: the sweep dataset holding its scan and the crystal's azimuth about h.

    geometry: the scan to simulate (with MultiReflectionConfig.simulate; the dataset is then
    `from_store: true` in the sweep); otherwise the dataset's own geometry is used.
    """

    dataset: str
    azimuth_deg: float = Field(
        0.0,
        description="turn of the crystal about h_j (right-handed, degrees) from the convention "
        "'the projection of the sample [001] (or [100] for h along [001]) normal to h_j lies in "
        "the scattering plane, along the lab x'",
    )
    geometry: GeometryConfig | None = None


class SampleGridConfig(Frozen):
    """The common orthogonal sample-frame grid (the crystal's cubic axes), isotropic voxels."""

    shape: tuple[int, int, int]
    voxel_nm: float = Field(gt=0)

    @field_validator("shape")
    @classmethod
    def _sizes(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 4 for n in value):
            raise ValueError("give three sizes, each >= 4")
        return value


class JointADConfig(Frozen):
    """Joint AD of one shape and one u through every reflection's forward model."""

    model: Literal["kinematical", "dynamical"] = "kinematical"
    loss: Literal["poisson", "amplitude"] = "poisson"
    steps: int = Field(600, ge=0)
    log_every: int = Field(50, ge=1)
    smooth_weight: float = Field(
        30.0, ge=0, description="weight of the squared Laplacian of |h| u (rad^2 per voxel)"
    )
    lr_shape: float = Field(5e-2, gt=0)
    lr_displacement: float = Field(4e-4, gt=0, description="Adam learning rate of u (nm)")
    fit_rocking_offset: bool = Field(
        False,
        description="dynamical model: fit each reflection's absolute rocking offset (it trades "
        "against the homogeneous strain along that h); false: held at the refraction shift",
    )


class MultiReflectionConfig(Frozen):
    """A multi-reflection set: its reflections, the sample grid, the joint AD, the tensor."""

    reflections: list[ReflectionEntry] = Field(min_length=1)
    grid: SampleGridConfig
    joint: JointADConfig = JointADConfig()
    tensor: bool = Field(True, description="require >= 3 non-coplanar reflections (a tensor)")
    simulate: MultiSimulateConfig | None = None
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


def build_reflections(cfg: MultiReflectionConfig, geometries: dict, field: str = "multi"):
    """The physics Reflections (geometry, azimuth in rad) of a set, validated before any work:
    one material and energy, allowed reflections, and a determined tensor when cfg.tensor.

    geometries: dataset name -> Geometry (for a simulated set, built from the entries).
    """
    from .physics.resample import Reflection
    from .recon.multi import check_multi

    reflections = []
    for j, entry in enumerate(cfg.reflections):
        where = f"{field}.reflections[{j}]"
        if entry.geometry is not None:
            geometry = entry.geometry.build(f"{where}.geometry")
        elif entry.dataset in geometries:
            geometry = geometries[entry.dataset]
        else:
            raise DyncdiError(
                f"{where}.dataset",
                f"no dataset {entry.dataset!r}",
                "name a dataset of the sweep, or give the reflection a geometry",
            )
        reflections.append(Reflection(geometry, math.radians(entry.azimuth_deg)))
    reflections = tuple(reflections)
    check_multi(reflections, cfg.tensor, f"{field}.reflections")
    return reflections


def simulated_multi_inputs(cfg: MultiReflectionConfig, field: str = "multi") -> dict:
    """Simulate a set (cfg.simulate) into one input group per reflection dataset, as
    data.dataset.to_xarray writes them (conjugate-grid truth included); fingerprint = hash of
    the set's simulation and that reflection's entry."""
    from .analysis.frames import SampleGrid
    from .data.dataset import to_xarray
    from .data.simulate_multi import VectorDisplacement, simulate_multi

    if cfg.simulate is None:
        raise DyncdiError(f"{field}.simulate", "the set is not simulated", "add a simulate block")
    reflections = build_reflections(cfg, {}, field)
    sim_cfg = cfg.simulate
    grid = SampleGrid(cfg.grid.shape, cfg.grid.voxel_nm)
    sim = simulate_multi(
        reflections,
        grid,
        crystal=sim_cfg.crystal,
        displacement=VectorDisplacement(**sim_cfg.displacement.model_dump()),
        model=sim_cfg.model,
        peak_counts=sim_cfg.peak_counts,
        noise=sim_cfg.noise,
        noise_seed=sim_cfg.noise_seed,
    )
    inputs = {}
    for entry, reflection, intensity, truth in zip(
        cfg.reflections, reflections, sim.intensities, sim.truths, strict=True
    ):
        source = {
            "kind": "simulate-multi",
            "config": sim_cfg.model_dump(mode="json"),
            "reflection": entry.model_dump(mode="json"),
            "sample_grid": cfg.grid.model_dump(mode="json"),
        }
        inputs[entry.dataset] = to_xarray(
            intensity,
            reflection.geometry,
            source=source,
            fingerprint=stable_hash(source),
            truth=truth,
        )
    return inputs


def sample_truth_dataset(cfg: MultiReflectionConfig) -> xr.Dataset:
    """The simulated set's sample-frame truth (shape, support, u (3, ...) nm) as xarray, dims
    (x, y, z) in nm, for comparisons with run_multi_reflection's output."""
    from .analysis.frames import SAMPLE_DIMS, SampleGrid
    from .data.simulate_multi import VectorDisplacement, sample_truth

    assert cfg.simulate is not None
    grid = SampleGrid(cfg.grid.shape, cfg.grid.voxel_nm)
    truth = sample_truth(
        grid, cfg.simulate.crystal, VectorDisplacement(**cfg.simulate.displacement.model_dump())
    )
    coords = {n: (n, a, {"units": "nm"}) for n, a in zip(SAMPLE_DIMS, grid.axes_nm(), strict=True)}
    return xr.Dataset(
        {
            "amplitude": (SAMPLE_DIMS, truth.amplitude.astype(np.float32)),
            "support": (SAMPLE_DIMS, truth.support),
            "displacement": (
                ("component", *SAMPLE_DIMS),
                truth.displacement_nm.astype(np.float32),
                {"units": "nm"},
            ),
        },
        coords={**coords, "component": list(SAMPLE_DIMS)},
    )


def load_multi_workflow(path: Path) -> tuple[SweepSpec, dict[str, MultiReflectionConfig]]:
    """Read a sweep YAML with a top-level `multi:` mapping (name -> MultiReflectionConfig).

    The rest is the sweep spec, validated as config.load_sweep does (relative paths from the
    file's folder). Datasets a set simulates must be `from_store: true` in the sweep; every
    reflection must name one of the sweep's datasets.
    """
    path = Path(path)
    data = read_yaml(path, "sweep spec")
    raw = data.pop("multi", None) or {}
    spec = validate(SweepSpec, data, str(path))
    if not isinstance(raw, dict):
        raise DyncdiError(f"{path}: multi", "not a mapping", "write name: {reflections: ...}")
    sets = {
        name: validate(MultiReflectionConfig, value, f"{path}: multi.{name}")
        for name, value in raw.items()
    }
    for name, cfg in sets.items():
        for j, entry in enumerate(cfg.reflections):
            field = f"multi.{name}.reflections[{j}].dataset"
            dataset = spec.datasets.get(entry.dataset)
            if dataset is None:
                raise DyncdiError(field, f"no dataset {entry.dataset!r} in the sweep", "add it")
            if cfg.simulate is not None and not isinstance(dataset, StoredDataset):
                raise DyncdiError(
                    field,
                    f"dataset {entry.dataset!r} is simulated by multi.{name}",
                    "declare it `from_store: true` in datasets",
                )
    base = path.resolve().parent
    datasets = {
        name: (d.model_copy(update={"path": base / d.path}) if isinstance(d, ArrayDataset) else d)
        for name, d in spec.datasets.items()
    }
    store = spec.store if spec.store.is_absolute() else Path.cwd() / spec.store
    return spec.model_copy(update={"datasets": datasets, "store": store}), sets
