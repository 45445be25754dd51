"""Reconstruction quality of the workflows that test the method: kinematical against dynamical.

`thick_crystal` runs workflows/thick-crystal.yaml (one ~2 Lambda0 Au crystal simulated with
the dynamical model, several random starts per model) and `sizes` runs workflows/sizes.yaml
(the same strain field in crystals from 0.1 to 1.5 um). Each runs its sweep through the
ordinary path (dyncdi_hpc.schedule.run.run_sweep on the LocalCluster) into a store under
benchmarks/work/ (one per version of the spec), resumable: a rerun only summarises what the
store holds. Errors are against
the simulated truth after ambiguity removal (translation, phase offset and ramp, twin):
the merged object's (the best half of the starts, aligned and averaged) and each start's.
--quick runs one start per model with a quarter of the AD steps (numbers then mean little).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from dyncdi_hpc.config import SimulateConfig, SimulatedDataset, SweepSpec, load_sweep
from dyncdi_hpc.data.measurement import Measurement, Truth, read_measurement
from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical
from dyncdi_hpc.identity import stable_hash
from dyncdi_hpc.merge.align import align, phase_rms
from dyncdi_hpc.physics.kinematical import centred_far_field
from dyncdi_hpc.physics.materials import bragg_case
from dyncdi_hpc.recon.losses import poisson_deviance
from dyncdi_hpc.schedule.run import run_sweep
from dyncdi_hpc.store.groups import complex_object
from dyncdi_hpc.store.zarr_store import Store
from dyncdi_hpc.sweep import axis_values

ROOT = Path(__file__).resolve().parents[1]
WORK_DIR = ROOT / "benchmarks" / "work"
MODELS = ("kinematical", "dynamical")


def quick_spec(spec: SweepSpec) -> SweepSpec:
    """One start per model and a quarter of every AD stage's steps."""
    base = spec.base
    stages = tuple(s.model_copy(update={"ad_steps": max(1, s.ad_steps // 4)}) for s in base.stages)
    base = base.model_copy(update={"stages": stages, "ad_steps": max(1, base.ad_steps // 4)})
    return spec.model_copy(
        update={"base": base, "sweep": {**spec.sweep, "seed": 1}, "name": f"{spec.name}-quick"}
    )


def run_workflow(workflow: str, quick: bool) -> tuple[SweepSpec, Store, str]:
    """Run or resume workflows/WORKFLOW.yaml into benchmarks/work/: spec, store, command."""
    spec = load_sweep(ROOT / "workflows" / f"{workflow}.yaml")
    if quick:
        spec = quick_spec(spec)
    WORK_DIR.mkdir(parents=True, exist_ok=True)
    # one store per version of the spec: an edited workflow never mixes with older results
    version = stable_hash(spec.model_dump(mode="json", exclude={"store", "cluster"}), 8)
    store_path = WORK_DIR / f"{spec.name}-{version}.zarr"
    run_sweep(spec, store_path=store_path, cluster=spec.cluster)
    name = workflow.replace("-", "_")
    command = f"python -m benchmarks run --only {name}{' --quick' if quick else ''}"
    return spec, Store.open(store_path), command


def finished_starts(store: Store, dataset: str, model: str) -> list[tuple[str, dict]]:
    """(task id, attrs) of each finished start of (dataset, model), in seed order."""
    found = []
    for tid in store.result_ids():
        attrs = store.result_attrs(tid)
        spec = attrs.get("spec", {})
        if (
            attrs.get("status") == "done"
            and spec.get("dataset") == dataset
            and spec["params"]["model"] == model
        ):
            found.append((spec["seed"], tid, attrs))
    return [(tid, attrs) for _, tid, attrs in sorted(found, key=lambda f: f[0])]


def start_errors(starts: list[tuple[str, dict]], store: Store, truth: Truth) -> list[float]:
    """Phase RMS (rad) against the truth of each of finished_starts' results, in its order."""
    errors = []
    for tid, _ in starts:
        obj = align(complex_object(store.read_result(tid)), truth.object).obj
        errors.append(phase_rms(obj, truth.object, truth.support))
    return errors


def truth_losses(cfg: SimulateConfig, m: Measurement) -> dict[str, float]:
    """The loss of the true object on the same counts under each model: dynamical, the
    noiseless intensity the counts were drawn from (the noise floor, what a perfect fit
    reaches); kinematical, |FFT(truth)|^2 at its best (Poisson) scale, the floor of a fit
    that has the right object but the wrong model."""
    assert m.truth is not None
    valid = np.ones(m.intensity.shape, bool) if m.mask is None else ~m.mask
    kinematical = np.abs(centred_far_field(m.truth.object)) ** 2
    kinematical *= m.intensity[valid].sum() / kinematical[valid].sum()
    if cfg.model == "dynamical":
        noiseless = simulate_dynamical(cfg.model_copy(update={"noise": False}), m.geometry)
        dynamical = noiseless.data.intensity
    else:
        dynamical = kinematical
    with jax.enable_x64(True):  # the counts' own loss is ~0 without noise: keep its digits
        measured = jnp.asarray(valid)
        counts = jnp.asarray(m.intensity, jnp.float64)
        return {
            name: float(poisson_deviance(jnp.asarray(expected, jnp.float64), counts, measured))
            for name, expected in (("kinematical", kinematical), ("dynamical", dynamical))
        }


def dataset_outcome(spec: SweepSpec, store: Store, dataset: str) -> dict[str, Any]:
    """Thickness, extinction lengths and per-model errors (merged and per start) of a dataset."""
    source = spec.datasets[dataset]
    assert isinstance(source, SimulatedDataset), f"{dataset!r} is not simulated"
    cfg = source.simulate
    g = cfg.geometry
    case = bragg_case(g.material, g.hkl, g.energy_kev, polarisation=g.polarisation)
    measurement = read_measurement(store.read_input(dataset), f"inputs.{dataset}")
    thickness_um = cfg.crystal.size_nm / 1e3  # {111} facet distance: the depth along h = [111]
    out: dict[str, Any] = {
        "dataset": dataset,
        "thickness_um": thickness_um,
        "pendellosung_um": case.pendellosung_nm / 1e3,
        "extinction_depth_um": case.extinction_depth_nm / 1e3,
        "thickness_over_pendellosung": thickness_um / (case.pendellosung_nm / 1e3),
        "grid": list(g.shape),
        "simulated_with": cfg.model,
        "peak_counts": cfg.peak_counts if cfg.noise else None,
        "voxel_size_nm": [float(v) for v in measurement.geometry.voxel_size_nm],
    }
    truth_loss = truth_losses(cfg, measurement)
    for model in MODELS:
        key = f"{dataset}-{model}"
        done = key in store.merged_keys()
        vs_truth = store.merged_attrs(key).get("vs_truth", {}) if done else {}
        starts = finished_starts(store, dataset, model)
        per_start = start_errors(starts, store, measurement.truth)
        out[f"{model}_phase_rms_rad"] = vs_truth.get("phase_rms_rad")
        # phase = h.u: the error of u along h is the phase error over |h| = 2 pi / d
        err, d_nm = vs_truth.get("phase_rms_rad"), measurement.geometry.d_spacing_nm
        out[f"{model}_displacement_rms_nm"] = None if err is None else err * d_nm / (2 * np.pi)
        out[f"{model}_strain_rms"] = vs_truth.get("strain_rms")
        out[f"{model}_support_dice"] = vs_truth.get("support_dice")
        out[f"{model}_start_phase_rms_rad"] = per_start
        out[f"{model}_starts_done"] = len(per_start)
        out[f"{model}_start_phase_rms_median_rad"] = (
            float(np.median(per_start)) if per_start else None
        )
        # the fit's own loss (mean Poisson deviance / 2 per measured voxel) and wall time
        losses = [float(attrs["metrics"]["loss"]) for _, attrs in starts]
        out[f"{model}_start_final_loss"] = losses
        out[f"{model}_start_wall_s"] = [float(attrs["wall_s"]) for _, attrs in starts]
        out[f"{model}_final_loss"] = min(losses) if losses else None
        out[f"{model}_truth_loss"] = truth_loss[model]
    k, d = out["kinematical_phase_rms_rad"], out["dynamical_phase_rms_rad"]
    out["phase_rms_ratio_kinematical_over_dynamical"] = k / d if k and d else None
    return out


def _row(o: dict[str, Any]) -> dict[str, Any]:
    return {
        "t (um)": o["thickness_um"],
        "t / Lambda0": o["thickness_over_pendellosung"],
        "kin phase RMS": o["kinematical_phase_rms_rad"],
        "dyn phase RMS": o["dynamical_phase_rms_rad"],
        "kin / dyn": o["phase_rms_ratio_kinematical_over_dynamical"],
        "kin strain RMS": o["kinematical_strain_rms"],
        "dyn strain RMS": o["dynamical_strain_rms"],
        "kin starts (median)": o["kinematical_start_phase_rms_median_rad"],
        "dyn starts (median)": o["dynamical_start_phase_rms_median_rad"],
    }


def workflow_result(workflow: str, spec: SweepSpec, store: Store, command: str) -> dict[str, Any]:
    """What both workflow benchmarks record beside their outcomes: source, store, schedule."""
    return {
        "description": __doc__.splitlines()[0],
        "workflow": f"workflows/{workflow}.yaml",
        "store": str(store.path),
        "n_starts": len(axis_values(spec)["seed"]),
        "schedule": spec.base.model_dump(mode="json", include={"recipe", "stages", "ad_steps"}),
        "command": command,
    }


def thick_crystal(workflow: str, quick: bool) -> dict[str, Any]:
    """workflows/WORKFLOW.yaml of one thick crystal: the errors of both models."""
    spec, store, command = run_workflow(workflow, quick)
    (dataset,) = spec.datasets
    outcome = dataset_outcome(spec, store, dataset)
    return {
        **workflow_result(workflow, spec, store, command),
        **outcome,
        "table": [_row(outcome)],
    }


def sizes(workflow: str, quick: bool) -> dict[str, Any]:
    """workflows/WORKFLOW.yaml of several thicknesses: the errors of both models against t."""
    spec, store, command = run_workflow(workflow, quick)
    outcomes = [dataset_outcome(spec, store, name) for name in spec.datasets]
    outcomes.sort(key=lambda o: o["thickness_um"])
    return {
        **workflow_result(workflow, spec, store, command),
        "sizes": outcomes,
        "table": [_row(o) for o in outcomes],
    }


def run_thick_crystal(quick: bool) -> dict[str, Any]:
    """workflows/thick-crystal.yaml: the 1.3 um crystal at 32^3 (100 nm voxels)."""
    return thick_crystal("thick-crystal", quick)


def run_thick_crystal64(quick: bool) -> dict[str, Any]:
    """workflows/thick-crystal64.yaml: the 1.3 um crystal at 64^3 (50 nm voxels)."""
    return thick_crystal("thick-crystal64", quick)


def run_sizes(quick: bool) -> dict[str, Any]:
    """workflows/sizes.yaml: 0.1 to 1.5 um at 32^3."""
    return sizes("sizes", quick)


def run_sizes64(quick: bool) -> dict[str, Any]:
    """workflows/sizes64.yaml: 0.1 to 2.0 um at 64^3."""
    return sizes("sizes64", quick)


def plot_sizes(result: dict[str, Any]) -> Figure | None:
    """Phase error of both models' merged reconstructions (and each start) against t / Lambda0."""
    sizes = result.get("sizes") or []
    if not sizes:
        return None
    figure = Figure(figsize=(6.5, 4.5), layout="constrained")
    ax = figure.subplots()
    x = [o["thickness_over_pendellosung"] for o in sizes]
    for model, colour in zip(MODELS, ("tab:red", "tab:blue"), strict=True):
        y = [o[f"{model}_phase_rms_rad"] for o in sizes]
        ax.plot(x, y, marker="o", color=colour, label=f"{model} (merged)")
        for xi, o in zip(x, sizes, strict=True):
            starts = o[f"{model}_start_phase_rms_rad"]
            ax.scatter([xi] * len(starts), starts, s=10, color=colour, alpha=0.4)
    ax.set_xlabel("crystal thickness / Pendellosung distance Lambda0")
    ax.set_ylabel("phase RMS error against the truth (rad)")
    ax.set_yscale("log")
    ax.set_title("Data simulated with the dynamical model; dots: single starts", fontsize=9)
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    return figure
