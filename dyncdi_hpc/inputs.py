"""A sweep's datasets, resolved once: each one's geometry, fingerprint and source, and the
reflections of the multi-reflection sets that name it; then simulated or loaded, and written.

`resolve` validates everything a sweep reads before anything is simulated, written or
submitted, and attaches the sweep file's field path to every error (datasets.<name>...,
multi.<set>...). Validation, fingerprints, expansion, the input writing and the multi sets all
consume what it returns, so no geometry is built twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np
import xarray as xr

from .config import ArrayDataset, SimulateConfig, SimulatedDataset, StoredDataset, SweepSpec
from .data.load import LoadOptions, load_input
from .data.simulate import simulate
from .data.simulate_dynamical import simulate_dynamical
from .data.validate import check_values
from .errors import DyncdiError
from .identity import stable_hash
from .multi.sets import (
    build_reflections,
    entry_geometries,
    simulated_fingerprints,
    simulated_multi_inputs,
)
from .physics.geometry import Geometry
from .physics.resample import Reflection
from .store.groups import encode_input
from .store.zarr_store import Store


@dataclass(frozen=True)
class ResolvedInput:
    """One dataset of a sweep: its validated geometry, the fingerprint its input group has (or
    will have), where it comes from ("simulate", "file", "store", or "multi.<set>" for a set that
    simulates it), and its reflection in each multi set that names it (set -> Reflection).

    group: the input group itself when resolving had to build it anyway (a file is read to
    fingerprint it); None otherwise.
    """

    name: str
    geometry: Geometry
    fingerprint: str
    source: str
    reflections: dict[str, Reflection] = field(default_factory=dict)
    group: xr.Dataset | None = field(default=None, repr=False, compare=False)


def simulated_fingerprint(cfg: SimulateConfig) -> str:
    """The fingerprint of a simulated dataset: the hash of its configuration."""
    return stable_hash(_simulated_source(cfg))


def _simulated_source(cfg: SimulateConfig) -> dict:
    return {"kind": "simulate", "config": cfg.fingerprint_payload()}


def resolve(spec: SweepSpec, store: Store | None) -> dict[str, ResolvedInput]:
    """Every dataset of spec, resolved and validated, without simulating or writing anything;
    every multi set's reflections checked (one material and energy, allowed reflections, a
    determined tensor when asked for). DyncdiError names the sweep file's field."""
    given: dict[str, Geometry] = {}  # the geometries multi-set entries give their datasets
    simulated_by: dict[str, tuple[str, str]] = {}  # dataset -> (set, fingerprint) of the set
    for name, cfg in spec.multi.items():
        given.update(entry_geometries(cfg, f"multi.{name}"))
        if cfg.simulate is not None:
            for dataset, fingerprint in simulated_fingerprints(cfg).items():
                simulated_by[dataset] = (f"multi.{name}", fingerprint)
    found: dict[str, ResolvedInput] = {}
    for name, dataset in spec.datasets.items():
        if name in simulated_by:
            source, fingerprint = simulated_by[name]
            found[name] = ResolvedInput(name, given[name], fingerprint, source)
        else:
            found[name] = _resolve_dataset(name, dataset, store)
    geometries = {d: r.geometry for d, r in found.items()} | given
    reflections: dict[str, dict[str, Reflection]] = {d: {} for d in found}
    for set_name, cfg in spec.multi.items():
        built = build_reflections(cfg, geometries, f"multi.{set_name}")
        for entry, reflection in zip(cfg.reflections, built, strict=True):
            reflections[entry.dataset][set_name] = reflection
    return {d: replace(r, reflections=reflections[d]) for d, r in found.items()}


def _resolve_dataset(name: str, dataset, store: Store | None) -> ResolvedInput:
    where = f"datasets.{name}"
    if isinstance(dataset, SimulatedDataset):
        cfg = dataset.simulate
        geometry = cfg.geometry.build(f"{where}.simulate.geometry")
        return ResolvedInput(name, geometry, simulated_fingerprint(cfg), "simulate")
    if isinstance(dataset, StoredDataset):
        if store is None or name not in store.input_names():
            raise DyncdiError(
                where,
                f"dataset {name!r} is not in the store",
                "write it first with 'dyncdi simulate' or 'dyncdi load', or point --store at it",
            )
        attrs = store.input_attrs(name)
        geometry = Geometry.from_attrs(attrs["geometry"])
        return ResolvedInput(name, geometry, attrs["fingerprint"], "store")
    assert isinstance(dataset, ArrayDataset)
    group, geometry = read_array_input(dataset, where)
    return ResolvedInput(name, geometry, group.attrs["fingerprint"], "file", group=group)


def simulated_input(cfg: SimulateConfig, field: str = "") -> xr.Dataset:
    """Simulate a dataset and wrap it as an input group; geometry errors name
    <field>.simulate.geometry.<parameter>."""
    prefix = f"{field}.simulate.geometry" if field else "simulate.geometry"
    return simulate_group(cfg, cfg.geometry.build(prefix))


def simulate_group(cfg: SimulateConfig, geometry: Geometry) -> xr.Dataset:
    """The input group of a simulated dataset (fingerprint = hash of its config)."""
    offset = None
    if cfg.model == "dynamical":
        dynamical = simulate_dynamical(cfg, geometry)
        data, offset = dynamical.data, dynamical.rocking_offset_rad
    else:
        data = simulate(cfg, geometry)
    source = _simulated_source(cfg)
    ds = encode_input(
        data.intensity,
        geometry,
        source=source,
        fingerprint=stable_hash(source),
        truth=data.truth.as_arrays(),
    )
    if offset is not None:
        ds.attrs["truth_rocking_offset_rad"] = offset
    return ds


def read_array_input(spec: ArrayDataset, field: str) -> tuple[xr.Dataset, Geometry]:
    """Read a dataset's files as `dyncdi load` does (data/load.py: the same readers,
    corrections, checks, centring and cropping; LoadWarnings say what was changed) into an
    input group; an array without a beamline preset must hold no NaN or negative value.
    Errors name <field>.<key> (path, spec, scan, geometry.<name>, ...). Returns the group and
    its geometry."""
    options = LoadOptions(
        geometry=spec.geometry,
        key=spec.key,
        scan_file=spec.spec,
        scan=spec.scan,
        dark=spec.dark,
        flat=spec.flat,
        threshold=spec.threshold,
        bin_factor=spec.bin,
        shape=spec.shape,
        saturation=spec.saturation,
    )

    def plain_counts(raw) -> None:
        if not spec.geometry.get("beamline"):
            check_values(np.asarray(raw.intensity), f"{field}.path")

    try:
        loaded = load_input(spec.path, options, plain_counts)
    except DyncdiError as exc:
        if exc.field.startswith(field):
            raise
        raise DyncdiError(f"{field}.{_spec_key(exc.field)}", exc.problem, exc.fix) from None
    return loaded.group, loaded.geometry


# what `dyncdi load`'s errors call a flag or an argument, by its name in a sweep dataset
_FLAG_KEYS = {
    "FRAMES": "path",
    "--spec": "spec",
    "--roi": "geometry.roi",
    "--beamline": "geometry.beamline",
    "beamline": "geometry.beamline",
    "--bin": "bin",
    **{name: f"geometry.{name}" for name in ("motors", "rocking_motor", "detector")},
}


def _spec_key(name: str) -> str:
    return _FLAG_KEYS.get(name, name.removeprefix("--"))


def build(
    spec: SweepSpec, resolved: dict[str, ResolvedInput], store: Store | None
) -> dict[str, xr.Dataset]:
    """The input groups the store lacks or holds in another version, simulated or loaded in
    memory; a multi set that simulates one of them is simulated as a whole (one crystal)."""
    groups: dict[str, xr.Dataset] = {}
    stale = {
        name
        for name, r in resolved.items()
        if r.source != "store"
        and (stored_fingerprint(store, name) != r.fingerprint or _lacks_causes(store, name, r))
    }
    for set_name, cfg in spec.multi.items():
        members = [e.dataset for e in cfg.reflections]
        if cfg.simulate is not None and stale & set(members):
            reflections = tuple(resolved[d].reflections[set_name] for d in members)
            simulated = simulated_multi_inputs(cfg, f"multi.{set_name}", reflections)
            groups.update((d, g) for d, g in simulated.items() if d in stale)
            stale -= set(simulated)
    for name in sorted(stale):
        r = resolved[name]
        if r.group is not None:
            groups[name] = r.group
        else:
            groups[name] = simulate_group(spec.datasets[name].simulate, r.geometry)
    return groups


def _lacks_causes(store: Store | None, name: str, r: ResolvedInput) -> bool:
    """A scan loaded from files whose stored input, of the same fingerprint, was written before
    the mask's causes were stored (data/causes.py): rewritten with them, its results kept (the
    causes are not in the fingerprint)."""
    if store is None or r.group is None or "mask_cause" not in r.group:
        return False
    return "mask_cause" not in store.read_input(name)


def stored_fingerprint(store: Store | None, name: str) -> str | None:
    """Fingerprint of the store's input `name`, or None when there is none."""
    if store is None or name not in store.input_names():
        return None
    return store.input_attrs(name).get("fingerprint")


def write(store: Store, groups: dict[str, xr.Dataset]) -> None:
    """Write (or replace) the input groups built for the store."""
    for name, ds in groups.items():
        store.write_input(name, ds)


def fingerprints(resolved: dict[str, ResolvedInput]) -> dict[str, str]:
    """Dataset name -> fingerprint, what sweep.expand needs."""
    return {name: r.fingerprint for name, r in resolved.items()}
