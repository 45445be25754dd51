"""The multi-reflection stage of a sweep: after the merge, each set of SweepSpec.multi becomes
one group multi/<name> (run_multi_reflection on the store's inputs and merged groups). A set
whose configuration, inputs and merged members are unchanged is skipped.
"""

from __future__ import annotations

import jax
import numpy as np
import xarray as xr
from rich.console import Console

from ..analysis.registration import remove_translation
from ..analysis.strain_tensor import (
    displacement_errors,
    strain_dataset,
    strain_errors,
)
from ..config import MultiReflectionConfig, ReconParams, SweepSpec
from ..data.measurement import Measurement, read_measurement
from ..errors import DyncdiError
from ..identity import stable_hash
from ..physics.frames import SampleGrid
from ..physics.resample import Reflection
from ..provenance import provenance
from ..recon.joint import JointResult
from ..recon.pipeline import reconstruct
from ..store.groups import complex_object, encode_multi
from ..store.zarr_store import Store
from .independent import IndependentResult, combine_reconstructions, joint_from_independent
from .sets import build_reflections, sample_truth_dataset

# the two routes a multi group holds: the joint AD's u and the independent route's u
ROUTES = {"joint": "displacement", "independent": "displacement_independent"}


def merged_keys(store: Store, spec: SweepSpec, cfg: MultiReflectionConfig) -> dict[str, str]:
    """Dataset -> the merged group its reflection starts from: the joint AD's model if merged,
    else the sweep's base model; a dataset with neither is left out (reconstructed then)."""
    have = set(store.merged_keys())
    keys = {}
    for entry in cfg.reflections:
        for model in (cfg.joint.model, spec.base.model):
            if f"{entry.dataset}-{model}" in have:
                keys[entry.dataset] = f"{entry.dataset}-{model}"
                break
    return keys


def set_fingerprint(store: Store, spec: SweepSpec, name: str, keys: dict[str, str]) -> str:
    """Hash of what a set's result depends on: its config, its inputs' fingerprints, the
    merged groups' member ids and, for reflections reconstructed here, the base parameters."""
    cfg = spec.multi[name]
    datasets = [e.dataset for e in cfg.reflections]
    payload = {
        "config": cfg.model_dump(mode="json"),
        "inputs": {d: store.input_attrs(d)["fingerprint"] for d in datasets},
        "merged": {d: store.merged_attrs(k)["members"] for d, k in keys.items()},
    }
    if len(keys) < len(datasets):
        payload["params"] = spec.base.model_dump(mode="json")
    return stable_hash(payload)


def route_errors(
    u: np.ndarray, truth_u: np.ndarray, region: np.ndarray, voxel_nm: float | None
) -> dict:
    """u (3, nx, ny, nz) nm: RMS error per component over the truth's largest component range
    inside region, and the strain tensor's (voxel_nm None: no tensor, no strain error)."""
    rms, span = displacement_errors(u, truth_u, region)
    ratio = rms / span.max()
    out = {"u_rms_over_range": ratio.tolist(), "u_rms_over_range_max": float(ratio.max())}
    if voxel_nm is not None:
        out["strain_rms_over_range"] = strain_errors(u, truth_u, region, voxel_nm)
    return out


def multi_vs_truth(ds: xr.Dataset, truth: xr.Dataset) -> dict:
    """Joint and independent u (and strain) errors of a multi group against the simulated
    truth (sample_truth_dataset), after undoing the crystal's translation (found from the
    joint shape) and a constant u; inside the true support where both routes define u."""
    amplitude = truth["amplitude"].values.astype(float)
    shape = ds["shape"].values.astype(float)
    # one translation for both routes: the joint AD starts from the independent result, in
    # its frame, so the joint shape places both
    moved = {}
    for route, var in ROUTES.items():
        _, moved[route], shift = remove_translation(shape, ds[var].values.astype(float), amplitude)
    support = truth["support"].values
    region = support & np.all([np.isfinite(u).all(axis=0) for u in moved.values()], axis=0)
    truth_u = truth["displacement"].values.astype(float)
    out = {
        "region": "true support where both routes define u",
        "voxels": int(region.sum()),
        "true_support_fraction": float(region.sum() / max(support.sum(), 1)),
        "shift_voxels": np.asarray(shift).tolist(),
    }
    voxel_nm = float(ds.attrs["voxel_nm"]) if "strain" in ds else None
    for route, u in moved.items():
        out[route] = route_errors(u, truth_u, region, voxel_nm)
    return out


def run_multi_set(store: Store, spec: SweepSpec, name: str, console: Console) -> bool:
    """Compute multi/<name> unless the stored one has the same fingerprint; True if computed."""
    cfg = spec.multi[name]
    keys = merged_keys(store, spec, cfg)
    fingerprint = set_fingerprint(store, spec, name, keys)
    if name in store.multi_names() and store.multi_attrs(name).get("fingerprint") == fingerprint:
        console.print(f"multi.{name}: inputs and merged members unchanged, skipped")
        return False
    missing = [e.dataset for e in cfg.reflections if e.dataset not in keys]
    console.print(
        f"multi.{name}: {len(cfg.reflections)} reflections ({len(keys)} from merged groups"
        + (f", {', '.join(missing)} reconstructed here" if missing else "")
        + f"), joint AD {cfg.joint.steps} steps ({cfg.joint.model})"
    )
    inputs = {e.dataset: store.read_input(e.dataset) for e in cfg.reflections}
    merged = {d: store.read_merged(k) for d, k in keys.items()}
    ds = run_multi_reflection(cfg, inputs, merged, params=spec.base, field=f"multi.{name}")
    ds.attrs.update(
        name=name,
        fingerprint=fingerprint,
        merged_groups=keys,
        provenance=provenance(),
    )
    if cfg.simulate is not None:
        ds.attrs["vs_truth"] = multi_vs_truth(ds, sample_truth_dataset(cfg))
    store.write_multi(name, ds)
    return True


def run_multi_stage(store: Store, spec: SweepSpec, console: Console) -> tuple[list[str], list[str]]:
    """Every multi set of the sweep, after the merge; returns (names, names skipped)."""
    skipped = [name for name in spec.multi if not run_multi_set(store, spec, name, console)]
    return list(spec.multi), skipped


def run_multi_reflection(
    cfg: MultiReflectionConfig,
    inputs: dict[str, xr.Dataset],
    merged: dict[str, xr.Dataset] | None = None,
    *,
    params: ReconParams | None = None,
    field: str = "multi",
) -> xr.Dataset:
    """One multi-reflection set, from the store's groups to its result group.

    inputs: dataset name -> input group; merged: dataset name -> merged group (amplitude, phase
    on the conjugate grid) of its single-reflection sweep; a dataset without one is
    reconstructed here with params (None: ReconParams()) and cfg.seed. Returns the joint u (and
    strain tensor when cfg.tensor) on the sample grid (dims x, y, z in nm), the independent
    route's u and projections beside it, metrics in attrs.
    """
    merged = merged or {}
    for entry in cfg.reflections:
        if entry.dataset not in inputs:
            raise DyncdiError(f"{field}.reflections", f"no input {entry.dataset!r}", "add it")
    measurements = [
        read_measurement(inputs[e.dataset], f"inputs.{e.dataset}") for e in cfg.reflections
    ]
    geometries = {e.dataset: m.geometry for e, m in zip(cfg.reflections, measurements, strict=True)}
    reflections = build_reflections(cfg, geometries, field)
    grid = SampleGrid(cfg.grid.shape, cfg.grid.voxel_nm)
    objects = _reflection_objects(cfg, measurements, merged, params or ReconParams())
    classic = combine_reconstructions(objects, reflections, grid, want_tensor=cfg.tensor)
    joint = joint_from_independent(
        classic,
        tuple(m.intensity for m in measurements),
        reflections,
        masks=tuple(m.mask for m in measurements),
        options=cfg.joint,
        want_tensor=cfg.tensor,
    )
    return _multi_group(cfg, reflections, grid, classic, joint, merged)


def _reflection_objects(
    cfg: MultiReflectionConfig,
    measurements: list[Measurement],
    merged: dict[str, xr.Dataset],
    params: ReconParams,
) -> tuple[np.ndarray, ...]:
    """Each reflection's object on its conjugate grid: its merged group's, else reconstructed."""
    keys = jax.random.split(jax.random.key(cfg.seed), len(cfg.reflections))
    objects = []
    for j, (entry, m) in enumerate(zip(cfg.reflections, measurements, strict=True)):
        if entry.dataset in merged:
            objects.append(complex_object(merged[entry.dataset]))
        else:
            objects.append(reconstruct(m.intensity, m.mask, m.geometry, params, key=keys[j]).obj)
    return tuple(objects)


def _multi_group(
    cfg: MultiReflectionConfig,
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    classic: IndependentResult,
    joint: JointResult,
    merged: dict[str, xr.Dataset],
) -> xr.Dataset:
    h = np.stack([r.h_nm for r in reflections])
    hkls = [r.geometry.hkl for r in reflections]
    ds = strain_dataset(joint.displacement_nm, joint.support, grid, h, hkls, tensor=cfg.tensor)
    return encode_multi(
        ds,
        shape=joint.shape,
        independent_nm=classic.displacement_nm,
        projections_nm=classic.projections_nm,
        reflections=[e.dataset for e in cfg.reflections],
        joint_loss=joint.loss,
        attrs={
            "config": cfg.model_dump(mode="json"),
            "datasets": [e.dataset for e in cfg.reflections],
            "azimuth_deg": [e.azimuth_deg for e in cfg.reflections],
            "twins": [bool(t) for t in classic.twins],
            "from_merged": [e.dataset in merged for e in cfg.reflections],
            "metrics": joint.metrics,
        },
    )
