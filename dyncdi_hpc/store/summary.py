"""Summaries of a store read from group attributes only (fast: no arrays are opened): the
task table, and the one-line summaries of merged groups and multi-reflection sets."""

from __future__ import annotations

from collections import Counter

from .integrity import DamagedGroup
from .zarr_store import Store

COLUMNS = ("task", "dataset", "seed", "status", "error", "loss", "wall s", "device", "reason")


def _flat(params: dict, prefix: str = "") -> dict[str, str]:
    """Nested parameters as dotted keys (shrinkwrap.every) with printable values."""
    out = {}
    for key, value in params.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = str(value)
    return out


def varying(params: list[dict]) -> list[str]:
    """The parameter keys (dotted) whose values differ between results: the sweep's axes."""
    flats = [_flat(p) for p in params]
    keys = dict.fromkeys(k for f in flats for k in f)
    return [k for k in keys if len({f.get(k, "") for f in flats}) > 1]


def _parameters(a: dict) -> dict:
    """A result's parameters and its generation (an axis of a sweep with generations)."""
    return {**(a["spec"].get("params") or {}), "generation": a["spec"].get("generation", 0)}


def _row(tid: str, a: dict, note: str, axes: list[str]) -> tuple:
    m = a.get("metrics") or {}
    reason = note or ((a.get("reason") or "").splitlines() or [""])[0]
    flat = _flat(_parameters(a))
    return (
        tid,
        a["spec"]["dataset"],
        a["spec"]["seed"],
        *(flat.get(k, "") for k in axes),
        a["status"],
        f"{m['error']:.3g}" if "error" in m else "",
        f"{m['loss']:.4g}" if "loss" in m else "",
        f"{a['wall_s']:.1f}",
        a.get("device", {}).get("platform", ""),
        reason[:60],
    )


def _diverged_notes(store: Store) -> dict[str, str]:
    """Task id -> why the merge left it out as diverged, from the merged groups' attrs."""
    notes = {}
    for key in store.merged_keys():
        for d in store.merged_attrs(key).get("diverged", []):
            notes[d["task"]] = f"diverged: {d['reason']}"
    return notes


def status_rows(store: Store, verify: bool = False) -> tuple[tuple[str, ...], list[tuple], Counter]:
    """Columns and one row per result (task, dataset, seed, every parameter that differs
    between results, status, error, loss, wall s, device, reason); a damaged group is a row of
    status "damaged" naming why. verify: read every result's arrays and check their checksums
    (slow; without it only the metadata is looked at)."""
    found, damaged, counts = {}, [], Counter()
    notes = _diverged_notes(store)
    for tid in store.damaged_names("results"):
        damaged.append((tid, "zarr.json is missing"))
    for tid in store.result_ids():
        try:
            a = store.result_attrs(tid)
            if verify and a.get("status") == "done":
                store.read_result(tid)
        except DamagedGroup as exc:
            damaged.append((tid, exc.reason[:60]))
            continue
        found[tid] = a
    axes = varying([_parameters(a) for a in found.values()])
    columns = (*COLUMNS[:3], *axes, *COLUMNS[3:])
    empty = ("",) * len(axes)
    rows = [(tid, "", "", *empty, "damaged", "", "", "", "", why) for tid, why in damaged]
    if damaged:
        counts["damaged"] = len(damaged)
    for tid, a in found.items():
        rows.append(_row(tid, a, notes.get(tid, ""), axes))
        counts[a["status"]] += 1
    expected = store.planned_count()
    if expected is not None and expected > len(rows):
        counts["pending"] = expected - len(rows)
    return columns, rows, counts


def truth_phase_rms(attrs: dict) -> float | None:
    """A merged group's phase RMS against the simulated truth (rad), or None without a truth."""
    v = attrs.get("vs_truth") or {}
    return v.get("phase_rms_rad")


def merged_line(key: str, attrs: dict) -> str:
    """'merged/<key>: n of m results[, phase RMS vs truth x rad][; error floor (Poisson) f]
    [; extent x x y x z nm (lab x, y, z)]'; a group merged before floor and extent were
    recorded shows neither."""
    rms = truth_phase_rms(attrs)
    extra = f", phase RMS vs truth {rms:.3f} rad" if rms is not None else ""
    if "fourier_error_floor" in attrs:
        extra += f"; error floor (Poisson) {attrs['fourier_error_floor']:.3g}"
    extent = attrs.get("extent_nm")
    if extent:
        sizes = " x ".join(f"{extent[a]:.0f}" for a in ("x", "y", "z"))
        extra += f"; extent {sizes} nm ({extent.get('frame', 'lab')} x, y, z)"
    starts = attrs.get("independent_starts")
    of = f" from {starts} independent starts" if starts is not None else ""
    return f"merged/{key}: {len(attrs['members'])} of {attrs['candidates']} results{of}{extra}"


def multi_vs_truth_text(attrs: dict) -> str:
    """' (vs truth, RMS / largest range: joint u ..., independent u ...)' or ''."""
    v = attrs.get("vs_truth") or {}
    parts = []
    for route in ("joint", "independent"):
        if route not in v:
            continue
        text = f"{route} u {v[route]['u_rms_over_range_max']:.4f}"
        if "strain_rms_over_range" in v[route]:
            text += f", strain {v[route]['strain_rms_over_range']:.3f}"
        parts.append(text)
    return f" (vs truth, RMS / largest range: {'; '.join(parts)})" if parts else ""
