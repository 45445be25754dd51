"""Sweep expansion: spec -> task specs (the cartesian product of the axes), and the plan that
splits them by what the store already holds. Pure: it reads result ids and statuses, writes
nothing."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from pydantic import ValidationError

from .config import ReconParams, SweepSpec, TaskSpec, format_validation_error
from .errors import DyncdiError
from .store.zarr_store import Store


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
