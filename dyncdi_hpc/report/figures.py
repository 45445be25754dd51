"""Matplotlib figures of a store's merged results and loss histories (PNG files)."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np

AXIS_NAMES = ("rocking", "row", "column")


def central_slices(volume: np.ndarray) -> list[np.ndarray]:
    """The three central slices of a (N0, N1, N2) volume, normal to each grid axis."""
    return [np.take(volume, volume.shape[a] // 2, axis=a) for a in range(3)]


def _row(axes, volume, title, cmap, vmin, vmax, units, fig) -> None:
    for a, (ax, sl) in enumerate(zip(axes, central_slices(volume), strict=True)):
        im = ax.imshow(sl, cmap=cmap, vmin=vmin, vmax=vmax, origin="lower")
        ax.set_title(f"{title}, {AXIS_NAMES[a]} slice", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.colorbar(im, ax=axes, shrink=0.8, label=units)


def object_figure(
    path: Path,
    amplitude: np.ndarray,
    phase: np.ndarray,
    support: np.ndarray,
    truth: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
    title: str = "",
) -> Path:
    """Central slices of amplitude and phase (phase shown inside the support) [+ ground truth]."""
    rows = 4 if truth is not None else 2
    fig, axes = plt.subplots(rows, 3, figsize=(10, 2.9 * rows), squeeze=False)
    masked = np.where(support, phase, np.nan)
    _row(axes[0], amplitude, "amplitude", "gray", 0, None, "relative", fig)
    _row(axes[1], masked, "phase", "twilight", -np.pi, np.pi, "rad", fig)
    if truth is not None:
        t_amp, t_phase, t_support = truth
        _row(axes[2], t_amp, "true amplitude", "gray", 0, None, "relative", fig)
        _row(
            axes[3],
            np.where(t_support, t_phase, np.nan),
            "true phase",
            "twilight",
            -np.pi,
            np.pi,
            "rad",
            fig,
        )
    fig.suptitle(title)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def uncertainty_figure(
    path: Path,
    amplitude_std: np.ndarray,
    phase_std: np.ndarray,
    support: np.ndarray,
    title: str = "",
) -> Path:
    """Central slices of the voxel-wise standard deviation of amplitude and phase."""
    fig, axes = plt.subplots(2, 3, figsize=(10, 5.8), squeeze=False)
    _row(
        axes[0],
        np.where(support, amplitude_std, np.nan),
        "amplitude std",
        "magma",
        0,
        None,
        "relative",
        fig,
    )
    _row(axes[1], np.where(support, phase_std, np.nan), "phase std", "magma", 0, None, "rad", fig)
    fig.suptitle(title)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)
    return path


def loss_figure(path: Path, histories: list[dict]) -> Path:
    """Projection error and AD loss of every task; selected members drawn bold."""
    fig, (ax_pr, ax_ad) = plt.subplots(1, 2, figsize=(11, 4))
    for h in histories:
        style = {"lw": 1.6, "alpha": 0.95} if h["selected"] else {"lw": 0.8, "alpha": 0.45}
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
    ax_ad.set_title("AD refinement (bold: merged members)")
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
