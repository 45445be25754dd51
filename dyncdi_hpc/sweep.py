"""Sweep expansion: spec -> task specs (cartesian product of the axes), and what is already done."""

from __future__ import annotations

import itertools
from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import xarray as xr
from pydantic import ValidationError

from .config import (
    ArrayDataset,
    Generations,
    ReconParams,
    SimulatedDataset,
    StoredDataset,
    SweepSpec,
    format_validation_error,
    stable_hash,
)
from .data.dataset import GRID_DIMS, array_input, simulated_input
from .errors import DyncdiError
from .merge.breed import breed, member_scores, rank
from .multi_config import build_reflections, simulated_fingerprints, simulated_multi_inputs
from .store.zarr_store import Store
from .task import TaskSpec


def axis_values(spec: SweepSpec) -> dict[str, list]:
    """Each axis with its list of values, in the order the spec gives them."""
    axes: dict[str, list] = {}
    for axis, values in spec.sweep.items():
        axes[axis] = list(range(values)) if isinstance(values, int) else list(values)
    axes.setdefault("dataset", list(spec.datasets))
    axes.setdefault("seed", [0])
    return axes


def expand(spec: SweepSpec, fingerprints: dict[str, str]) -> list[TaskSpec]:
    """All task specs of the sweep; parameter errors name the axis and the value."""
    axes = axis_values(spec)
    names = list(axes)
    base = spec.base.model_dump()
    tasks: dict[str, TaskSpec] = {}
    for combo in itertools.product(*(axes[n] for n in names)):
        point = dict(zip(names, combo, strict=True))
        dataset, seed = point.pop("dataset"), point.pop("seed")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DyncdiError("sweep.seed", f"{seed!r} is not a non-negative integer")
        try:
            params = ReconParams.model_validate({**base, **point})
        except ValidationError as err:
            raise DyncdiError("sweep", format_validation_error(err)) from None
        task = TaskSpec(
            dataset=dataset, fingerprint=fingerprints[dataset], params=params, seed=seed
        )
        tasks.setdefault(task.task_id, task)
    return list(tasks.values())


def multi_fingerprints(spec: SweepSpec) -> dict[str, str]:
    """Dataset name -> fingerprint of every dataset a multi set simulates (nothing simulated)."""
    out: dict[str, str] = {}
    for cfg in spec.multi.values():
        if cfg.simulate is not None:
            out.update(simulated_fingerprints(cfg))
    return out


def stored_fingerprint(store: Store | None, name: str) -> str | None:
    """Fingerprint of the store's input `name`, or None when there is none."""
    if store is None or name not in store.input_names():
        return None
    return store.input_attrs(name).get("fingerprint")


def source_fingerprint(spec: SweepSpec, name: str, store: Store | None) -> str:
    """The fingerprint a dataset will have in the store, without writing anything."""
    simulated_by_multi = multi_fingerprints(spec)
    if name in simulated_by_multi:
        return simulated_by_multi[name]
    dataset = spec.datasets[name]
    field = f"datasets.{name}"
    if isinstance(dataset, SimulatedDataset):
        cfg = dataset.simulate
        cfg.geometry.build(f"{field}.simulate.geometry")
        return stable_hash({"kind": "simulate", "config": cfg.fingerprint_payload()})
    if isinstance(dataset, StoredDataset):
        if store is None or name not in store.input_names():
            raise DyncdiError(
                field,
                f"dataset {name!r} is not in the store",
                "write it first with 'dyncdi simulate' or 'dyncdi load', or point --store at it",
            )
        return store.input_attrs(name)["fingerprint"]
    assert isinstance(dataset, ArrayDataset)
    return array_input(dataset, field).attrs["fingerprint"]


def build_inputs(spec: SweepSpec, store: Store | None) -> dict[str, xr.Dataset | str]:
    """Simulate or load and validate every dataset in memory, before anything is written.

    Datasets already in the store (from_store) are given by their fingerprint instead.
    """
    multi = build_multi_inputs(spec, store)
    built: dict[str, xr.Dataset | str] = {}
    for name, dataset in spec.datasets.items():
        field = f"datasets.{name}"
        if name in multi:
            built[name] = multi[name]
        elif isinstance(dataset, StoredDataset):
            built[name] = source_fingerprint(spec, name, store)
        elif isinstance(dataset, SimulatedDataset):
            built[name] = simulated_input(dataset.simulate, field)
        else:
            built[name] = array_input(dataset, field)
    return built


def build_multi_inputs(spec: SweepSpec, store: Store | None) -> dict[str, xr.Dataset | str]:
    """Simulate in memory each multi set the store lacks or holds in another version; the
    datasets of the others are given by their fingerprint."""
    built: dict[str, xr.Dataset | str] = {}
    for name, cfg in spec.multi.items():
        if cfg.simulate is None:
            continue
        fingerprints = simulated_fingerprints(cfg)
        if all(stored_fingerprint(store, d) == fp for d, fp in fingerprints.items()):
            built.update(fingerprints)
        else:  # one crystal for every reflection: the set is simulated as a whole
            built.update(simulated_multi_inputs(cfg, f"multi.{name}"))
    return built


def _dataset_geometry(spec: SweepSpec, name: str, store: Store | None):
    """The physics Geometry of a sweep dataset, without simulating or loading it."""
    from .physics.geometry import Geometry

    dataset = spec.datasets[name]
    field = f"datasets.{name}"
    if isinstance(dataset, SimulatedDataset):
        return dataset.simulate.geometry.build(f"{field}.simulate.geometry")
    if isinstance(dataset, ArrayDataset):
        return dataset.geometry.build(f"{field}.geometry")
    source_fingerprint(spec, name, store)  # a clear error when the store lacks it
    assert store is not None
    return Geometry.from_attrs(store.input_attrs(name)["geometry"])


def check_multi_sets(spec: SweepSpec, store: Store | None) -> None:
    """Build every multi set's reflections before anything runs: one material and energy,
    allowed reflections, >= 3 non-coplanar ones for a tensor (DyncdiError naming the field)."""
    given = {
        e.dataset: e.geometry.build(f"multi.{name}.reflections[{j}].geometry")
        for name, cfg in spec.multi.items()
        for j, e in enumerate(cfg.reflections)
        if e.geometry is not None
    }
    for name, cfg in spec.multi.items():
        geometries = {
            e.dataset: given.get(e.dataset) or _dataset_geometry(spec, e.dataset, store)
            for e in cfg.reflections
            if e.geometry is None
        }
        build_reflections(cfg, geometries, f"multi.{name}")


def write_inputs(store: Store, built: dict[str, xr.Dataset | str]) -> dict[str, str]:
    """Write the datasets the store lacks or holds in another version; return fingerprints."""
    fingerprints = {}
    for name, ds in built.items():
        if isinstance(ds, str):
            fingerprints[name] = ds
            continue
        if ds.attrs["fingerprint"] != stored_fingerprint(store, name):
            store.write_input(name, ds)
        fingerprints[name] = ds.attrs["fingerprint"]
    return fingerprints


@dataclass(frozen=True)
class Plan:
    """Tasks of a sweep split by what the store already holds."""

    tasks: list[TaskSpec]
    done: list[str]
    failed: list[str]
    todo: list[TaskSpec]


def plan(tasks: list[TaskSpec], store: Store | None, retry_failed: bool = False) -> Plan:
    """Which tasks still need computing (completed ones are skipped; failed ones on request)."""
    existing = set(store.result_ids()) if store is not None else set()
    done, failed, todo = [], [], []
    for task in tasks:
        tid = task.task_id
        if tid not in existing:
            todo.append(task)
            continue
        status = store.result_attrs(tid).get("status") if store is not None else None
        if status == "done":
            done.append(tid)
        else:
            failed.append(tid)
            if retry_failed:
                todo.append(task)
    return Plan(tasks, done, failed, todo)


def _start_dataset(obj: np.ndarray, parents: dict) -> xr.Dataset:
    return xr.Dataset(
        {
            "amplitude": (GRID_DIMS, np.abs(obj).astype(np.float32)),
            "phase": (GRID_DIMS, np.angle(obj).astype(np.float32), {"units": "rad"}),
        },
        attrs={"kind": "dyncdi-start", "parents": parents, "rule": BREEDING_RULE},
    )


BREEDING_RULE = "sqrt(|alpha| |member|) exp(i mean phase), member aligned onto alpha"


def next_generation(
    store: Store, previous: list[TaskSpec], generations: Generations, generation: int
) -> list[TaskSpec]:
    """Tasks of `generation` from the results of the one before, with their bred starts stored.

    Within each group of equal (dataset, parameters), the members are ranked by the metric;
    the best `keep` are bred with the best (alpha) and the rest of the group restarts from
    random. Deterministic: a rerun derives the same tasks and start ids.
    """
    metrics = [generations.metric] if isinstance(generations.metric, str) else generations.metric
    groups: dict[tuple[str, str], list[TaskSpec]] = defaultdict(list)
    for task in previous:
        groups[(task.dataset, task.params.model_dump_json())].append(task)
    done = set(store.result_ids())
    tasks = []
    for members in groups.values():
        members = sorted(members, key=lambda t: t.seed)
        objects, scores = {}, {}
        for t in members:
            if t.task_id in done and store.result_attrs(t.task_id)["status"] == "done":
                ds = store.read_result(t.task_id)
                objects[t.task_id] = ds["amplitude"].values * np.exp(1j * ds["phase"].values)
                scores[t.task_id] = member_scores(
                    objects[t.task_id], store.result_attrs(t.task_id)["metrics"]
                )
        ranked = rank(scores, metrics) if scores else []
        best = ranked[: generations.keep]
        for i, member in enumerate(members):
            start = None
            if i < len(best):
                parents = {"alpha": ranked[0], "member": best[i]}
                start = stable_hash({**parents, "rule": BREEDING_RULE})
                if start not in store.start_ids():
                    child = breed(objects[ranked[0]], objects[best[i]])
                    store.write_start(start, _start_dataset(child, parents))
            tasks.append(member.model_copy(update={"generation": generation, "start": start}))
    return tasks
