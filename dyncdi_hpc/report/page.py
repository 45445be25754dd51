"""The report: one self-contained HTML page (PNGs embedded as base64), the PNGs beside it.

For each merged group: the members' and the model's Fourier errors (against the Poisson floor
and with the support's extent, when the merge recorded them), measured vs modelled intensity
through the peak; for a measured scan the mask by cause and amplitude / phase / strain in the
laboratory frame; amplitude / phase / displacement / strain in the sample frame, their
uncertainty maps, a support-probability isosurface, the comparison with the ground truth
when there is one (parts.py builds the newer parts); for each multi-reflection set its errors
against the truth and central slices of u; for a dataset merged with both models their
deviances and the difference of their displacement and strain (compare.py); then the loss
curves of every task (merged, outlier or not selected), the sweep's parameters and outcomes,
and provenance.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import numpy as np

from ..data.measurement import Measurement, read_measurement
from ..data.prepare import find_peak
from ..identity import stable_hash
from ..store.groups import complex_object
from ..store.integrity import DamagedGroup
from ..store.zarr_store import Store
from .compare import model_comparison_section, model_pairs
from .export import sample_frame
from .figures import (
    conjugate_axes_nm,
    intensity_figure,
    isosurface_figure,
    loss_figure,
    object_figure,
    prtf_figure,
    sample_slices_figure,
)
from .model import fourier_error, members_offset, members_widths, modelled_intensity
from .parts import errors_part, figure, lab_frame_part, mask_part, support_centre
from .tables import fmt as _fmt
from .tables import rule_table, sweep_table
from .tables import table as _table

CSS = (
    "body{font-family:sans-serif;max-width:1150px;margin:auto;color:#222}"
    "td,th{padding:2px 8px;border-bottom:1px solid #ddd;font-size:12px;text-align:left}"
    "img{max-width:100%}figure{margin:12px 0}figcaption{font-size:13px;color:#444}"
    "pre{font-size:11px;background:#f6f6f6;padding:8px;overflow-x:auto}"
)


def _member_states(attrs: dict) -> dict[str, str]:
    states = {t: "outlier" for t in attrs.get("selected", [])}
    states.update({t: "merged" for t in attrs["members"]})
    return states


def _limits(support: np.ndarray, axes_nm: list[np.ndarray]) -> list[tuple[float, float]] | None:
    """Range (nm) along x, y, z that shows the crystal with a margin of half its size."""
    if not support.any():
        return None
    idx = np.argwhere(support)
    out = []
    for a, axis in enumerate(axes_nm):
        lo, hi = axis[idx[:, a].min()], axis[idx[:, a].max()]
        half = max(hi - lo, 4 * (axis[1] - axis[0])) * 0.5
        mid = (lo + hi) / 2
        out.append((float(mid - 1.5 * half), float(mid + 1.5 * half)))
    return out


def starts_text(attrs: dict) -> str:
    """The text "N members from K independent starts" when the merge counted the distinct
    random starts among its members (attrs independent_starts), else "" when it did not."""
    k = attrs.get("independent_starts")
    if not isinstance(k, int) or isinstance(k, bool):
        return ""
    n = len(attrs["members"])
    return f"{n} member{'s' * (n != 1)} from {k} independent start{'s' * (k != 1)}"


def _merged_summary(attrs: dict) -> list[str]:
    """The merged group's members, outliers, merge rule and comparison with the truth."""
    n_sel = len(attrs.get("selected", attrs["members"]))
    starts = starts_text(attrs)
    parts = [
        f"<p>Merged {len(attrs['members'])} of {n_sel} selected results "
        f"({attrs['candidates']} candidates){f': {starts}' if starts else ''}.</p>"
        f"<p>Merge rule:</p>{rule_table(attrs['rule'])}"
    ]
    if attrs.get("outliers"):
        rows = [
            {
                "task": o["task"],
                "phase RMS vs majority (rad)": o["phase_rms_rad"],
                "support Dice": o["dice"],
            }
            for o in attrs["outliers"]
        ]
        parts.append("<p>Excluded as outliers (disagree with the majority):</p>" + _table(rows))
    if attrs.get("outlier_note"):
        parts.append(f"<p>Outlier rule: {html.escape(attrs['outlier_note'])}</p>")
    if attrs["vs_truth"]:
        v = attrs["vs_truth"]
        strain = f", strain RMS {v['strain_rms']:.2e}" if "strain_rms" in v else ""
        parts.append(
            f"<p>Against the ground truth: phase RMS {v['phase_rms_rad']:.4f} rad inside the "
            f"true support, support Dice {v['support_dice']:.3f}{strain}.</p>"
        )
    return parts


def _model(store: Store, attrs: dict, obj: np.ndarray, m: Measurement) -> np.ndarray:
    """The merged object's intensity (N0, N1, N2), counts, under its members' model, rocking
    offset and coherence widths."""
    model_name = attrs.get("model", "kinematical")
    offset, widths = members_offset(store, attrs), members_widths(store, attrs)
    return modelled_intensity(obj, m.intensity, m.mask, model_name, m, offset, widths)


def _intensity_part(
    key: str, attrs: dict, model: np.ndarray, m: Measurement, peak: tuple, out: Path
) -> str:
    png = intensity_figure(
        out / f"{key}-intensity.png",
        m.intensity,
        model,
        m.mask,
        f"{key}: measured vs modelled intensity ({attrs.get('model', 'kinematical')} model of "
        "the merged object, least-squares scaled)",
        peak,
    )
    return figure(png, "Measured (top) and modelled (bottom) intensity through the peak, log scale")


def _sample_frame_parts(store: Store, key: str, n_members: int, out: Path) -> list[str]:
    """Amplitude, phase, displacement and strain in the sample frame, their uncertainty maps
    and the support-probability isosurface."""
    s = sample_frame(store, key)
    axes_nm = [s[d].values for d in ("x", "y", "z")]
    support = s["support"].values
    centre = support_centre(support)
    limits = _limits(support, axes_nm)

    def inside(name: str) -> np.ndarray:
        return np.where(support, s[name].values, np.nan)

    amp_max = float(np.nanmax(s["amplitude"].values)) or 1.0
    strain = inside("strain")
    lim = float(np.nanpercentile(np.abs(strain), 98)) if np.isfinite(strain).any() else 1e-3
    disp = inside("displacement")
    dlim = float(np.nanmax(np.abs(disp))) if np.isfinite(disp).any() else 1.0
    fields = [
        ("amplitude", s["amplitude"].values, "gray", "relative", 0.0, amp_max),
        ("phase", inside("phase"), "twilight", "rad", -np.pi, np.pi),
        ("displacement along h", disp, "coolwarm", "nm", -dlim, dlim),
        ("strain along h", strain, "RdBu_r", "strain (1)", -lim, lim),
    ]
    title = f"{key}: merged object in the sample frame (z along h)"
    png = sample_slices_figure(out / f"{key}-object.png", fields, axes_nm, centre, title, limits)
    parts = [figure(png, "Amplitude, phase, displacement and strain along h")]
    spreads = [
        (f"{what} {kind}", inside(f"{var}_{suffix}"), "magma", units, 0.0, None)
        for suffix, kind in (("std", "std over members"), ("sem", "bootstrap std. error"))
        for var, what, units in (
            ("amplitude", "amplitude", "relative"),
            ("phase", "phase", "rad"),
            ("displacement", "displacement", "nm"),
            ("strain", "strain", "strain (1)"),
        )
        if f"{var}_{suffix}" in s
    ]
    if spreads:
        title = f"{key}: voxel-wise uncertainty ({n_members} members)"
        png = sample_slices_figure(
            out / f"{key}-uncertainty.png", spreads, axes_nm, centre, title, limits
        )
        parts.append(figure(png, "Uncertainty maps inside the support"))
    png = isosurface_figure(
        out / f"{key}-support.png",
        s["support_probability"].values,
        float(s.attrs["voxel_nm"]),
        tuple(s.attrs["origin_nm"]),
        f"{key}: support probability = 0.5",
    )
    parts.append(figure(png, "Isosurface of the support probability (sample frame)"))
    return parts


def _prtf_part(key: str, merged, attrs: dict, out: Path) -> str:
    res = attrs.get("resolution", {})
    png = prtf_figure(
        out / f"{key}-prtf.png",
        merged["q_shell"].values,
        merged["prtf"].values,
        res.get("prtf_resolution_nm"),
        bool(res.get("limited_by_data")),
        f"{key}: phase-retrieval transfer function",
    )
    note = " (limited by the extent of the data)" if res.get("limited_by_data") else ""
    resolution = res.get("prtf_resolution_nm", float("nan"))
    return figure(png, f"PRTF: resolution {resolution:.0f} nm{note}")


def _provenance_part(store: Store, dataset: str, attrs: dict) -> str:
    input_attrs = store.input_attrs(dataset)
    prov = {
        "input source": input_attrs.get("source"),
        "input geometry": input_attrs.get("geometry"),
        "input load record": input_attrs.get("provenance", {}).get("load"),
        "merged provenance": attrs.get("provenance"),
    }
    return (
        "<details><summary>Provenance</summary><pre>"
        + html.escape(json.dumps(prov, indent=1, default=str))
        + "</pre></details>"
    )


def _truth_part(key: str, merged, m: Measurement, out: Path) -> str:
    """Central slices of the merged object and of the ground truth on the conjugate grid,
    axes in nm, zoomed on both supports."""
    support = merged["support"].values
    voxel_nm = m.geometry.voxel_size_nm
    axes_nm = conjugate_axes_nm(support.shape, voxel_nm)
    png = object_figure(
        out / f"{key}-truth.png",
        merged["amplitude"].values,
        merged["phase"].values,
        support,
        (m.truth.amplitude, m.truth.phase, m.truth.support),
        title=f"{key}: merged vs ground truth",
        voxel_nm=voxel_nm,
        limits_nm=_limits(support | np.asarray(m.truth.support, bool), axes_nm),
    )
    return figure(png, "Merged object vs ground truth, detector-conjugate grid")


def _merged_section(store: Store, key: str, out: Path) -> tuple[str, dict[str, str]]:
    attrs = store.merged_attrs(key)
    dataset = attrs["dataset"]
    merged = store.read_merged(key)
    inp = store.read_input(dataset)
    m = read_measurement(inp, f"inputs.{dataset}")
    model = _model(store, attrs, complex_object(merged), m)
    peak = find_peak(m.intensity, np.zeros(m.intensity.shape, bool) if m.mask is None else m.mask)
    parts = [f"<h2>{html.escape(key)}</h2>", *_merged_summary(attrs)]
    parts.append(errors_part(store, attrs, fourier_error(model, m.intensity, m.mask)))
    parts.append(_intensity_part(key, attrs, model, m, peak, out))
    if m.truth is None:  # a measured scan: its mask by cause, the object in the lab frame
        parts.append(mask_part(inp, key, peak[0], out))
        parts.append(lab_frame_part(store, key, out))
    parts += _sample_frame_parts(store, key, len(attrs["members"]), out)
    if "prtf" in merged:
        parts.append(_prtf_part(key, merged, attrs, out))
    if m.truth is not None:
        parts.append(_truth_part(key, merged, m, out))
    parts.append(_provenance_part(store, dataset, attrs))
    return "".join(parts), _member_states(attrs)


def _multi_rows(attrs: dict) -> list[dict]:
    """One row per route: u RMS error per component and strain RMS error against the truth."""
    v = attrs.get("vs_truth") or {}
    return [
        {
            "route": route,
            **{
                f"u_{c} RMS / range": e
                for c, e in zip("xyz", v[route]["u_rms_over_range"], strict=True)
            },
            "strain RMS / range": v[route].get("strain_rms_over_range", "-"),
        }
        for route in ("joint", "independent")
        if route in v
    ]


def _multi_section(store: Store, name: str, out: Path) -> str:
    """A multi-reflection set: its reflections, errors against the truth, u's central slices."""
    attrs = store.multi_attrs(name)
    ds = store.read_multi(name)
    reflections = [
        {"dataset": d, "hkl": hkl, "azimuth_deg": a, "from merged group": k}
        for d, hkl, a, k in zip(
            attrs["datasets"],
            attrs["reflections"],
            attrs["azimuth_deg"],
            [attrs["merged_groups"].get(d, "reconstructed here") for d in attrs["datasets"]],
            strict=True,
        )
    ]
    parts = [f"<h2>multi/{html.escape(name)}</h2>", _table(reflections)]
    parts.append(
        f"<p>Joint AD: {attrs['config']['joint']['steps']} steps "
        f"({html.escape(attrs['config']['joint']['model'])}), final loss "
        f"{_fmt(attrs['metrics']['loss'])}.</p>"
    )
    if attrs.get("vs_truth"):
        v = attrs["vs_truth"]
        parts.append(
            f"<p>Against the simulated truth ({v['voxels']} voxels: {html.escape(v['region'])}; "
            "RMS error over the truth's largest component range, after undoing the "
            "crystal's translation and a constant u):</p>" + _table(_multi_rows(attrs))
        )
    support = ds["support"].values
    axes_nm = [ds[d].values for d in ("x", "y", "z")]
    u = np.where(support, ds["displacement"].values, np.nan)
    lim = float(np.nanmax(np.abs(u))) if np.isfinite(u).any() else 1.0
    fields = [(f"u_{c} (joint)", u[k], "coolwarm", "nm", -lim, lim) for k, c in enumerate("xyz")]
    png = sample_slices_figure(
        out / f"multi-{name}-u.png",
        fields,
        axes_nm,
        support_centre(support),
        f"multi/{name}: joint displacement vector field (sample frame: cubic axes)",
        _limits(support, axes_nm),
    )
    parts.append(figure(png, "Central slices of each component of the joint u"))
    return "".join(parts)


def _task_rows(store: Store, states: dict[str, str]) -> list[dict]:
    rows = []
    for tid in store.result_ids():
        try:
            a = store.result_attrs(tid)
        except DamagedGroup:
            continue
        p = a["spec"]["params"]
        rows.append(
            {
                "task": tid,
                "dataset": a["spec"]["dataset"],
                "model": p["model"],
                "seed": a["spec"]["seed"],
                "recipe": p["recipe"],
                "ad_steps": p["ad_steps"],
                "loss_kind": p["loss"],
                "tv_weight": p["tv_weight"],
                "status": a["status"],
                "merge": states.get(tid, "not selected") if a["status"] == "done" else "-",
                "error": a["metrics"].get("error"),
                "loss": a["metrics"].get("loss"),
                "wall_s": a["wall_s"],
                "device": a["device"]["platform"],
                "reason": (a.get("reason") or "").splitlines()[0] if a.get("reason") else "",
            }
        )
    return rows


def _histories(store: Store, states: dict[str, str]) -> list[dict]:
    """The loss histories of every done result (from attrs; older results from their arrays);
    a damaged result is left out of the figure."""
    histories = []
    for tid in store.result_ids():
        try:
            a = store.result_attrs(tid)
            if a["status"] != "done":
                continue
            ds = a if "ad_loss" in a else store.read_result(tid)
        except DamagedGroup:
            continue
        histories.append(
            {
                "pr_error": np.asarray(ds["pr_error"], float).ravel(),
                "ad_loss": np.asarray(ds["ad_loss"], float).ravel(),
                "log_every": a["spec"]["params"]["log_every"],
                "state": states.get(tid, "not selected"),
            }
        )
    return histories


def store_state(store: Store) -> str:
    """A fingerprint of what the report shows: every group's zarr.json, by name and mtime."""
    entries = []
    for section in ("results", "merged", "multi", "inputs"):
        for name in store.names(section):
            stat = (store.path / section / name / "zarr.json").stat()
            entries.append((section, name, stat.st_mtime_ns, stat.st_size))
    return stable_hash(entries)


def write_report(store: Store, out: Path, skip_unchanged: bool = False) -> Path:
    """Write index.html (self-contained) and its PNG figures into out; returns the page.

    skip_unchanged: leave a report alone whose store state (store_state) is the same.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    state = store_state(store)
    stamp = out / "report.json"
    page = out / "index.html"
    if skip_unchanged and page.is_file() and stamp.is_file():
        if json.loads(stamp.read_text()).get("store_state") == state:
            return page
    sections, states = [], {}
    for key in store.merged_keys():
        section, member_states = _merged_section(store, key, out)
        sections.append(section)
        states.update(member_states)
    sections += [model_comparison_section(store, d, out) for d in model_pairs(store)]
    sections += [_multi_section(store, name, out) for name in store.multi_names()]
    loss_png = loss_figure(out / "losses.png", _histories(store, states))
    page.write_text(_page(store, sections, loss_png, _task_rows(store, states)))
    stamp.write_text(json.dumps({"store_state": state}))
    return page


def _summary(store: Store, outcome: str) -> str:
    """The page's summary: one line per merged group (its members, and the independent
    starts they came from when the merge counted them), then the tasks' outcome."""
    items = []
    for key in store.merged_keys():
        attrs = store.merged_attrs(key)
        starts = starts_text(attrs)
        line = f"merged/{key}: {len(attrs['members'])} of {attrs['candidates']} results"
        items.append(line + (f" ({starts})" if starts else ""))
    items.append(f"tasks: {outcome}")
    return "<ul>" + "".join(f"<li>{html.escape(i)}</li>" for i in items) + "</ul>"


def _page(store: Store, sections: list[str], loss_png: Path, rows: list[dict]) -> str:
    """The whole HTML page: the summary, the sections, the loss curves, the sweeps and the
    task table."""
    counts: dict[str, int] = {}
    for r in rows:
        counts[r["status"]] = counts.get(r["status"], 0) + 1
    outcome = ", ".join(f"{k}: {v}" for k, v in sorted(counts.items())) or "no tasks"
    statuses = {r["task"]: r["status"] for r in rows}
    return (
        "<!doctype html><html><head><meta charset='utf-8'><title>dyncdi report</title>"
        f"<style>{CSS}</style></head><body>"
        f"<h1>dyncdi report: {html.escape(str(store.path))}</h1>"
        + _summary(store, outcome)
        + "".join(sections)
        + "<h2>Loss curves</h2>"
        + figure(loss_png, "Every task; blue: merged, red: outlier, grey: not selected")
        + f"<h2>Sweep</h2>{sweep_table(store.sweeps(), statuses)}"
        + f"<h2>Tasks</h2><p>{html.escape(outcome)}</p>{_table(rows)}</body></html>"
    )
