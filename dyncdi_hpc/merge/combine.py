"""Select the best results of each (dataset, model), align them, and merge with uncertainties.

After alignment, members that disagree with the majority (the voxel-wise median object) are
reported and excluded (MergeRule.reject_outliers). The merged group holds the mean object,
displacement and strain along h, their voxel-wise spread over the members (and optionally a
bootstrap standard error), the support probability, and per-member agreement scores, all on
the conjugate grid with CF-style units and long names.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass

import numpy as np
import xarray as xr

from ..analysis.prtf import prtf
from ..analysis.strain import displacement_along_h, strain_along_h
from ..analysis.uncertainty import Spread, bootstrap_spread, ensemble_spread
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


@dataclass(frozen=True)
class Agreement:
    """How each aligned member agrees with the majority: phase RMS (rad), support Dice, verdict."""

    phase_rms_rad: list[float]
    dice: list[float]
    outlier: list[bool]
    note: str


def majority_agreement(members: np.ndarray, rule: MergeRule) -> Agreement:
    """Compare each member with the voxel-wise median object; flag those beyond the rule.

    The majority is the median of the real and imaginary parts and its support is where more
    than half of the members' supports agree. At most (n - 1) // 2 members can be outliers:
    when more disagree there is no majority, and nothing is excluded.
    """
    n = members.shape[0]
    majority = np.median(members.real, axis=0) + 1j * np.median(members.imag, axis=0)
    supports = np.stack([support_of(m) for m in members])
    region = supports.mean(axis=0) > 0.5
    if not region.any():
        region = support_of(majority)
    rms = [phase_rms(m, majority, region) for m in members]
    dices = [dice(s, region) for s in supports]
    flagged = [
        rule.reject_outliers and (r > rule.outlier_phase_rad or d < rule.outlier_dice)
        for r, d in zip(rms, dices, strict=True)
    ]
    note = "" if rule.reject_outliers else "outlier rule off"
    if n < 3 and rule.reject_outliers:
        flagged, note = [False] * n, f"{n} members: no majority to compare with"
    elif sum(flagged) > (n - 1) // 2:
        note = f"{sum(flagged)} of {n} members disagree with the median: no majority, none excluded"
        flagged = [False] * n
    return Agreement(rms, dices, flagged, note)


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


def _var(data: np.ndarray, units: str, long_name: str, **extra) -> tuple:
    return (
        GRID_DIMS,
        np.asarray(data, np.float32),
        {"units": units, "long_name": long_name, **extra},
    )


def _spread_vars(spread: Spread, suffix: str, what: str) -> dict:
    return {
        f"amplitude_{suffix}": _var(spread.amplitude, "1", f"{what} of the amplitude"),
        f"phase_{suffix}": _var(spread.phase, "rad", f"{what} of the phase (circular)"),
        f"displacement_{suffix}": _var(
            spread.displacement, "nm", f"{what} of the displacement along h"
        ),
        f"strain_{suffix}": _var(spread.strain, "1", f"{what} of the strain along h"),
    }


def merge_group(store: Store, dataset: str, model: str, ids: list[str], rule: MergeRule) -> str:
    """Merge one (dataset, model) group into merged/<dataset>-<model>; returns the key."""
    scored = [(float(store.result_attrs(t)["metrics"][rule.metric]), t) for t in ids]
    chosen = select(scored, rule)
    objects = [result_object(store.read_result(t)) for _, t in chosen]
    aligned = np.stack(align_ensemble(objects))
    agreement = majority_agreement(aligned, rule)
    kept = [i for i, out in enumerate(agreement.outlier) if not out]
    if kept[0] != 0:  # the reference was an outlier: align the rest onto the best kept one
        members = np.stack(align_ensemble([objects[i] for i in kept]))
    else:
        members = aligned[kept]
    merged = combine(members)
    measurement = from_xarray(store.read_input(dataset), f"inputs.{dataset}")
    geometry: Geometry = measurement.geometry
    h_nm = geometry.h_nm
    region = merged.support_probability >= 0.5
    spread = ensemble_spread(members, region, geometry.real_basis, h_nm)
    boot = None
    if rule.bootstrap:
        boot = bootstrap_spread(
            members,
            region,
            geometry.real_basis,
            h_nm,
            n_resamples=rule.bootstrap,
            seed=rule.bootstrap_seed,
        )
    obj = merged.obj
    vs_truth = {}
    if measurement.truth is not None:
        truth = measurement.truth.amplitude * np.exp(1j * measurement.truth.phase)
        a = align(obj, truth)
        obj = a.obj
        maps = (merged.amplitude_std, merged.phase_std, merged.support_probability)
        merged = Merged(obj, *(move_like(a, m) for m in maps))
        spread = Spread(*(move_like(a, m) for m in vars(spread).values()))
        if boot is not None:
            boot = Spread(*(move_like(a, m) for m in vars(boot).values()))
        vs_truth = {
            "phase_rms_rad": phase_rms(obj, truth, measurement.truth.support),
            "support_dice": dice(support_of(obj), measurement.truth.support),
        }
    support = support_of(obj)
    displacement = displacement_along_h(np.angle(obj), support, h_nm)
    strain = strain_along_h(obj, support, geometry.real_basis, h_nm)
    if measurement.truth is not None:
        inside = measurement.truth.support & np.isfinite(strain)
        true_strain = strain_along_h(truth, measurement.truth.support, geometry.real_basis, h_nm)
        inside &= np.isfinite(true_strain)
        vs_truth["strain_rms"] = float(np.sqrt(np.mean((strain - true_strain)[inside] ** 2)))
    key = f"{dataset}-{model}"
    chosen_ids = [t for _, t in chosen]
    variables = {
        "amplitude": _var(np.abs(obj), "1", "amplitude of the merged object (interior ~ 1)"),
        "phase": _var(np.angle(obj), "rad", "phase -h.u of the merged object"),
        "displacement": _var(
            displacement, "nm", "displacement along h (-phase / |h|, unwrapped, zero mean)"
        ),
        "strain": _var(
            strain, "1", "strain along h (d u_h / d z, from the gradient of exp(i phi))"
        ),
        "amplitude_std": _var(merged.amplitude_std, "1", "std over members of the amplitude"),
        "phase_std": _var(merged.phase_std, "rad", "circular std over members of the phase"),
        **{
            k: v
            for k, v in _spread_vars(spread, "std", "std over members").items()
            if k.startswith(("displacement", "strain"))
        },
        "support": (GRID_DIMS, support, {"long_name": "support of the merged object"}),
        "support_probability": _var(
            merged.support_probability, "1", "fraction of members whose support holds the voxel"
        ),
        "member_score": (
            ("member",),
            np.array([s for s, _ in chosen]),
            {"metric": rule.metric, "long_name": "selection metric of each selected result"},
        ),
        "member_phase_rms": (
            ("member",),
            np.array(agreement.phase_rms_rad),
            {"units": "rad", "long_name": "phase RMS against the majority (median) object"},
        ),
        "member_dice": (
            ("member",),
            np.array(agreement.dice),
            {"units": "1", "long_name": "support Dice against the majority support"},
        ),
        "member_outlier": (
            ("member",),
            np.array(agreement.outlier),
            {"long_name": "excluded as disagreeing with the majority"},
        ),
    }
    if boot is not None:
        variables.update(_spread_vars(boot, "sem", "bootstrap standard error"))
    transfer = prtf(members, measurement.intensity, geometry, measurement.mask)
    variables["prtf"] = (
        ("q_shell",),
        transfer.prtf,
        {"units": "1", "long_name": "phase-retrieval transfer function |<F_k>| / sqrt(I)"},
    )
    ds = xr.Dataset(
        variables,
        coords={
            **grid_coords(geometry),
            "member": np.arange(len(chosen)),
            "q_shell": ("q_shell", transfer.q_nm, {"units": "nm^-1", "long_name": "|q|"}),
        },
        attrs={
            "kind": "dyncdi-merged",
            "dataset": dataset,
            "model": model,
            "rule": rule.model_dump(mode="json"),
            "selected": chosen_ids,
            "members": [chosen_ids[i] for i in kept],
            "outliers": [
                {
                    "task": chosen_ids[i],
                    "phase_rms_rad": agreement.phase_rms_rad[i],
                    "dice": agreement.dice[i],
                }
                for i, out in enumerate(agreement.outlier)
                if out
            ],
            "outlier_note": agreement.note,
            "candidates": len(ids),
            "h_nm": h_nm,
            "real_basis_nm": geometry.real_basis.tolist(),
            "geometry": geometry.to_attrs(),
            "vs_truth": vs_truth,
            "resolution": {
                "prtf_resolution_nm": transfer.resolution_nm,
                "limited_by_data": transfer.limited_by_data,
                "q_edge_nm": transfer.q_edge_nm,
                "rule": "half period pi / q where the PRTF first falls to 1/e",
            },
            "provenance": provenance(),
        },
    )
    store.write_merged(key, ds)
    return key


def merge_store(store: Store, rule: MergeRule) -> list[str]:
    """Merge every (dataset, model) group of completed results; returns the merged keys.

    With generations, only the last generation of each group is merged: it is the outcome of
    the genetic algorithm, and earlier ones were its means.
    """
    groups: dict[tuple[str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for tid in store.result_ids():
        attrs = store.result_attrs(tid)
        if attrs.get("status") == "done":
            spec = attrs["spec"]
            key = (spec["dataset"], spec["params"]["model"])
            groups[key][spec.get("generation", 0)].append(tid)
    return [
        merge_group(store, d, m, by_generation[max(by_generation)], rule)
        for (d, m), by_generation in sorted(groups.items())
    ]
