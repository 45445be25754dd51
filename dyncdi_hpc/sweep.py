"""Sweep expansion: spec -> task specs (cartesian product of the axes), and what is already done."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import xarray as xr
from pydantic import ValidationError

from .config import (
    ArrayDataset,
    ReconParams,
    SimulatedDataset,
    StoredDataset,
    SweepSpec,
    format_validation_error,
    stable_hash,
)
from .data.dataset import array_input, simulated_input
from .errors import DyncdiError
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


def source_fingerprint(spec: SweepSpec, name: str, store: Store | None) -> str:
    """The fingerprint a dataset will have in the store, without writing anything."""
    dataset = spec.datasets[name]
    field = f"datasets.{name}"
    if isinstance(dataset, SimulatedDataset):
        cfg = dataset.simulate
        cfg.geometry.build(f"{field}.simulate.geometry")
        return stable_hash({"kind": "simulate", "config": cfg.model_dump(mode="json")})
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
    built: dict[str, xr.Dataset | str] = {}
    for name, dataset in spec.datasets.items():
        field = f"datasets.{name}"
        if isinstance(dataset, StoredDataset):
            built[name] = source_fingerprint(spec, name, store)
        elif isinstance(dataset, SimulatedDataset):
            built[name] = simulated_input(dataset.simulate, field)
        else:
            built[name] = array_input(dataset, field)
    return built


def write_inputs(store: Store, built: dict[str, xr.Dataset | str]) -> dict[str, str]:
    """Write the datasets the store lacks or holds in another version; return fingerprints."""
    fingerprints = {}
    for name, ds in built.items():
        if isinstance(ds, str):
            fingerprints[name] = ds
            continue
        have = store.input_attrs(name).get("fingerprint") if name in store.input_names() else None
        if ds.attrs["fingerprint"] != have:
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
