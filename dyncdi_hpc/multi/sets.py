"""Multi-reflection sets (config.MultiReflectionConfig, the `multi:` mapping of a sweep spec):
their reflections, validated before any work; with `simulate`, the named datasets simulated
together from one crystal and one u (data.simulate_multi) instead of each on its own, and the
simulated truth on the sample grid."""

from __future__ import annotations

import math

import numpy as np
import xarray as xr

from ..config import MultiReflectionConfig, ReflectionEntry
from ..data.simulate_multi import sample_truth, simulate_multi
from ..errors import DyncdiError, field_path
from ..identity import stable_hash
from ..physics.frames import SampleGrid
from ..physics.geometry import Geometry
from ..physics.resample import Reflection, check_reflection_set
from ..store.groups import SAMPLE_DIMS, encode_input, sample_coords


def entry_geometries(cfg: MultiReflectionConfig, field: str = "multi") -> dict[str, Geometry]:
    """Dataset name -> the geometry its entry gives (the scans a simulated set makes)."""
    return {
        e.dataset: e.geometry.build(f"{field}.reflections[{j}].geometry")
        for j, e in enumerate(cfg.reflections)
        if e.geometry is not None
    }


def build_reflections(
    cfg: MultiReflectionConfig, geometries: dict[str, Geometry], field: str = "multi"
) -> tuple[Reflection, ...]:
    """The physics Reflections (geometry, azimuth in rad) of a set, validated before any work:
    one material and energy, allowed reflections, and a determined tensor when cfg.tensor.

    geometries: dataset name -> Geometry, the entries' own geometries (entry_geometries)
    included; an entry with a geometry that geometries lacks builds it.
    """
    reflections = []
    for j, entry in enumerate(cfg.reflections):
        geometry = geometries.get(entry.dataset)
        if geometry is None and entry.geometry is not None:
            geometry = entry.geometry.build(f"{field}.reflections[{j}].geometry")
        if geometry is None:
            raise DyncdiError(
                f"{field}.reflections[{j}].dataset",
                f"no dataset {entry.dataset!r}",
                "name a dataset of the sweep, or give the reflection a geometry",
            )
        reflections.append(Reflection(geometry, math.radians(entry.azimuth_deg)))
    reflections = tuple(reflections)
    with field_path(field):
        check_reflection_set(reflections, cfg.tensor)
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


def simulated_multi_inputs(
    cfg: MultiReflectionConfig,
    field: str = "multi",
    reflections: tuple[Reflection, ...] | None = None,
) -> dict[str, xr.Dataset]:
    """Simulate a set (cfg.simulate) into one input group per reflection dataset (conjugate-grid
    truth included); fingerprint = hash of the set's simulation and that reflection's entry
    (simulated_fingerprints). reflections: build_reflections(cfg, ...) when already built."""
    if cfg.simulate is None:
        raise DyncdiError(f"{field}.simulate", "the set is not simulated", "add a simulate block")
    reflections = reflections or build_reflections(cfg, {}, field)
    sim_cfg = cfg.simulate
    grid = SampleGrid(cfg.grid.shape, cfg.grid.voxel_nm)
    sim = simulate_multi(
        reflections,
        grid,
        crystal=sim_cfg.crystal,
        displacement=sim_cfg.displacement,
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
        inputs[entry.dataset] = encode_input(
            intensity,
            reflection.geometry,
            source=source,
            fingerprint=stable_hash(source),
            truth=truth.as_arrays(),
        )
    return inputs


def sample_truth_dataset(cfg: MultiReflectionConfig) -> xr.Dataset:
    """The simulated set's sample-frame truth (shape, support, u (3, ...) nm) as xarray, dims
    (x, y, z) in nm, for comparisons with the multi group (stage.py)."""
    assert cfg.simulate is not None
    grid = SampleGrid(cfg.grid.shape, cfg.grid.voxel_nm)
    truth = sample_truth(grid, cfg.simulate.crystal, cfg.simulate.displacement)
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
        coords={**sample_coords(grid.axes_nm()), "component": list(SAMPLE_DIMS)},
    )
