"""The report's comparison of the two models on one dataset: when a store holds a merged
kinematical and a merged dynamical group of the same dataset (a sweep over `model`), their
members' fits (free deviance on the held-out voxels, fit deviance) side by side, and central
slices of both displacements and of the dynamical-less-kinematical displacement and strain
(merge/model_difference.py: the kinematical object aligned onto the dynamical one)."""

from __future__ import annotations

import html
import statistics
from pathlib import Path

import numpy as np

from ..merge.model_difference import ModelDifference, model_difference
from ..store.groups import complex_object
from ..store.zarr_store import Store
from .export_data import merged_geometry
from .figures import conjugate_axes_nm, model_difference_figure
from .parts import figure
from .tables import table

MODELS = ("kinematical", "dynamical")


def model_pairs(store: Store) -> list[str]:
    """Datasets with a merged group of each model, in the store's order."""
    keys = set(store.merged_keys())
    datasets = [store.merged_attrs(k)["dataset"] for k in store.merged_keys()]
    return [d for d in dict.fromkeys(datasets) if all(f"{d}-{m}" in keys for m in MODELS)]


def members_fit(store: Store, key: str) -> dict[str, float | int | None]:
    """Median free and fit deviance of a merged group's members (None without free voxels)."""
    metrics = [store.result_attrs(t).get("metrics", {}) for t in store.merged_attrs(key)["members"]]

    def median(name: str) -> float | None:
        values = [m[name] for m in metrics if m.get(name) is not None]
        return float(statistics.median(values)) if values else None

    return {
        "members": len(metrics),
        "free_deviance_median": median("free_deviance"),
        "fit_deviance_median": median("fit_deviance") or median("loss"),
    }


def difference_of(store: Store, dataset: str) -> ModelDifference:
    """model_difference of a dataset's merged kinematical and dynamical objects."""
    kin, dyn = (complex_object(store.read_merged(f"{dataset}-{m}")) for m in MODELS)
    return model_difference(kin, dyn, merged_geometry(store, f"{dataset}-dynamical"))


def _limits(region: np.ndarray, axes_nm: list[np.ndarray]) -> list[tuple[float, float]] | None:
    if not region.any():
        return None
    idx = np.argwhere(region)
    pad = [2 * float(a[1] - a[0]) for a in axes_nm]
    return [
        (float(a[idx[:, j].min()]) - pad[j], float(a[idx[:, j].max()]) + pad[j])
        for j, a in enumerate(axes_nm)
    ]


def model_comparison_section(store: Store, dataset: str, out: Path) -> str:
    """The HTML section comparing a dataset's two merged models."""
    d = difference_of(store, dataset)
    s = d.summary()
    rows = [{"model": m, **members_fit(store, f"{dataset}-{m}")} for m in MODELS]
    geometry = merged_geometry(store, f"{dataset}-dynamical")
    voxel_nm = geometry.voxel_size_nm
    limits = _limits(d.region, conjugate_axes_nm(d.region.shape, voxel_nm))
    png = model_difference_figure(
        out / f"{dataset}-models.png",
        [
            ("kinematical u", d.kinematical_displacement_nm, "displacement along Q (nm)", "RdBu_r"),
            ("dynamical u", d.dynamical_displacement_nm, "displacement along Q (nm)", "RdBu_r"),
            ("dynamical - kinematical u", d.displacement_difference_nm, "nm", "PuOr_r"),
            ("dynamical - kinematical strain", d.strain_difference, "strain along Q", "PuOr_r"),
        ],
        voxel_nm,
        limits,
        f"{dataset}: kinematical (aligned onto dynamical{', twin' if d.twin else ''}) "
        "and dynamical merged objects",
    )
    text = (
        f"Common support {s['common_voxels']} voxels (Dice {s['support_dice']:.3f}); phase RMS "
        f"{s['phase_rms_rad']:.3f} rad; displacement difference RMS "
        f"{s['displacement_difference_rms_nm']:.4g} nm (of {s['displacement_rms_nm']:.4g} nm); "
        f"strain difference RMS {s['strain_difference_rms']:.3g} (of {s['strain_rms']:.3g}). "
        "A uniform strain difference is a phase ramp, which the alignment removes."
    )
    return (
        f"<h2>{html.escape(dataset)}: kinematical vs dynamical</h2>"
        "<p>Members' median deviance per voxel on the held-out (free) and the fitted voxels: "
        "the lower free deviance is the model that predicts data it did not fit.</p>"
        + table(rows)
        + f"<p>{html.escape(text)}</p>"
        + figure(png, "Displacement and strain, kinematical vs dynamical, conjugate grid")
    )
