"""The measured scan with both models: APS 34-ID-C scan 54 (Au 111) by
workflows/aps34idc-au111-models.yaml, kinematical and dynamical fits from the same starts.

Does the dynamical model describe this crystal better? The sweep fits the 64^3 crop around
the peak with the beamline's ER/HIO recipe and 100 steps of kinematical AD per start, then
200 steps of AD with each model: the kinematical one, and the dynamical one in the measured
geometry (physics/dynamical_measured.py) from a flat crystal in the kinematical support
(dynamical_start flat) or from the kinematical fit (previous). 5% of the measured voxels are
held out of every fit (free_fraction, the same voxels for every task): their Poisson deviance
per voxel (free_deviance) is the comparison on data that neither model fitted; fit_deviance
(final_loss here) is the deviance on the fitted voxels. The crystal's size is the merged
support's extent along Q (crystal frame) and in the lab, against the Pendellosung distance
Lambda0 of Au 111 at the scan's energy. The difference of the two merged objects
(merge/model_difference.py: the kinematical aligned onto the dynamical one, so a uniform
strain difference, a phase ramp, is removed) is given as RMS values and central slices.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from matplotlib.figure import Figure

from dyncdi_hpc.physics.dynamical import bragg_case_of
from dyncdi_hpc.report.compare import MODELS, difference_of, members_fit
from dyncdi_hpc.report.export_data import merged_geometry
from dyncdi_hpc.store.zarr_store import Store

from .real_34idc import run_or_resume

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "aps34idc-au111-models.yaml"
COMMAND = "python -m benchmarks run --only real_34idc_dynamical"


def _arm(params: dict) -> str:
    """kinematical, or dynamical-<dynamical_start>."""
    if params["model"] == "kinematical":
        return "kinematical"
    return f"dynamical-{params.get('dynamical_start', 'flat')}"


def start_rows(store: Store, dataset: str) -> list[dict[str, Any]]:
    """One row per finished task of dataset: arm, seed, deviances, error, wall time, and the
    loss where its last AD stage began (the shared stages' end: ad_loss at the last stage)."""
    rows = []
    for tid in store.result_ids():
        attrs = store.result_attrs(tid)
        spec = attrs["spec"]
        if attrs.get("status") != "done" or spec["dataset"] != dataset:
            continue
        m, params = attrs["metrics"], spec["params"]
        history = store.read_result(tid)["ad_loss"].values
        last = int(params["ad_steps"])
        rows.append(
            {
                "task_id": tid,
                "arm": _arm(params),
                "model": params["model"],
                "seed": spec["seed"],
                "free_deviance": m.get("free_deviance"),
                "final_loss": m.get("fit_deviance", m.get("loss")),
                "fourier_error": m.get("error"),
                "loss_before_last_stage": float(history[-last - 1]),
                "loss_at_last_stage_start": float(history[-last]),
                "rocking_offset_rad": m.get("rocking_offset_rad"),
                "wall_s": attrs.get("wall_s"),
            }
        )
    return sorted(rows, key=lambda r: (r["arm"], r["seed"]))


def arm_summary(rows: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per arm: median and best free deviance and final loss, median wall time, seeds."""
    by_arm: dict[str, list[dict]] = defaultdict(list)
    for r in rows:
        by_arm[r["arm"]].append(r)
    out = {}
    for arm, rs in by_arm.items():
        free = [r["free_deviance"] for r in rs]
        loss = [r["final_loss"] for r in rs]
        out[arm] = {
            "starts": len(rs),
            "free_deviance_median": statistics.median(free),
            "free_deviance_best": min(free),
            "final_loss_median": statistics.median(loss),
            "final_loss_best": min(loss),
            "wall_s_median": statistics.median(r["wall_s"] for r in rs),
        }
    return out


def paired(rows: list[dict[str, Any]], arm: str) -> dict[str, Any]:
    """Same-seed comparison of an arm with the kinematical one: how many seeds it beats on
    free deviance, and the median of (arm - kinematical) free deviance."""
    kin = {r["seed"]: r["free_deviance"] for r in rows if r["arm"] == "kinematical"}
    other = {r["seed"]: r["free_deviance"] for r in rows if r["arm"] == arm}
    seeds = sorted(set(kin) & set(other))
    diffs = [other[s] - kin[s] for s in seeds]
    return {
        "seeds": seeds,
        "free_deviance_minus_kinematical": diffs,
        "median_difference": statistics.median(diffs) if diffs else None,
        "lower_than_kinematical": sum(d < 0 for d in diffs),
    }


def crystal_size(store: Store, dataset: str) -> dict[str, Any]:
    """The dynamical merged support's thickness along Q and lab extent against Lambda0."""
    key = f"{dataset}-dynamical"
    geometry = merged_geometry(store, key)
    support = store.read_merged(key)["support"].values.astype(bool)
    thickness = float(np.ptp(geometry.voxel_positions_nm()[..., 2][support]))
    extent = store.merged_attrs(key).get("extent_nm") or {}
    case = bragg_case_of(geometry)
    lam0 = case.pendellosung_nm
    largest = max((extent[a] for a in "xyz" if a in extent), default=thickness)
    return {
        "thickness_along_q_nm": thickness,
        "extent_nm_lab": extent,
        "pendellosung_nm": lam0,
        "extinction_depth_nm": case.extinction_depth_nm,
        "thickness_over_pendellosung": thickness / lam0,
        "largest_extent_over_pendellosung": largest / lam0,
        "voxel_size_nm": list(geometry.voxel_size_nm),
    }


def _slices(volume: np.ndarray, digits: int) -> list:
    """The three central slices (rocking, row, column normals) as lists, NaN as None, each
    cut to the bounding box of its finite values and 2 voxels."""
    out = []
    for a in range(3):
        sl = np.take(volume, volume.shape[a] // 2, axis=a)
        idx = np.argwhere(np.isfinite(sl))
        if idx.size:
            lo, hi = np.maximum(idx.min(axis=0) - 2, 0), idx.max(axis=0) + 3
            sl = sl[lo[0] : hi[0], lo[1] : hi[1]]
        out.append(
            [[None if not np.isfinite(v) else round(float(v), digits) for v in r] for r in sl]
        )
    return out


def measure() -> dict[str, Any]:
    """The sweep (run or read) and its comparison of the two models."""
    spec, store, sweep = run_or_resume(WORKFLOW)
    (dataset,) = spec.datasets
    rows = start_rows(store, dataset)
    arms = arm_summary(rows)
    diff = difference_of(store, dataset)
    kin_free = arms["kinematical"]["free_deviance_median"]
    best_dyn = min(
        (a for a in arms if a != "kinematical"), key=lambda a: arms[a]["free_deviance_median"]
    )
    result: dict[str, Any] = {
        "description": __doc__.splitlines()[0] + " " + __doc__.splitlines()[1],
        "workflow": str(WORKFLOW.relative_to(ROOT)),
        "command": COMMAND,
        "dataset": dataset,
        "grid": list(store.read_input(dataset)["intensity"].shape),
        "schedule": spec.base.model_dump(
            mode="json", include={"recipe", "stages", "ad_steps", "loss", "free_fraction"}
        ),
        "sweep": sweep,
        "deviance_metric": (
            "recon.losses.poisson_deviance per voxel: free_deviance on the held-out voxels, "
            "final_loss (fit_deviance) on the fitted ones; lower is better"
        ),
        "starts": rows,
        "arms": arms,
        "paired": {a: paired(rows, a) for a in arms if a != "kinematical"},
        "merged": {m: members_fit(store, f"{dataset}-{m}") for m in MODELS},
        "crystal": crystal_size(store, dataset),
        "difference": diff.summary(),
        "difference_slices": {
            "displacement_difference_nm": _slices(diff.displacement_difference_nm, 5),
            "strain_difference": _slices(diff.strain_difference, 6),
        },
        "best_dynamical_arm": best_dyn,
        "dynamical_describes_better": arms[best_dyn]["free_deviance_median"] < kin_free,
        "load_after": list(os.getloadavg()),
    }
    result["table"] = [{"arm": a, **v} for a, v in arms.items()] + [
        {
            "arm": f"merged {m}",
            "starts": v["members"],
            "free_deviance_median": v["free_deviance_median"],
            "final_loss_median": v["fit_deviance_median"],
        }
        for m, v in result["merged"].items()
    ]
    return result


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point: the whole workflow (resumed); quick changes nothing."""
    del quick
    return measure()


def plot(result: dict[str, Any]) -> Figure | None:
    """Free deviance of every start by arm and seed, and the central displacement-difference
    slices of the merged objects."""
    starts = result.get("starts") or []
    slices = (result.get("difference_slices") or {}).get("displacement_difference_nm")
    if not starts or not slices:
        return None
    figure = Figure(figsize=(14, 4), layout="constrained")
    axes = figure.subplots(1, 4)
    for arm in result["arms"]:
        rs = [r for r in starts if r["arm"] == arm]
        axes[0].plot([r["seed"] for r in rs], [r["free_deviance"] for r in rs], "o-", label=arm)
    axes[0].set(xlabel="seed", ylabel="free deviance per voxel", title="held-out voxels")
    axes[0].legend(fontsize=7)
    images = [np.array([[np.nan if v is None else v for v in row] for row in s]) for s in slices]
    finite = np.concatenate([x[np.isfinite(x)] for x in images])
    limit = float(np.quantile(np.abs(finite), 0.99)) if finite.size else 1.0
    for ax, image, normal in zip(axes[1:], images, ("rocking", "row", "column"), strict=True):
        im = ax.imshow(image.T, cmap="PuOr_r", vmin=-limit, vmax=limit, origin="lower")
        ax.set_title(f"u dynamical - kinematical, {normal}-normal slice", fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.colorbar(im, ax=axes[3], label="nm", shrink=0.8)
    c = result["crystal"]
    figure.suptitle(
        f"APS 34-ID-C scan 54: thickness along Q {c['thickness_along_q_nm']:.0f} nm = "
        f"{c['thickness_over_pendellosung']:.2f} Lambda0; displacement difference RMS "
        f"{result['difference']['displacement_difference_rms_nm']:.4f} nm",
        fontsize=10,
    )
    return figure
