"""Matplotlib figures of a store's merged results and loss histories (PNG files)."""

from __future__ import annotations

import textwrap
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import BoundaryNorm, ListedColormap, LogNorm
from matplotlib.ticker import MaxNLocator

AXIS_NAMES = ("rocking", "row", "column")


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three central slices of a (N0, N1, N2) volume, normal to each grid axis."""
    return [np.take(volume, volume.shape[a] // 2, axis=a) for a in range(3)]


CONJUGATE_PLANES = ((1, 2), (0, 2), (0, 1))  # (vertical, horizontal) axes of each slice
CONJUGATE_NAMES = ("x0", "x1", "x2")  # the real-space conjugates of rocking, row and column


def _label_panel(ax, label, names, axes, at, unit, limits) -> None:
    """Title (the plane and where it cuts), axis labels with units, limits of one slice panel;
    axes: (horizontal, vertical, normal) indices into names and limits."""
    h, v, normal = axes
    ax.set_title(
        f"{label}\n{names[h]}-{names[v]} plane, {names[normal]} = {at:.0f} {unit}", fontsize=8
    )
    if limits is not None:
        ax.set_xlim(*limits[h])
        ax.set_ylim(*limits[v])
    ax.set_xlabel(f"{names[h]} ({unit})", fontsize=8)
    ax.set_ylabel(f"{names[v]} ({unit})", fontsize=8)
    ax.tick_params(labelsize=7)


def _conjugate_row(axes, volume, label, cmap, vmin, vmax, units, grid, fig) -> None:
    """One row of central slices of a conjugate-grid volume; grid: (coordinates (3 arrays),
    their unit, limits (3 (low, high) or None))."""
    coords, unit, limits = grid
    for normal, (ax, sl) in enumerate(zip(axes, central_slices(volume), strict=True)):
        v, h = CONJUGATE_PLANES[normal]
        extent = (coords[h][0], coords[h][-1], coords[v][0], coords[v][-1])
        im = ax.imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", extent=extent)
        at = coords[normal][volume.shape[normal] // 2]
        _label_panel(ax, label, CONJUGATE_NAMES, (h, v, normal), at, unit, limits)
    fig.colorbar(im, ax=list(axes), shrink=0.85, label=units)


def conjugate_axes_nm(shape: tuple[int, ...], voxel_nm) -> list[np.ndarray]:
    """Coordinates (nm) along each axis of a conjugate grid: voxel N // 2 at 0, steps of the
    grid's voxel sizes (the lengths of its oblique real-space steps)."""
    return [(np.arange(n) - n // 2) * float(d) for n, d in zip(shape, voxel_nm, strict=True)]


def object_panels(
    amplitude: np.ndarray,
    phase: np.ndarray,
    support: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    title: str = "",
    voxel_nm: tuple[float, float, float] | None = None,
    limits_nm: list[tuple[float, float]] | None = None,
) -> plt.Figure:
    """The figure of object_figure (the caller closes it): central slices of amplitude and
    phase (inside the support) on the conjugate grid, axes in nm (in voxels without
    voxel_nm), [+ the ground truth's]."""
    shown = [("", amplitude, phase, support)]
    if truth is not None:
        shown.append(("true ", *truth))
    rows = []
    for prefix, amp, phi, inside in shown:
        phi = np.where(inside, phi, np.nan)
        rows += [
            (f"{prefix}amplitude", amp, "gray", "amplitude (relative)", 0, None),
            (f"{prefix}phase", phi, "twilight", "phase (rad)", -np.pi, np.pi),
        ]
    fig, axes = plt.subplots(
        len(rows), 3, figsize=(10, 3.1 * len(rows)), squeeze=False, layout="constrained"
    )
    unit = "voxels" if voxel_nm is None else "nm"
    coords = conjugate_axes_nm(amplitude.shape, voxel_nm or (1.0, 1.0, 1.0))
    grid = (coords, unit, limits_nm)
    for row, (label, volume, cmap, units, vmin, vmax) in enumerate(rows):
        _conjugate_row(axes[row], volume, label, cmap, vmin, vmax, units, grid, fig)
    grid_note = "detector-conjugate grid (x0, x1, x2: conjugate to rocking, row, column; oblique)"
    fig.suptitle(textwrap.fill(f"{title}, {grid_note}" if title else grid_note, 100))
    return fig


def object_figure(
    path: Path,
    amplitude: np.ndarray,
    phase: np.ndarray,
    support: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    title: str = "",
    voxel_nm: tuple[float, float, float] | None = None,
    limits_nm: list[tuple[float, float]] | None = None,
) -> Path:
    """Central slices of amplitude and phase (phase shown inside the support) [+ ground truth]
    on the detector-conjugate grid (voxel_nm: its step lengths), axes in nm, one colour bar
    with units per row; limits_nm: the (low, high) range shown along x0, x1, x2."""
    fig = object_panels(amplitude, phase, support, truth, title, voxel_nm, limits_nm)
    fig.savefig(path, dpi=90)  # constrained layout: no second draw
    plt.close(fig)
    return path


MEMBER_STYLES = {
    "merged": {"color": "tab:blue", "lw": 1.6, "alpha": 0.95},
    "outlier": {"color": "tab:red", "lw": 1.3, "alpha": 0.9},
    "not selected": {"color": "0.55", "lw": 0.8, "alpha": 0.6},
}


def loss_figure(path: Path, histories: list[dict]) -> Path:
    """Projection error and AD loss of every task, coloured by merged / outlier / not selected.

    histories: dicts with pr_error, ad_loss (1D arrays), log_every and state (a key of
    MEMBER_STYLES).
    """
    # constrained layout keeps the right panel's label clear of its log-scale tick labels
    fig, (ax_pr, ax_ad) = plt.subplots(1, 2, figsize=(11, 4), layout="constrained")
    for h in histories:
        style = MEMBER_STYLES[h["state"]]
        if len(h["pr_error"]):
            ax_pr.semilogy(
                np.arange(1, len(h["pr_error"]) + 1) * h["log_every"], h["pr_error"], **style
            )
        if len(h["ad_loss"]):
            ax_ad.semilogy(
                np.arange(1, len(h["ad_loss"]) + 1), np.maximum(h["ad_loss"], 1e-12), **style
            )
    ax_pr.set_xlabel("ER/HIO iteration")
    ax_pr.set_ylabel("normalised Fourier error")
    ax_pr.set_title("phase retrieval")
    ax_ad.set_xlabel("AD step")
    ax_ad.set_ylabel("data loss")
    ax_ad.set_title("AD refinement")
    states = sorted({h["state"] for h in histories}, key=list(MEMBER_STYLES).index)
    handles = [plt.Line2D([], [], **MEMBER_STYLES[s]) for s in states]
    ax_ad.legend(handles, [f"{s} ({sum(h['state'] == s for h in histories)})" for s in states])
    fig.savefig(path, dpi=90)  # constrained layout: no second draw
    plt.close(fig)
    return path


def intensity_figure(
    path: Path,
    measured: np.ndarray,
    modelled: np.ndarray,
    mask: np.ndarray | None,
    title: str,
    centre: tuple[int, int, int] | None = None,
) -> Path:
    """Slices through centre (voxel index, default the array centre: put it on the peak) of
    measured (top row) and modelled (bottom row) intensity (N0, N1, N2), counts, normal to the
    rocking, row and column axes, on one logarithmic colour scale; masked voxels grey."""
    fig, axes = plt.subplots(2, 3, figsize=(11, 6.8), squeeze=False, layout="constrained")
    centre = centre or tuple(n // 2 for n in measured.shape)
    valid = measured if mask is None else np.where(mask, 0.0, measured)
    # one count and less share the lowest colour: a log scale cannot show 0, and grey is masked
    norm = LogNorm(vmin=1.0, vmax=max(float(valid.max()), 10.0))
    cmap = plt.get_cmap("turbo").with_extremes(bad="0.6")
    names = ("rocking frame", "detector row", "detector column")
    planes = (("row", "column"), ("rocking", "column"), ("rocking", "row"))
    for row, (label, volume) in enumerate((("measured", measured), ("modelled", modelled))):
        shown = np.maximum(volume, 0.5)
        if mask is not None and row == 0:
            shown = np.where(mask, np.nan, shown)
        for a, ax in enumerate(axes[row]):
            sl = np.take(shown, centre[a], axis=a)
            im = ax.imshow(sl, cmap=cmap, norm=norm, origin="lower", aspect="auto")
            ax.set_title(f"{label}\n{names[a]} {centre[a]}", fontsize=9)
            ax.set_xlabel(planes[a][1], fontsize=8)
            ax.set_ylabel(planes[a][0], fontsize=8)
            ax.tick_params(labelsize=7)
        fig.colorbar(im, ax=axes[row], shrink=0.85, label="counts (log scale)")
    fig.suptitle(title)
    fig.savefig(path, dpi=90)  # constrained layout: no second draw
    plt.close(fig)
    return path


SAMPLE_PLANES = (("x", "z", 1), ("y", "z", 0), ("x", "y", 2))  # (horizontal, vertical, normal)


def sample_slices_figure(
    path: Path,
    fields: list[tuple[str, np.ndarray, str, str, float | None, float | None]],
    axes_nm: list[np.ndarray],
    centre: tuple[int, int, int],
    title: str,
    limits_nm: list[tuple[float, float]] | None = None,
    frame: str = "",
) -> Path:
    """Slices through centre (voxel index) of volumes (nx, ny, nz) on an orthogonal grid (the
    sample frame's, or frame's: its name labels the axes), axes in nm.

    fields: (label, volume, colormap, units, vmin, vmax); NaN is drawn white. limits_nm:
    the (low, high) range shown along x, y and z (default: the whole grid).
    """
    # constrained layout keeps each row's colour bar beside the row, clear of the panels
    fig, axes = plt.subplots(
        len(fields), 3, figsize=(10, 3.1 * len(fields)), squeeze=False, layout="constrained"
    )
    names = tuple(f"{n} {frame}" if frame else n for n in ("x", "y", "z"))
    for row, (label, volume, cmap, units, vmin, vmax) in enumerate(fields):
        for col, (h, v, normal) in enumerate(SAMPLE_PLANES):
            ax = axes[row][col]
            index = centre[normal]
            sl = np.take(volume, index, axis=normal)
            hi, vi = "xyz".index(h), "xyz".index(v)
            extent = (axes_nm[hi][0], axes_nm[hi][-1], axes_nm[vi][0], axes_nm[vi][-1])
            im = ax.imshow(sl.T, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower", extent=extent)
            at = axes_nm[normal][index]
            _label_panel(ax, label, names, (hi, vi, normal), at, "nm", limits_nm)
        fig.colorbar(im, ax=list(axes[row]), shrink=0.85, label=units)
    fig.suptitle(textwrap.fill(title, 100))  # frame descriptions run long
    fig.savefig(path, dpi=90)  # constrained layout: no second draw
    plt.close(fig)
    return path


def isosurface_figure(
    path: Path, probability: np.ndarray, voxel_nm: float, origin_nm: tuple, title: str
) -> Path:
    """Isosurface at 0.5 of a support-probability volume (nx, ny, nz), axes in nm."""
    from mpl_toolkits.mplot3d.art3d import Poly3DCollection
    from skimage.measure import marching_cubes

    fig = plt.figure(figsize=(6, 5.5))
    ax = fig.add_subplot(projection="3d")
    padded = np.pad(np.nan_to_num(probability), 1)
    if padded.max() > 0.5 > padded.min():
        verts, faces, normals, _ = marching_cubes(padded, 0.5, spacing=(voxel_nm,) * 3)
        verts = verts - voxel_nm + np.asarray(origin_nm)
        light = np.clip(normals[faces].mean(axis=1) @ np.array([0.3, -0.5, 0.8]), 0, 1)
        colours = plt.cm.viridis(0.25 + 0.7 * light)
        ax.add_collection3d(Poly3DCollection(verts[faces], facecolors=colours, linewidths=0))
        lo, hi = verts.min(axis=0), verts.max(axis=0)
        mid, half = (lo + hi) / 2, (hi - lo).max() / 2
        for setter, m in zip((ax.set_xlim, ax.set_ylim, ax.set_zlim), mid, strict=True):
            setter(m - half, m + half)
    # four ticks an axis and small tick labels: the default's (every 50 or 100 nm) run into
    # each other and into the axis labels along the foreshortened x and y axes
    for axis in (ax.xaxis, ax.yaxis, ax.zaxis):
        axis.set_major_locator(MaxNLocator(4))
    ax.tick_params(labelsize=8, pad=1)
    ax.set_xlabel("x (nm)", labelpad=6)
    ax.set_ylabel("y (nm)", labelpad=6)
    ax.set_zlabel("z along h (nm)", labelpad=8)
    ax.set_title(title, fontsize=10)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def rocking_curve_figure(path: Path, report: dict) -> Path:
    """Reflectivity against rocking angle (urad) from a rocking-curve report."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(report["dtheta_urad"], report["reflectivity"], label=report["model"])
    ax.set_xlabel("rocking angle from the kinematical Bragg angle (urad)")
    ax.set_ylabel("reflectivity")
    ax.set_title(
        f"{report['material']} {''.join(map(str, report['hkl']))}, {report['energy_kev']} keV, "
        f"t = {report['thickness_um']} um, w = {report['width_um']} um"
    )
    ax.legend()
    fig.savefig(path, dpi=100, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


def prtf_figure(
    path: Path,
    q_nm: np.ndarray,
    values: np.ndarray,
    resolution_nm: float | None,
    limited_by_data: bool,
    title: str = "",
) -> Path:
    """PRTF against |q| (nm^-1) with the 1/e threshold and the resolution it gives."""
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(q_nm, values, marker=".", label="PRTF")
    ax.axhline(np.exp(-1), color="k", ls="--", lw=1, label="1/e")
    if resolution_nm and not limited_by_data:
        ax.axvline(np.pi / resolution_nm, color="r", lw=1, label=f"{resolution_nm:.0f} nm")
    ax.set_xlabel("|q| (nm$^{-1}$)")
    ax.set_ylabel("PRTF")
    ax.set_ylim(0, 1.05)
    ax.set_title(title)
    ax.legend()
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return Path(path)


# one colour per cause code (data/causes.py), measured (code 0) white
CAUSE_COLOURS = ("white", *plt.get_cmap("tab10").colors)
FEW_PIXELS = 200  # pixels of one cause in a panel drawn outlined as well


def mask_cause_figure(
    path: Path, causes: np.ndarray, legend: dict[int, str], frame: int, title: str
) -> Path:
    """Where each cause masks the detector: frame (rocking index) of a cause map (N0, N1, N2)
    uint8 (0 measured, else the cause's code), the cause masking most frames of each pixel,
    and the voxels masked per frame by cause; legend: the label of each code to list."""
    fig, (ax_f, ax_p, ax_r) = plt.subplots(1, 3, figsize=(13, 4.2), layout="constrained")
    n_codes = max(len(CAUSE_COLOURS), int(causes.max()) + 1)
    colours = [CAUSE_COLOURS[c % len(CAUSE_COLOURS)] for c in range(n_codes)]
    cmap = ListedColormap(colours)
    norm = BoundaryNorm(np.arange(n_codes + 1) - 0.5, n_codes)
    codes = sorted(c for c in legend if c > 0)
    per_pixel = np.stack([(causes == c).sum(axis=0) for c in range(n_codes)])
    per_pixel[0] = 0  # a pixel masked in any frame shows the cause masking most of its frames
    dominant = np.where(per_pixel.sum(axis=0) > 0, per_pixel.argmax(axis=0), 0)
    for ax, image, what in (
        (ax_f, causes[frame], f"rocking frame {frame}"),
        (ax_p, dominant, "along the rocking axis: the cause of most frames"),
    ):
        ax.imshow(image, cmap=cmap, norm=norm, origin="lower", interpolation="nearest")
        for c in codes:  # a few pixels vanish at this size: outline them
            rows, cols = np.nonzero(image == c)
            if 0 < rows.size <= FEW_PIXELS:
                ax.scatter(cols, rows, s=30, marker="s", facecolors="none", edgecolors=colours[c])
        ax.set_title(what, fontsize=9)
        ax.set_xlabel("detector column (pixel)", fontsize=8)
        ax.set_ylabel("detector row (pixel)", fontsize=8)
        ax.tick_params(labelsize=7)
    for c in codes:
        ax_r.plot((causes == c).sum(axis=(1, 2)), color=colours[c], drawstyle="steps-mid")
    ax_r.set_xlabel("rocking frame", fontsize=8)
    ax_r.set_ylabel("masked voxels in the frame", fontsize=8)
    ax_r.set_title("masked voxels per frame", fontsize=9)
    ax_r.tick_params(labelsize=7)
    handles = [plt.Rectangle((0, 0), 1, 1, color=colours[c], ec="0.3") for c in codes]
    fig.legend(handles, [legend[c] for c in codes], loc="outside lower center", ncols=3)
    fig.suptitle(title)
    fig.savefig(path, dpi=90)  # constrained layout: no second draw
    plt.close(fig)
    return path


def model_difference_figure(
    path: Path,
    rows: list[tuple[str, np.ndarray, str, str]],
    voxel_nm: tuple[float, float, float],
    limits_nm: list[tuple[float, float]] | None,
    title: str,
) -> Path:
    """Central slices of each (label, volume (N0, N1, N2), colour-bar unit, colour map) row
    on the conjugate grid, axes in nm; every row's colour scale symmetric about 0 at its
    99th percentile of |value| (NaN, outside the support, blank)."""
    fig, axes = plt.subplots(
        len(rows), 3, figsize=(10, 3.1 * len(rows)), squeeze=False, layout="constrained"
    )
    coords = conjugate_axes_nm(rows[0][1].shape, voxel_nm)
    for row, (label, volume, units, cmap) in enumerate(rows):
        finite = np.abs(volume[np.isfinite(volume)])
        limit = float(np.quantile(finite, 0.99)) if finite.size else 1.0
        grid = (coords, "nm", limits_nm)
        _conjugate_row(axes[row], volume, label, cmap, -limit, limit, units, grid, fig)
    fig.suptitle(textwrap.fill(title, 100))
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path
