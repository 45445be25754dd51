"""Summaries of a store read from group attributes only (fast: no arrays are opened): the
task table, and the one-line summaries of merged groups and multi-reflection sets."""

from __future__ import annotations

from collections import Counter

from .zarr_store import Store


def status_rows(store: Store) -> tuple[list[tuple], Counter]:
    """One row per result (task, dataset, seed, status, error, loss, wall s, device, reason)."""
    rows, counts = [], Counter()
    for tid in store.result_ids():
        a = store.result_attrs(tid)
        m = a.get("metrics") or {}
        reason = (a.get("reason") or "").splitlines()
        rows.append(
            (
                tid,
                a["spec"]["dataset"],
                a["spec"]["seed"],
                a["status"],
                f"{m['error']:.3g}" if "error" in m else "",
                f"{m['loss']:.4g}" if "loss" in m else "",
                f"{a['wall_s']:.1f}",
                a.get("device", {}).get("platform", ""),
                reason[0][:60] if reason else "",
            )
        )
        counts[a["status"]] += 1
    expected = store.planned_count()
    if expected is not None and expected > len(rows):
        counts["pending"] = expected - len(rows)
    return rows, counts


def truth_phase_rms(attrs: dict) -> float | None:
    """A merged group's phase RMS against the simulated truth (rad), or None without a truth."""
    v = attrs.get("vs_truth") or {}
    return v.get("phase_rms_rad")


def merged_line(key: str, attrs: dict) -> str:
    """'merged/<key>: n of m results[, phase RMS vs truth x rad]'."""
    rms = truth_phase_rms(attrs)
    extra = f", phase RMS vs truth {rms:.3f} rad" if rms is not None else ""
    return f"merged/{key}: {len(attrs['members'])} of {attrs['candidates']} results{extra}"


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
