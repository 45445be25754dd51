"""Select the best results of each (dataset, model), align them, and merge with uncertainties."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..config import MergeRule
from ..data.dataset import GRID_DIMS, from_xarray, grid_coords
from ..physics.geometry import Geometry
from ..provenance import provenance
from ..store.zarr_store import Store
from .align import align, dice, move_like, phase_rms, support_of


@dataclass(frozen=True)
class Ensemble:
    """Aligned members (n, N0, N1, N2), normalised to unit interior amplitude, best first."""

    members: np.ndarray
    task_ids: list[str]
    scores: list[float]


@dataclass(frozen=True)
class Merged:
    """Voxel-wise mean and spread of an ensemble, each (N0, N1, N2)."""

    obj: np.ndarray
    amplitude_std: np.ndarray
    phase_std: np.ndarray
    support_probability: np.ndarray


def normalise(obj: np.ndarray) -> np.ndarray:
    """Scale an object so its interior amplitude (90th percentile in its support) is 1."""
    level = np.quantile(np.abs(obj)[support_of(obj)], 0.9)
    return obj / level if level > 0 else obj


def select(scored: list[tuple[float, str]], rule: MergeRule) -> list[tuple[float, str]]:
    """The best members by the rule's metric (lowest first)."""
    ranked = sorted(scored)
    if rule.select == "all":
        return ranked
    if rule.select == "best_n":
        return ranked[: rule.n]
    return ranked[: max(1, round(rule.fraction * len(ranked)))]


def align_ensemble(objects: list[np.ndarray]) -> list[np.ndarray]:
    """Align every object onto the first (the best) and normalise amplitudes."""
    reference = normalise(objects[0])
    return [reference] + [normalise(align(o, reference).obj) for o in objects[1:]]


def combine(members: np.ndarray) -> Merged:
    """Mean amplitude, circular-mean phase, their voxel-wise spreads, support probability."""
    amp = np.abs(members)
    unit = np.exp(1j * np.angle(members))
    resultant = np.abs(unit.mean(axis=0))
    phase_std = np.sqrt(-2.0 * np.log(np.clip(resultant, 1e-12, 1.0)))
    mean_phase = np.angle((amp * unit).sum(axis=0))
    supports = np.stack([support_of(m) for m in members])
    return Merged(
        obj=amp.mean(axis=0) * np.exp(1j * mean_phase),
        amplitude_std=amp.std(axis=0),
        phase_std=phase_std,
        support_probability=supports.mean(axis=0),
    )


def result_object(ds: xr.Dataset) -> np.ndarray:
    """Complex object of a result group, (N0, N1, N2)."""
    return ds["amplitude"].values * np.exp(1j * ds["phase"].values)


def merge_group(store: Store, dataset: str, model: str, ids: list[str], rule: MergeRule) -> str:
    """Merge one (dataset, model) group into merged/<dataset>-<model>; returns the key."""
    scored = [(float(store.result_attrs(t)["metrics"][rule.metric]), t) for t in ids]
    chosen = select(scored, rule)
    objects = [result_object(store.read_result(t)) for _, t in chosen]
    members = np.stack(align_ensemble(objects))
    merged = combine(members)
    measurement = from_xarray(store.read_input(dataset), f"inputs.{dataset}")
    geometry: Geometry = measurement.geometry
    obj = merged.obj
    vs_truth = {}
    if measurement.truth is not None:
        truth = measurement.truth.amplitude * np.exp(1j * measurement.truth.phase)
        a = align(obj, truth)
        obj = a.obj
        maps = (merged.amplitude_std, merged.phase_std, merged.support_probability)
        merged = Merged(obj, *(move_like(a, m) for m in maps))
        vs_truth = {
            "phase_rms_rad": phase_rms(obj, truth, measurement.truth.support),
            "support_dice": dice(support_of(obj), measurement.truth.support),
        }
    key = f"{dataset}-{model}"
    ds = xr.Dataset(
        {
            "amplitude": (GRID_DIMS, np.abs(obj).astype(np.float32), {"units": "1"}),
            "phase": (GRID_DIMS, np.angle(obj).astype(np.float32), {"units": "rad"}),
            "amplitude_std": (GRID_DIMS, merged.amplitude_std.astype(np.float32), {"units": "1"}),
            "phase_std": (GRID_DIMS, merged.phase_std.astype(np.float32), {"units": "rad"}),
            "support": (GRID_DIMS, support_of(obj)),
            "support_probability": (GRID_DIMS, merged.support_probability.astype(np.float32)),
            "member_score": (
                ("member",),
                np.array([s for s, _ in chosen]),
                {"metric": rule.metric},
            ),
        },
        coords={**grid_coords(geometry), "member": np.arange(len(chosen))},
        attrs={
            "kind": "dyncdi-merged",
            "dataset": dataset,
            "model": model,
            "rule": rule.model_dump(mode="json"),
            "members": [t for _, t in chosen],
            "candidates": len(ids),
            "vs_truth": vs_truth,
            "provenance": provenance(),
        },
    )
    store.write_merged(key, ds)
    return key


def merge_store(store: Store, rule: MergeRule) -> list[str]:
    """Merge every (dataset, model) group of completed results; returns the merged keys."""
    groups: dict[tuple[str, str], list[str]] = defaultdict(list)
    for tid in store.result_ids():
        attrs = store.result_attrs(tid)
        if attrs.get("status") == "done":
            spec = attrs["spec"]
            groups[(spec["dataset"], spec["params"]["model"])].append(tid)
    return [merge_group(store, d, m, ids, rule) for (d, m), ids in sorted(groups.items())]
