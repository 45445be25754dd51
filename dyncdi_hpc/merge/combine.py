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

from ..analysis.extent import support_extent_nm
from ..analysis.noise import poisson_floor
from ..analysis.prtf import prtf
from ..analysis.strain import displacement_along_h, strain_along_h
from ..analysis.uncertainty import Spread, bootstrap_spread, ensemble_spread
from ..config import MergeRule
from ..data.measurement import Measurement, read_measurement
from ..errors import DyncdiError
from ..identity import stable_hash
from ..physics.objects import support_of
from ..provenance import provenance
from ..store.groups import complex_object, encode_merged
from ..store.integrity import DamagedGroup
from ..store.zarr_store import Store
from .align import align, dice, move_like, phase_rms
from .refine import fourier_error, refine_onto_data, refine_region


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


def start_of(spec: dict) -> str:
    """A result's random start: its bred start, else its seed (other axes share the start)."""
    return spec.get("start") or f"seed {spec['seed']}"


def one_per_start(
    scored: list[tuple[float, str]], starts: dict[str, str]
) -> list[tuple[float, str]]:
    """The best-scored result of each start (scored: (score, task id); starts: id -> start)."""
    best: dict[str, tuple[float, str]] = {}
    for item in sorted(scored):
        best.setdefault(starts[item[1]], item)
    return list(best.values())


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


def _aligned_members(
    objects: list[np.ndarray], rule: MergeRule
) -> tuple[np.ndarray, Agreement, list[int]]:
    """The selected objects aligned onto the best, their agreement with the majority, and the
    indices of those kept (not outliers) with the members (n_kept, N0, N1, N2) they give."""
    aligned = np.stack(align_ensemble(objects))
    agreement = majority_agreement(aligned, rule)
    kept = [i for i, out in enumerate(agreement.outlier) if not out]
    if kept[0] != 0:  # the reference was an outlier: align the rest onto the best kept one
        members = np.stack(align_ensemble([objects[i] for i in kept]))
    else:
        members = aligned[kept]
    return members, agreement, kept


@dataclass(frozen=True)
class _Fields:
    """A merged ensemble's volume fields (by store/groups.py's names), support and comparison
    with the truth."""

    fields: dict[str, np.ndarray]
    support: np.ndarray
    vs_truth: dict
    fit: dict


def _fit_to_data(members: np.ndarray, merged: Merged, m: Measurement, rule: MergeRule):
    """The merged object refined onto the data (rule.refine_iterations; refine.py) and how
    it and every member fit them (kinematical Fourier error at the best scale)."""
    member_errors = [fourier_error(x, m.intensity, m.mask) for x in members]
    mean_error = fourier_error(merged.obj, m.intensity, m.mask)
    obj, error, region = merged.obj, mean_error, None
    if rule.refine_iterations:
        region = refine_region(merged.support_probability)
        refined = refine_onto_data(obj, region, m.intensity, m.mask, rule.refine_iterations)
        obj = refined / max(float(np.abs(refined).max()), 1e-30)
        error = fourier_error(obj, m.intensity, m.mask)
    best = min(member_errors)
    fit = {
        "fourier_error": error,
        "mean_fourier_error": mean_error,
        "member_fourier_errors": member_errors,
        "best_member_fourier_error": best,
        "error_ratio_to_best": error / max(best, 1e-300),
        "refine_iterations": rule.refine_iterations,
        "refine_support_voxels": None if region is None else int(region.sum()),
        "metric": "sum((|F| - sqrt I)^2) / sum(I) over measured voxels, kinematical |F| at "
        "its least-squares scale",
    }
    return Merged(obj, merged.amplitude_std, merged.phase_std, merged.support_probability), fit


def _merged_fields(members: np.ndarray, m: Measurement, rule: MergeRule) -> _Fields:
    """Mean object, displacement and strain along h, their spreads and the support
    probability; moved onto the truth (twin, shift) when the measurement has one."""
    merged, fit = _fit_to_data(members, combine(members), m, rule)
    geometry = m.geometry
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
    if m.truth is not None:
        a = align(obj, m.truth.object)
        obj = a.obj
        maps = (merged.amplitude_std, merged.phase_std, merged.support_probability)
        merged = Merged(obj, *(move_like(a, x) for x in maps))
        spread = Spread(*(move_like(a, x) for x in vars(spread).values()))
        if boot is not None:
            boot = Spread(*(move_like(a, x) for x in vars(boot).values()))
        vs_truth = {
            "phase_rms_rad": phase_rms(obj, m.truth.object, m.truth.support),
            "support_dice": dice(support_of(obj), m.truth.support),
        }
    support = support_of(obj)
    strain = strain_along_h(obj, support, geometry.real_basis, h_nm)
    if m.truth is not None:
        vs_truth["strain_rms"] = _strain_rms(strain, m)
    fields = {
        "amplitude": np.abs(obj),
        "phase": np.angle(obj),
        "displacement": displacement_along_h(np.angle(obj), support, h_nm),
        "strain": strain,
        "amplitude_std": merged.amplitude_std,
        "phase_std": merged.phase_std,
        "displacement_std": spread.displacement,
        "strain_std": spread.strain,
        "support_probability": merged.support_probability,
    }
    if boot is not None:
        for name, values in vars(boot).items():
            fields[f"{name}_sem"] = values
    return _Fields(fields, support, vs_truth, fit)


def _strain_rms(strain: np.ndarray, m: Measurement) -> float:
    """RMS of the strain error inside the true support (both strains defined)."""
    truth = m.truth
    geometry = m.geometry
    true_strain = strain_along_h(truth.object, truth.support, geometry.real_basis, geometry.h_nm)
    inside = truth.support & np.isfinite(strain) & np.isfinite(true_strain)
    return float(np.sqrt(np.mean((strain - true_strain)[inside] ** 2)))


def ran_away(attrs: dict) -> bool:
    """True when a result's last AD stage ended at a higher loss than it started from (its
    fit diverged); False when the result records no loss history in its attrs."""
    history = attrs.get("ad_loss") or []
    params = attrs["spec"]["params"]
    stages = [s["ad_steps"] for s in params.get("stages") or []]
    start = sum(stages) if params.get("ad_steps", 0) else sum(stages[:-1])
    if len(history) <= start + 1:
        return False
    return float(history[-1]) > float(history[start])


def diverged(attrs: dict[str, dict], rule: MergeRule) -> dict[str, str]:
    """The members left out as diverged, with the reason: a fit that ran away (ran_away,
    with rule.reject_diverged) or a final Fourier error above rule.max_error_ratio times the
    group's best."""
    errors = {t: float(a["metrics"]["error"]) for t, a in attrs.items()}
    best = min(errors.values()) if errors else 0.0
    out = {}
    for t, a in attrs.items():
        if rule.reject_diverged and ran_away(a):
            out[t] = "its AD loss ended above where it started"
        elif rule.max_error_ratio is not None and errors[t] > rule.max_error_ratio * best:
            out[t] = f"its error {errors[t]:.3g} is over {rule.max_error_ratio:g} x the best"
    return out


def _intact(store: Store, ids: list[str]) -> list[str]:
    """The results among ids that read back as written (checksums verified); a damaged one is
    quarantined (and recomputed by the next run of the sweep)."""
    out = []
    for tid in ids:
        try:
            store.read_result(tid)
        except DamagedGroup as exc:
            store.quarantine("results", tid, exc.reason)
            continue
        out.append(tid)
    return out


def _outliers(chosen_ids: list[str], agreement: Agreement) -> list[dict]:
    return [
        {
            "task": chosen_ids[i],
            "phase_rms_rad": agreement.phase_rms_rad[i],
            "dice": agreement.dice[i],
        }
        for i, out in enumerate(agreement.outlier)
        if out
    ]


def _resolution(transfer) -> dict:
    return {
        "prtf_resolution_nm": transfer.resolution_nm,
        "limited_by_data": transfer.limited_by_data,
        "q_edge_nm": transfer.q_edge_nm,
        "rule": "half period pi / q where the PRTF first falls to 1/e",
    }


# a change to how members are merged: older merged groups are merged again
MERGE_VERSION = 1


def merge_fingerprint(store: Store, dataset: str, ids: list[str], rule: MergeRule) -> str:
    """What a merged group depends on: the input, the candidate results, the rule."""
    return stable_hash(
        {
            "version": MERGE_VERSION,
            "input": store.input_attrs(dataset).get("fingerprint"),
            "candidates": sorted(ids),
            "rule": _fingerprinted(rule),
        }
    )


# rule keys added after MERGE_VERSION 1: in the fingerprint only when set, so that groups
# merged before they existed stay unchanged for a rerun under the default
LATER_RULE_KEYS = {"one_per_start": False}


def _fingerprinted(rule: MergeRule) -> dict:
    dump = rule.model_dump(mode="json")
    return {k: v for k, v in dump.items() if LATER_RULE_KEYS.get(k, object()) != v}


def _scores(
    key: str, attrs: dict[str, dict], left_out: dict[str, str], rule: MergeRule
) -> list[tuple[float, str]]:
    """(the rule's metric, task id) of every result not left out; a result without that
    metric (free_deviance of a task that held no voxels out) is a DyncdiError."""
    unscored = [t for t, a in attrs.items() if rule.metric not in a["metrics"]]
    if unscored:
        raise DyncdiError(
            "merge.metric",
            f"{len(unscored)} results of {key} have no {rule.metric} (e.g. {unscored[0]})",
            "rank by error, or recompute them with base.free_fraction > 0",
        )
    return [(float(a["metrics"][rule.metric]), t) for t, a in attrs.items() if t not in left_out]


def merge_group(
    store: Store,
    dataset: str,
    model: str,
    ids: list[str],
    rule: MergeRule,
    skip_unchanged: bool = False,
) -> str | None:
    """Merge one (dataset, model) group into merged/<dataset>-<model>; returns the key (None
    when no result could be read). Damaged results are quarantined, diverged ones left out.
    skip_unchanged: keep a merged group whose input, candidates and rule are the same."""
    key = f"{dataset}-{model}"
    fingerprint = merge_fingerprint(store, dataset, ids, rule)
    unchanged = key in store.merged_keys() and (
        store.merged_attrs(key).get("fingerprint") == fingerprint
    )
    if skip_unchanged and unchanged:
        return key  # the same candidates under the same rule: nothing to merge again
    ids = _intact(store, ids)
    if not ids:
        return None
    attrs = {t: store.result_attrs(t) for t in ids}
    left_out = diverged(attrs, rule)
    scored = _scores(key, attrs, left_out, rule)
    starts = {t: start_of(attrs[t]["spec"]) for t in ids}
    chosen = select(one_per_start(scored, starts) if rule.one_per_start else scored, rule)
    if not chosen:
        return None
    objects = [complex_object(store.read_result(t)) for _, t in chosen]
    members, agreement, kept = _aligned_members(objects, rule)
    m = read_measurement(store.read_input(dataset), f"inputs.{dataset}")
    merged = _merged_fields(members, m, rule)
    transfer = prtf(members, m.intensity, m.geometry, m.mask)
    chosen_ids = [t for _, t in chosen]
    ds = encode_merged(
        merged.fields,
        merged.support,
        {
            "member_score": np.array([s for s, _ in chosen]),
            "member_phase_rms": np.array(agreement.phase_rms_rad),
            "member_dice": np.array(agreement.dice),
            "member_outlier": np.array(agreement.outlier),
        },
        metric=rule.metric,
        prtf=transfer.prtf,
        q_nm=transfer.q_nm,
        attrs={
            "dataset": dataset,
            "model": model,
            "fingerprint": fingerprint,
            "rule": rule.model_dump(mode="json"),
            "selected": chosen_ids,
            "members": [chosen_ids[i] for i in kept],
            "independent_starts": len({starts[chosen_ids[i]] for i in kept}),
            "outliers": _outliers(chosen_ids, agreement),
            "outlier_note": agreement.note,
            "diverged": [
                {"task": t, "error": attrs[t]["metrics"]["error"], "reason": why}
                for t, why in sorted(left_out.items())
            ],
            "candidates": len(ids),
            "h_nm": m.geometry.h_nm,
            "real_basis_nm": m.geometry.real_basis.tolist(),
            "geometry": m.geometry.to_attrs(),
            "vs_truth": merged.vs_truth,
            "resolution": _resolution(transfer),
            "fit": merged.fit,
            # what the members' final Fourier errors compare with (issue #15)
            "fourier_error_floor": poisson_floor(m.intensity, m.mask),
            "extent_nm": {
                **support_extent_nm(merged.support, m.geometry.real_basis_lab),
                "frame": "lab",
            },
            "provenance": provenance(),
        },
    )
    store.write_merged(key, ds)
    return key


def check_rule(store: Store, rule: MergeRule, remerge: bool = False) -> None:
    """Refuse (DyncdiError) to replace a merged group that was merged under another rule,
    unless remerge: a changed merge section never silently overwrites a merged result."""
    if remerge:
        return
    for key in store.merged_keys():
        try:
            old = store.merged_attrs(key).get("rule")
        except DamagedGroup:
            continue  # quarantined and merged again by the merge itself
        if old is None:
            continue
        new = rule.model_dump(mode="json")
        defaults = MergeRule().model_dump(mode="json")
        changed = sorted(k for k, v in new.items() if old.get(k, defaults[k]) != v)
        changed += sorted(set(old) - set(new))
        if changed:
            raise DyncdiError(
                "merge",
                f"merged/{key} was merged under another rule ({', '.join(changed)} differ)",
                "pass --remerge to replace it, or restore the rule it was merged with",
            )


def merge_store(store: Store, rule: MergeRule, skip_unchanged: bool = False) -> list[str]:
    """Merge every (dataset, model) group of completed results; returns the merged keys.

    With generations, only the last generation of each group is merged: it is the outcome of
    the genetic algorithm, and earlier ones were its means. A result whose attributes cannot
    be read is quarantined and left out. skip_unchanged: see merge_group (a sweep's rerun).
    """
    groups: dict[tuple[str, str], dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
    for tid in store.result_ids():
        try:
            attrs = store.result_attrs(tid)
        except DamagedGroup as exc:
            store.quarantine("results", tid, exc.reason)
            continue
        if attrs.get("status") == "done":
            spec = attrs["spec"]
            key = (spec["dataset"], spec["params"]["model"])
            groups[key][spec.get("generation", 0)].append(tid)
    keys = [
        merge_group(store, d, m, by_generation[max(by_generation)], rule, skip_unchanged)
        for (d, m), by_generation in sorted(groups.items())
    ]
    return [k for k in keys if k is not None]
