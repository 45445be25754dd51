"""Multi-reflection sets (issue #5): one crystal, several datasets.

A sweep reconstructs each reflection's dataset as usual (many seeds, merged per dataset); a
multi-reflection set (config.MultiReflectionConfig, the `multi:` mapping of a sweep spec) then
names those datasets, the orientation of each (its azimuth about h, physics/resample.py), the
common sample grid and the joint AD options, and turns the merged single-reflection objects
into one displacement vector field and its strain tensor (recon.multi.run_multi_reflection).
With `simulate`, the named datasets are simulated together from one crystal and one u
(data.simulate_multi) instead of each on its own.

The pydantic models live in config.py (SweepSpec holds them) and are re-exported here; this
module builds what they describe.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from .config import (
    JointADConfig,
    MultiReflectionConfig,
    MultiSimulateConfig,
    ReflectionEntry,
    SampleGridConfig,
    SweepSpec,
    VectorDisplacementConfig,
    load_sweep,
    stable_hash,
)
from .errors import DyncdiError

__all__ = [
    "JointADConfig",
    "MultiReflectionConfig",
    "MultiSimulateConfig",
    "ReflectionEntry",
    "SampleGridConfig",
    "VectorDisplacementConfig",
    "build_reflections",
    "load_multi_workflow",
    "sample_truth_dataset",
    "simulated_fingerprints",
    "simulated_multi_inputs",
]


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


def _simulated_source(cfg: MultiReflectionConfig, entry: ReflectionEntry) -> dict:
    """The source record of one simulated reflection: the set's simulation and the entry."""
    assert cfg.simulate is not None
    return {
        "kind": "simulate-multi",
        "config": cfg.simulate.model_dump(mode="json"),
        "reflection": entry.model_dump(mode="json"),
        "sample_grid": cfg.grid.model_dump(mode="json"),
    }


def simulated_fingerprints(cfg: MultiReflectionConfig) -> dict[str, str]:
    """Dataset name -> the fingerprint its simulated input will have, without simulating."""
    return {e.dataset: stable_hash(_simulated_source(cfg, e)) for e in cfg.reflections}


def simulated_multi_inputs(cfg: MultiReflectionConfig, field: str = "multi") -> dict:
    """Simulate a set (cfg.simulate) into one input group per reflection dataset, as
    data.dataset.to_xarray writes them (conjugate-grid truth included); fingerprint = hash of
    the set's simulation and that reflection's entry (simulated_fingerprints)."""
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
        source = _simulated_source(cfg, entry)
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
    """A sweep YAML with a top-level `multi:` mapping: the spec (config.load_sweep, which
    validates the sets against the sweep's datasets) and its sets by name."""
    spec = load_sweep(path)
    return spec, dict(spec.multi)
