"""The report page: figures of every merged result, loss curves, and a table of the tasks."""

from __future__ import annotations

import html
from pathlib import Path

import numpy as np

from ..data.dataset import from_xarray
from ..store.zarr_store import Store
from .figures import loss_figure, object_figure, uncertainty_figure


def _task_rows(store: Store) -> list[dict]:
    rows = []
    for tid in store.result_ids():
        a = store.result_attrs(tid)
        p = a["spec"]["params"]
        rows.append(
            {
                "task": tid,
                "dataset": a["spec"]["dataset"],
                "model": p["model"],
                "seed": a["spec"]["seed"],
                "tv_weight": p["tv_weight"],
                "status": a["status"],
                "error": a["metrics"].get("error"),
                "loss": a["metrics"].get("loss"),
                "wall_s": a["wall_s"],
                "device": a["device"]["platform"],
                "reason": (a.get("reason") or "").splitlines()[0] if a.get("reason") else "",
            }
        )
    return rows


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def write_report(store: Store, out: Path) -> Path:
    """Write PNG figures and index.html into out; returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    selected: set[str] = set()
    for key in store.merged_keys():
        ds = store.read_merged(key)
        attrs = store.merged_attrs(key)
        selected.update(attrs["members"])
        m = from_xarray(store.read_input(attrs["dataset"]), f"inputs.{attrs['dataset']}")
        truth = None
        if m.truth is not None:
            truth = (m.truth.amplitude, m.truth.phase, m.truth.support)
        support = ds["support"].values
        obj_png = object_figure(
            out / f"{key}-object.png",
            ds["amplitude"].values,
            ds["phase"].values,
            support,
            truth,
            title=f"{key}: merged from {len(attrs['members'])} of {attrs['candidates']} results",
        )
        unc_png = uncertainty_figure(
            out / f"{key}-uncertainty.png",
            ds["amplitude_std"].values,
            ds["phase_std"].values,
            support,
            title=f"{key}: spread of the merged members",
        )
        truth_line = ""
        if attrs["vs_truth"]:
            v = attrs["vs_truth"]
            truth_line = (
                f"<p>Against the ground truth: phase RMS {v['phase_rms_rad']:.4f} rad inside the "
                f"true support, support Dice {v['support_dice']:.3f}.</p>"
            )
        sections.append(
            f"<h2>{html.escape(key)}</h2>{truth_line}"
            f"<p>Members: {', '.join(attrs['members'])}</p>"
            f'<img src="{obj_png.name}" alt="merged object"><br>'
            f'<img src="{unc_png.name}" alt="uncertainty">'
        )
    histories = []
    for tid in store.result_ids():
        a = store.result_attrs(tid)
        if a["status"] != "done":
            continue
        ds = store.read_result(tid)
        histories.append(
            {
                "pr_error": np.asarray(ds["pr_error"].values),
                "ad_loss": np.asarray(ds["ad_loss"].values),
                "log_every": a["spec"]["params"]["log_every"],
                "selected": tid in selected,
            }
        )
    loss_png = loss_figure(out / "losses.png", histories)
    rows = _task_rows(store)
    header = list(rows[0]) if rows else []
    table = "<table><tr>" + "".join(f"<th>{h}</th>" for h in header) + "</tr>"
    for r in rows:
        table += "<tr>" + "".join(f"<td>{_fmt(r[h])}</td>" for h in header) + "</tr>"
    table += "</table>"
    page = out / "index.html"
    page.write_text(
        "<!doctype html><html><head><meta charset='utf-8'><title>dyncdi report</title>"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}"
        "td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:12px}</style></head><body>"
        f"<h1>dyncdi report: {html.escape(str(store.path))}</h1>"
        + "".join(sections)
        + f'<h2>Loss curves</h2><img src="{loss_png.name}" alt="loss curves">'
        + f"<h2>Tasks</h2>{table}</body></html>"
    )
    return page
