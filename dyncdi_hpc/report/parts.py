"""Parts of a merged group's report section (page.py assembles them): the Fourier errors of
its members and of its model against the Poisson floor, and the support's extent; for a
measured scan, the mask by cause and the object in the laboratory frame.

Each part shows what the store holds and leaves out what it does not: merged groups written
before fourier_error_floor and extent_nm, or inputs loaded before mask_cause, give a shorter
section, never an error.
"""

from __future__ import annotations

import base64
import html
from pathlib import Path

import numpy as np
import xarray as xr

from ..physics.frames import FRAME_DESCRIPTIONS
from ..store.zarr_store import Store
from .export_data import frame_dataset
from .figures import mask_cause_figure, sample_slices_figure

LAB_MARGIN_VOXELS = 6  # shown around the support's bounding box in the lab-frame figure


def figure(path: Path, caption: str) -> str:
    """A figure element with the PNG at path embedded (base64) and its caption."""
    data = base64.b64encode(path.read_bytes()).decode()
    return (
        f'<figure><img src="data:image/png;base64,{data}" alt="{html.escape(path.name)}">'
        f"<figcaption>{html.escape(caption)} ({html.escape(path.name)})</figcaption></figure>"
    )


def support_centre(support: np.ndarray) -> tuple[int, ...]:
    """The voxel index of a support's centroid (the array centre when it is empty)."""
    if not support.any():
        return tuple(n // 2 for n in support.shape)
    return tuple(round(float(c)) for c in np.argwhere(support).mean(axis=0))


def _error_cell(error: float | None, floor: float | None) -> str:
    if error is None:
        return "-"
    if floor:
        return f"{error:.4g} ({error / floor:.3g} x floor)"
    return f"{error:.4g}"


def errors_part(store: Store, attrs: dict, merged_error: float) -> str:
    """The final Fourier error of each selected member and of the merged object's model, with
    the Poisson floor beside them when the merged attrs hold it, and the support's extent."""
    floor = attrs.get("fourier_error_floor")
    merged = set(attrs["members"])
    rows = "".join(
        f"<tr><td>{html.escape(t)}</td><td>{'merged' if t in merged else 'outlier'}</td>"
        f"<td>{_error_cell(store.result_attrs(t)['metrics'].get('error'), floor)}</td></tr>"
        for t in attrs.get("selected", attrs["members"])
    )
    rows += (
        "<tr><td>merged object</td><td>model of the mean</td>"
        f"<td>{_error_cell(merged_error, floor)}</td></tr>"
    )
    parts = [
        "<p>Final Fourier error, sum((|F| - sqrt(I))^2) / sum(I) over measured voxels:</p>"
        "<table><tr><th>task</th><th>merge</th><th>Fourier error</th></tr>" + rows + "</table>"
    ]
    if floor is not None:
        parts.append(
            f"<p>Poisson floor of the Fourier error: {floor:.4g} (what the exact model reaches "
            "on counts with Poisson noise).</p>"
        )
    extent = attrs.get("extent_nm")
    if extent:
        size = " × ".join(f"{float(extent[a]):.0f}" for a in ("x", "y", "z"))
        parts.append(
            f"<p>Support extent {size} nm ({html.escape(str(extent.get('frame', 'lab')))}).</p>"
        )
    return "".join(parts)


def mask_part(inp: xr.Dataset, key: str, frame: int, out: Path) -> str:
    """The mask by cause (the input's mask_cause) through rocking frame `frame`, its legend the
    voxels per cause as stored and as the corrections counted them in the frames read; ""
    when the input has no cause map or nothing is masked."""
    if "mask_cause" not in inp or not inp["mask_cause"].values.any():
        return ""
    causes = np.asarray(inp["mask_cause"].values, np.uint8)
    meanings = inp["mask_cause"].attrs.get("flag_meanings", "").split()
    counts = np.bincount(causes.ravel(), minlength=len(meanings))
    read = (inp.attrs.get("corrections") or {}).get("masked", {})
    legend = {}
    for c in np.flatnonzero(counts[1:]) + 1:  # the causes present; code 0 is "measured"
        name = meanings[c] if c < len(meanings) else f"code {c}"
        label = f"{name}: {counts[c]} voxels"
        if name in read and read[name] != counts[c]:  # binned, cropped: say what was read
            label += f" ({read[name]} in the frames read)"
        legend[int(c)] = label
    total = int(np.count_nonzero(causes))
    png = mask_cause_figure(
        out / f"{key}-mask.png",
        causes,
        legend,
        frame,
        f"{key}: masked voxels by cause ({total} of {causes.size}, "
        f"{100 * total / causes.size:.2f}%)",
    )
    return figure(png, "Masked voxels by cause, detector frame (each under its first cause)")


def lab_frame_part(store: Store, key: str, out: Path) -> str:
    """Amplitude, phase and strain along Q of a merged group in the laboratory frame, slices
    through the support's centre, each with its colour bar and units, axes in nm."""
    s = frame_dataset(store, key, "lab", margin=LAB_MARGIN_VOXELS)
    axes_nm = [s[d].values for d in ("x", "y", "z")]
    support = s["support"].values
    amplitude = s["amplitude"].values
    phase = np.where(support, s["phase"].values, np.nan)
    fields = [
        ("amplitude", amplitude, "gray", "amplitude (1)", 0.0, float(amplitude.max()) or 1.0),
        ("phase", phase, "twilight", "phase (rad)", -np.pi, np.pi),
    ]
    if "strain" in s:
        strain = np.where(support, 1e3 * s["strain"].values, np.nan)
        finite = np.isfinite(strain)
        lim = float(np.percentile(np.abs(strain[finite]), 98)) if finite.any() else 1.0
        lim = lim or 1.0  # a flat strain map still needs a colour range
        fields.append(("strain along Q", strain, "RdBu_r", "strain (10^-3)", -lim, lim))
    png = sample_slices_figure(
        out / f"{key}-lab.png",
        fields,
        axes_nm,
        support_centre(support),
        f"{key}: merged object in the laboratory frame, {FRAME_DESCRIPTIONS['lab']}",
        frame="lab",
    )
    return figure(png, "Amplitude, phase and strain in the laboratory frame, central slices")
