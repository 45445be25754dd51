"""Task summaries read from result attributes only (fast: no arrays are opened)."""

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
