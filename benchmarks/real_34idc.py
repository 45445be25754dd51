"""A measured scan: APS 34-ID-C scan 54 (Au 111) by workflows/aps34idc-au111.yaml, and
cohere-core on the same array with the beamline's own phasing settings (config_rec).

The sweep runs (or resumes: a complete store is only read) through `dyncdi sweep`. From the
store: each start's final Fourier error (its result's metrics "error") against the Poisson
floor of the counts; each start aligned onto the best one (dyncdi_hpc.merge.align: twin,
translation, phase ramp, offset) and its phase RMS inside the common support (a start agrees
below AGREE_RAD); the merged object's Fourier error, its ratio to the best start's, its
extent and PRTF resolution (merged attrs).

The Fourier error is recon.projections.fourier_error, sum (|F| - A)^2 / sum A^2 over the
measured voxels, A = sqrt(counts) in FFT order: the results' "error" metric is this with F the
far field of the object times the fitted scale (recon/pipeline.py, _finished; no coherence
blur, background or rocking offset in this workflow), and a start's is recomputed here from its
object and scale as a check. The merged object (normalised to 1 inside) and cohere's (its
maximum normalised to 1) have no fitted scale: theirs is the least-squares one,
s = sum |F| A / sum |F|^2 over the measured voxels, which is also given for every start, so
that the ratio merged / best compares like with like.

cohere-core runs on its numpy back end (pkg "np", CPU) from its own kind of random start
(uniform real and imaginary parts in [0, 1), scaled and cut to the initial support as
Rec.init_iter_loop does, but from a seeded generator: cohere's own reseeds from the clock),
with every phasing setting of config_rec. Its input is the store's input group: the corrected
(dark, flat, threshold 2), cropped 128^3 counts, as amplitudes sqrt(counts), peak-centred,
float32. cohere's Rec has no mask of unmeasured voxels: the masked ones (one row and one
column of every frame padded where the peak sits off the centre of the shipped 128 x 128
frames, and one hot pixel) are zero in the stored counts, and cohere fits them as measured
zeros, as its own preprocessing leaves bad pixels. Its result is brought
into our convention with benchmarks.cohere.from_cohere, centred like our results, aligned onto
our merged object, and scored with our Fourier error (least-squares scale).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from scipy.ndimage import binary_erosion

from dyncdi_hpc.config import SweepSpec, load_sweep
from dyncdi_hpc.data.measurement import Measurement, read_measurement
from dyncdi_hpc.merge.align import align, dice, phase_rms
from dyncdi_hpc.physics.kinematical import far_field
from dyncdi_hpc.physics.objects import support_of
from dyncdi_hpc.provenance import package_version
from dyncdi_hpc.recon.pipeline import centre_roll
from dyncdi_hpc.recon.projections import fourier_error
from dyncdi_hpc.recon.stages import to_fft_order
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.store.groups import complex_object
from dyncdi_hpc.store.zarr_store import Store

from .cohere import from_cohere, thread_facts, uncommitted

ROOT = Path(__file__).resolve().parents[1]
WORKFLOW = ROOT / "workflows" / "aps34idc-au111.yaml"
COMMAND = "python -m benchmarks run --only real_34idc"
AGREE_RAD = 0.3
# the acceptance's bound on the merged object's Fourier error over the best start's
MAX_ERROR_RATIO = 1.2
COHERE_SEEDS = (0, 1, 2)
QUICK_COHERE_SEEDS = (0,)
# voxels kept around the union of the supports in the stored slices
SLICE_MARGIN = 4

# cohere-config/config_rec of the scan as distributed with it (BSD 2-Clause, copyright
# AdvancedPhotonSource; shared/data/aps34idc-au111-scan54), read with cohere's own parser.
CONFIG_REC = """\
reconstructions = 1
processing = "auto"
device = [0]
algorithm_sequence = "3*(20*ER+180*HIO)+20*ER"
hio_beta = 0.9
initial_support_area = [0.5, 0.5, 0.5]
shrink_wrap_trigger = [1, 1]
shrink_wrap_type = "GAUSS"
shrink_wrap_threshold = 0.1
shrink_wrap_gauss_sigma = 1.0
twin_trigger = [2]
twin_halves = [0, 0]
progress_trigger = [0, 20]
"""
# how a reconstruction is run, not how it phases: replaced by create_rec's pkg and device
NOT_PHASING = {
    "reconstructions": "one Rec per seed of COHERE_SEEDS",
    "processing": "pkg 'np' (numpy, scipy.fft): no GPU library is installed",
    "device": "-1 (CPU)",
}


# ------------------------------------------------------------------------------ metrics


class Data(NamedTuple):
    """What the error metric needs, FFT order: amplitudes sqrt(counts) (float32), measured."""

    amplitude: np.ndarray
    measured: np.ndarray


def data_of(
    intensity: np.ndarray, mask: np.ndarray | None, saturation: float | None = None
) -> Data:
    """The amplitudes and measured voxels a reconstruction fits (recon/pipeline.py, _data),
    from peak-centred counts (N0, N1, N2) and mask (True = ignored)."""
    ignored = np.zeros(intensity.shape, bool) if mask is None else np.asarray(mask, bool)
    if saturation is not None:
        ignored = ignored | (intensity >= saturation)
    amplitude = np.sqrt(to_fft_order(intensity)).astype(np.float32)
    return Data(amplitude, to_fft_order(~ignored))


def scaled_error(obj: np.ndarray, scale: float, data: Data) -> float:
    """fourier_error of scale * obj (any real-space roll: |F| does not change), 1."""
    psi = jnp.asarray(scale * np.asarray(obj), jnp.complex64)
    return float(fourier_error(psi, jnp.asarray(data.amplitude), jnp.asarray(data.measured)))


def least_squares_scale(obj: np.ndarray, data: Data) -> float:
    """The scale s minimising sum (s |F| - A)^2 over measured voxels: sum |F| A / sum |F|^2."""
    mag = np.abs(np.asarray(far_field(jnp.asarray(obj, jnp.complex64))), dtype=np.float64)
    m = data.measured
    power = float(np.sum(mag[m] ** 2))
    return float(np.sum(mag[m] * data.amplitude[m]) / power) if power > 0 else 0.0


def best_error(obj: np.ndarray, data: Data) -> tuple[float, float]:
    """fourier_error at the least-squares scale, and that scale."""
    scale = least_squares_scale(obj, data)
    return scaled_error(obj, scale, data), scale


class Comparison(NamedTuple):
    """An object aligned onto a reference; phase RMS (rad) inside both supports and inside
    their interior (both supports eroded by one voxel), their Dice."""

    aligned: np.ndarray
    phase_rms_rad: float
    interior_phase_rms_rad: float
    dice: float
    twin: bool
    common_voxels: int


def compare(obj: np.ndarray, reference: np.ndarray) -> Comparison:
    """Align obj onto reference (twin, shift, ramp, offset), then compare their supports
    (support_of, the same rule for both) and phases inside the common support."""
    a = align(obj, reference)
    ours, theirs = support_of(a.obj), support_of(reference)
    common = ours & theirs
    interior = binary_erosion(common)
    rms = phase_rms(a.obj, reference, common) if common.any() else float("nan")
    inner = phase_rms(a.obj, reference, interior) if interior.any() else float("nan")
    return Comparison(a.obj, rms, inner, dice(ours, theirs), a.twin, int(common.sum()))


def agreement(objects: Sequence[np.ndarray], errors: Sequence[float]) -> list[dict[str, Any]]:
    """Each object against the one of lowest error (itself: 0 rad, Dice 1), in input order."""
    best = int(np.argmin(errors))
    out = []
    for i, obj in enumerate(objects):
        if i == best:
            out.append(
                {
                    "phase_rms_vs_best_rad": 0.0,
                    "interior_phase_rms_vs_best_rad": 0.0,
                    "dice_vs_best": 1.0,
                    "twin_of_best": False,
                }
            )
            continue
        c = compare(obj, objects[best])
        out.append(
            {
                "phase_rms_vs_best_rad": c.phase_rms_rad,
                "interior_phase_rms_vs_best_rad": c.interior_phase_rms_rad,
                "dice_vs_best": c.dice,
                "twin_of_best": c.twin,
            }
        )
    return out


def count_agreeing(phase_rms_rad: Sequence[float], limit: float = AGREE_RAD) -> int:
    """How many phase RMS values are below limit (nan never agrees)."""
    return sum(1 for r in phase_rms_rad if np.isfinite(r) and r < limit)


def support_span_nm(support: np.ndarray, real_basis_lab: np.ndarray) -> list[float]:
    """Span (nm) of the support's voxel centres along lab x, y, z; real_basis_lab (3, 3) has
    the voxel steps of the grid axes as columns (Geometry.real_basis_lab)."""
    idx = np.argwhere(support).astype(float)
    if idx.size == 0:
        return [0.0, 0.0, 0.0]
    positions = idx @ np.asarray(real_basis_lab, float).T
    return [float(v) for v in np.ptp(positions, axis=0)]


def central_slices(objects: dict[str, np.ndarray], margin: int = SLICE_MARGIN) -> dict[str, Any]:
    """Phase (rad, 3 decimals, None outside each object's support) of the three central planes
    through the first object's support centre, in the box of the supports' union + margin."""
    supports = {k: support_of(v) for k, v in objects.items()}
    union = np.logical_or.reduce(list(supports.values()))
    first = next(iter(supports.values()))
    centre = [int(c) for c in np.rint(np.argwhere(first).mean(axis=0))]
    idx = np.argwhere(union)
    lo = np.maximum(idx.min(axis=0) - margin, 0)
    hi = np.minimum(idx.max(axis=0) + 1 + margin, union.shape)
    box = tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))
    out: dict[str, Any] = {
        "centre": centre,
        "box": [[int(a), int(b)] for a, b in zip(lo, hi, strict=True)],
    }
    for name, obj in objects.items():
        phase = np.where(supports[name], np.angle(obj), np.nan)
        planes = []
        for axis in range(3):
            sl = list(box)
            sl[axis] = centre[axis]
            plane = np.round(phase[tuple(sl)], 3)
            planes.append([[None if np.isnan(v) else float(v) for v in row] for row in plane])
        out[name] = planes
    return out


# ------------------------------------------------------------------------------- sweep


def _when(stamp: str) -> dt.datetime:
    return dt.datetime.fromisoformat(stamp)


def wall_from_attrs(results: Sequence[dict], merged: dict | None) -> dict[str, Any]:
    """The sweep's wall time as its groups record it: the first result's start to the merged
    group's writing (else the last result's), and the tasks' own wall times."""
    starts = [_when(a["started_at"]) for a in results if a.get("started_at")]
    ends = [_when(a["provenance"]["written_at"]) for a in results if a.get("provenance")]
    if merged and merged.get("provenance", {}).get("written_at"):
        ends.append(_when(merged["provenance"]["written_at"]))
    task_s = [float(a["wall_s"]) for a in results if a.get("wall_s") is not None]
    return {
        "wall_s": (max(ends) - min(starts)).total_seconds() if starts and ends else None,
        "wall_s_source": (
            "store attrs: the first result's started_at to the merged group's "
            "provenance.written_at (the driver's start-up and the input's loading not included)"
        ),
        "task_wall_s": task_s,
        "task_wall_s_sum": sum(task_s),
    }


def run_or_resume(workflow: Path = WORKFLOW) -> tuple[SweepSpec, Store, dict[str, Any]]:
    """The workflow's store, complete; runs `dyncdi sweep` (timed) unless it already is."""
    spec = load_sweep(workflow)
    command = [sys.executable, "-m", "dyncdi_hpc", "sweep", str(workflow)]
    _, before = plan_sweep(spec, spec.store, write=False)
    store = Store.open(spec.store) if (spec.store / "zarr.json").is_file() else None
    complete = (
        store is not None
        and bool(before.tasks)
        and not before.todo
        and all(f"{d}-{spec.base.model}" in store.merged_keys() for d in spec.datasets)
    )
    info: dict[str, Any] = {
        "command": f"dyncdi sweep {workflow.relative_to(ROOT)}",
        "store": str(spec.store),
        "tasks": len(before.tasks),
        "done_before": len(before.done),
        "failed_before": len(before.failed),
    }
    if not complete:
        t0 = time.perf_counter()
        proc = subprocess.run(command, cwd=ROOT, check=False)
        info |= {
            "wall_s": time.perf_counter() - t0,
            "wall_s_source": "measured: the dyncdi sweep subprocess, start to exit",
            "returncode": proc.returncode,
        }
        store = Store.open(spec.store)
    assert store is not None
    return spec, store, info


# ------------------------------------------------------------------------------ cohere


def cohere_settings(text: str = CONFIG_REC) -> dict[str, Any]:
    """config_rec's phasing settings, parsed by cohere's own reader (run settings dropped)."""
    from cohere_core.utilities import utils

    with tempfile.TemporaryDirectory(prefix="config-rec-") as tmp:
        path = Path(tmp) / "config_rec"
        path.write_text(text)
        with contextlib.redirect_stdout(io.StringIO()):
            parsed = utils.read_config(str(path))
    if parsed is None:
        raise RuntimeError("cohere could not read config_rec")
    return {k: v for k, v in parsed.items() if k not in NOT_PHASING}


def cohere_random_start(support: np.ndarray, max_data: float, seed: int) -> np.ndarray:
    """cohere's random start (Rec.init_iter_loop, first run) from a seeded generator:
    r = U[0,1) + i U[0,1), r *= sum |r|^2 * max(data), r *= support; complex128."""
    rng = np.random.default_rng(seed)
    r = rng.random(support.shape) + 1j * rng.random(support.shape)
    r *= np.sum(np.abs(r) ** 2) * max_data
    return r * support


class CohereRun(NamedTuple):
    """One cohere reconstruction: its image (centred, cohere's convention) and support."""

    seed: int
    image: np.ndarray
    support: np.ndarray
    errors: list[float]
    setup_s: float
    wall_s: float
    dtype: str


def run_cohere(amplitude: np.ndarray, settings: dict, seed: int, workdir: Path) -> CohereRun:
    """cohere-core's Rec (numpy, CPU) on peak-centred amplitudes (N0, N1, N2) float32."""
    from cohere_core.controller import phasing

    data = workdir / "data.npy"
    np.save(data, amplitude)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):  # cohere prints the shape and progress
        rec = phasing.create_rec(dict(settings), str(data), "np", -1, debug=True)
    if rec is None:
        raise RuntimeError("cohere_core create_rec failed")
    rec.ds_image = cohere_random_start(np.asarray(rec.support), float(np.max(rec.data)), seed)
    setup = time.perf_counter() - t0
    t0 = time.perf_counter()
    # np.errstate: cohere computes A/|F| everywhere, also where |F| = 0
    with np.errstate(divide="ignore", invalid="ignore"):
        with contextlib.redirect_stdout(io.StringIO()):
            code = rec.iterate()
    wall = time.perf_counter() - t0
    if code != 0:
        raise RuntimeError(f"cohere's iterate failed (seed {seed})")
    return CohereRun(
        seed,
        np.asarray(rec.ds_image),
        np.asarray(rec.support),
        [float(e) for e in rec.errs],
        setup,
        wall,
        str(rec.ds_image.dtype),
    )


def centred_ours(image: np.ndarray) -> np.ndarray:
    """A cohere image in our convention, centred like our results (centre_roll of support)."""
    obj = from_cohere(image)
    return np.roll(obj, centre_roll(support_of(obj)), axis=(0, 1, 2))


# ----------------------------------------------------------------------------- summary


def start_rows(store: Store, dataset: str, data: Data) -> tuple[list[dict], list[np.ndarray]]:
    """One row per finished start of dataset (by seed) and its object."""
    found = []
    for tid in store.result_ids():
        attrs = store.result_attrs(tid)
        if attrs.get("status") != "done" or attrs["spec"]["dataset"] != dataset:
            continue
        found.append((attrs["spec"]["seed"], tid, attrs))
    rows, objects = [], []
    for seed, tid, attrs in sorted(found):
        obj = complex_object(store.read_result(tid))
        metrics = attrs["metrics"]
        ls_error, ls_scale = best_error(obj, data)
        pr = attrs.get("pr_error") or []
        rows.append(
            {
                "task_id": tid,
                "seed": int(seed),
                "fourier_error": float(metrics["error"]),
                "fourier_error_recomputed": scaled_error(obj, float(metrics["scale"]), data),
                "fourier_error_ls_scale": ls_error,
                "scale": float(metrics["scale"]),
                "ls_scale": ls_scale,
                "pr_fourier_error": float(pr[-1]) if pr else None,
                "support_voxels": int(metrics["support_voxels"]),
                "wall_s": attrs.get("wall_s"),
            }
        )
        objects.append(obj)
    return rows, objects


def poisson_floor_of(merged_attrs: dict, m: Measurement, data: Data) -> tuple[float | None, str]:
    """The Poisson floor of the Fourier error: the merged attr, else the package's estimate."""
    if isinstance(merged_attrs.get("fourier_error_floor"), int | float):
        return float(merged_attrs["fourier_error_floor"]), "merged attr fourier_error_floor"
    try:
        from dyncdi_hpc.analysis.noise import poisson_floor
    except ImportError:
        return None, "no estimate: neither merged attr fourier_error_floor nor analysis.noise"
    ignored = ~np.fft.fftshift(data.measured)
    return (
        float(poisson_floor(m.intensity, ignored)),
        "dyncdi_hpc.analysis.noise.poisson_floor(input counts, mask); the store has no "
        "merged attr fourier_error_floor",
    )


def merged_summary(
    store: Store, key: str, data: Data, best_row: dict, m: Measurement
) -> tuple[dict[str, Any], np.ndarray]:
    """The merged object's error (least-squares scale), ratios to the best start, its extent
    and resolution from its attrs."""
    attrs = store.merged_attrs(key)
    obj = complex_object(store.read_merged(key))
    error, scale = best_error(obj, data)
    resolution = attrs.get("resolution", {})
    return {
        "key": key,
        "members": attrs.get("members"),
        "outliers": attrs.get("outliers"),
        "fourier_error": error,
        "ls_scale": scale,
        "error_ratio_to_best": error / best_row["fourier_error_ls_scale"],
        "error_ratio_to_best_stored": error / best_row["fourier_error"],
        "error_ratio_rule": (
            "merged / best start, both at their least-squares scale; _stored: over the best "
            "start's metrics error (at its AD-fitted scale)"
        ),
        "error_ratio_within": error / best_row["fourier_error_ls_scale"] <= MAX_ERROR_RATIO,
        "extent_nm": attrs.get("extent_nm"),
        "extent_note": None if "extent_nm" in attrs else "the merged group has no extent_nm",
        "support_span_nm_lab": support_span_nm(support_of(obj), m.geometry.real_basis_lab),
        "prtf_resolution_nm": resolution.get("prtf_resolution_nm"),
        "prtf_limited_by_data": resolution.get("limited_by_data"),
        "prtf_rule": resolution.get("rule"),
        "store_fourier_error": attrs.get("fourier_error"),
    }, obj


def cohere_summary(
    runs: Sequence[CohereRun],
    data: Data,
    merged: np.ndarray,
    best_start: np.ndarray,
    m: Measurement,
    settings: dict,
) -> tuple[dict[str, Any], np.ndarray | None]:
    """Each cohere run scored with our metric and compared with our merged object and best
    start; the headline numbers are those of the run with the lowest Fourier error."""
    per_run, aligned = [], []
    for run in runs:
        obj = centred_ours(run.image)
        error, scale = best_error(obj, data)
        vs_merged = compare(obj, merged)
        vs_best = compare(obj, best_start)
        per_run.append(
            {
                "seed": run.seed,
                "fourier_error": error,
                "ls_scale": scale,
                "cohere_own_last_error": run.errors[-1] if run.errors else None,
                "support_dice": vs_merged.dice,
                "phase_rms_rad": vs_merged.phase_rms_rad,
                "interior_phase_rms_rad": vs_merged.interior_phase_rms_rad,
                "twin_of_merged": vs_merged.twin,
                "common_voxels": vs_merged.common_voxels,
                "support_dice_vs_best_start": vs_best.dice,
                "phase_rms_vs_best_start_rad": vs_best.phase_rms_rad,
                "support_voxels": int(support_of(obj).sum()),
                "cohere_support_voxels": int(run.support.sum()),
                "support_span_nm_lab": support_span_nm(
                    support_of(vs_merged.aligned), m.geometry.real_basis_lab
                ),
                "setup_s": run.setup_s,
                "wall_s": run.wall_s,
                "dtype": run.dtype,
            }
        )
        aligned.append(vs_merged.aligned)
    if not per_run:
        return {}, None
    best = int(np.argmin([r["fourier_error"] for r in per_run]))
    head = per_run[best]
    return {
        "version": package_version("cohere-core"),
        "backend": "numpy (pkg='np'), scipy.fft, device -1 (CPU); threads as cohere sets them",
        "settings": settings,
        "settings_not_phasing": NOT_PHASING,
        "start": (
            "cohere's random start (U[0,1) + i U[0,1), times sum|r|^2 max(data), cut to the "
            "initial support) from numpy default_rng(seed), set on the Rec before iterate()"
        ),
        "input": (
            "the store's input counts (corrected, cropped 128^3) as sqrt, peak-centred float32; "
            "masked voxels are zero counts there and cohere fits them as measured zeros"
        ),
        "chosen_seed": head["seed"],
        "support_dice": head["support_dice"],
        "phase_rms_rad": head["phase_rms_rad"],
        "fourier_error": head["fourier_error"],
        "wall_s": head["wall_s"],
        "wall_s_median": statistics.median(r["wall_s"] for r in per_run),
        "agreeing_with_merged": count_agreeing([r["phase_rms_rad"] for r in per_run]),
        "runs": per_run,
    }, aligned[best]


def table_rows(result: dict[str, Any]) -> list[dict[str, Any]]:
    """One printed row per start, then the merged object and cohere's runs."""
    floor = result.get("poisson_floor")

    def over(e: float | None) -> float | None:
        return e / floor if e is not None and floor else None

    rows = [
        {
            "what": f"start {s['task_id'][:8]}",
            "seed": s["seed"],
            "Fourier error": s["fourier_error"],
            "/ floor": over(s["fourier_error"]),
            "LS-scale error": s["fourier_error_ls_scale"],
            "phase RMS vs best": s["phase_rms_vs_best_rad"],
            "interior": s["interior_phase_rms_vs_best_rad"],
            "Dice": s["dice_vs_best"],
            f"< {AGREE_RAD:g} rad": s["agrees"],
            "wall s": s["wall_s"],
        }
        for s in result["starts"]
    ]
    merged = result["merged"]
    rows.append(
        {
            "what": f"merged ({len(merged.get('members') or [])})",
            "LS-scale error": merged["fourier_error"],
            "/ floor": over(merged["fourier_error"]),
            "x best": merged["error_ratio_to_best"],
        }
    )
    for r in result.get("cohere", {}).get("runs", []):
        rows.append(
            {
                "what": "cohere",
                "seed": r["seed"],
                "LS-scale error": r["fourier_error"],
                "/ floor": over(r["fourier_error"]),
                "phase RMS vs merged": r["phase_rms_rad"],
                "interior": r["interior_phase_rms_rad"],
                "Dice": r["support_dice"],
                f"< {AGREE_RAD:g} rad": r["phase_rms_rad"] < AGREE_RAD,
                "wall s": r["wall_s"],
            }
        )
    return rows


def measure(cohere_seeds: Sequence[int]) -> dict[str, Any]:
    """The sweep (run or read), its summary, cohere's runs and their comparison."""
    spec, store, sweep = run_or_resume()
    (dataset,) = spec.datasets
    key = f"{dataset}-{spec.base.model}"
    m = read_measurement(store.read_input(dataset), f"inputs.{dataset}")
    data = data_of(m.intensity, m.mask, spec.base.saturation)
    rows, objects = start_rows(store, dataset, data)
    for row, agree in zip(
        rows, agreement(objects, [r["fourier_error"] for r in rows]), strict=True
    ):
        row |= agree | {"agrees": agree["phase_rms_vs_best_rad"] < AGREE_RAD}
    best = int(np.argmin([r["fourier_error"] for r in rows]))
    merged_attrs = store.merged_attrs(key)
    floor, floor_source = poisson_floor_of(merged_attrs, m, data)
    merged, merged_obj = merged_summary(store, key, data, rows[best], m)
    from_attrs = wall_from_attrs([store.result_attrs(r["task_id"]) for r in rows], merged_attrs)
    if "wall_s" in sweep:
        sweep["from_attrs"] = from_attrs
    else:
        sweep |= from_attrs

    settings = cohere_settings()
    with tempfile.TemporaryDirectory(prefix="cohere-real-") as tmp:
        amplitude = np.sqrt(m.intensity).astype(np.float32)
        runs = [run_cohere(amplitude, settings, s, Path(tmp)) for s in cohere_seeds]
    cohere, cohere_obj = cohere_summary(runs, data, merged_obj, objects[best], m, settings)

    agreeing = count_agreeing([r["phase_rms_vs_best_rad"] for r in rows])
    result: dict[str, Any] = {
        "description": __doc__.splitlines()[0],
        "workflow": str(WORKFLOW.relative_to(ROOT)),
        "command": COMMAND,
        "dataset": dataset,
        "grid": list(m.intensity.shape),
        "schedule": spec.base.model_dump(mode="json", include={"recipe", "shrinkwrap", "ad_steps"}),
        "counts": {
            "total": float(m.intensity.sum()),
            "peak": float(m.intensity.max()),
            "masked_voxels": int((~data.measured).sum()),
        },
        "sweep": sweep,
        "error_metric": (
            "recon.projections.fourier_error: sum (|F| - A)^2 / sum A^2 over measured voxels, "
            "A = sqrt(counts); fourier_error: the result's metrics error (AD-fitted scale); "
            "_ls_scale: at the least-squares scale; pr_fourier_error: at the end of ER/HIO"
        ),
        "agreement_metric": (
            f"phase RMS (rad) after dyncdi_hpc.merge.align onto the lowest-error start, inside "
            f"both supports (support_of); agrees below {AGREE_RAD} rad, the best counted"
        ),
        "poisson_floor": floor,
        "poisson_floor_source": floor_source,
        "best_task_id": rows[best]["task_id"],
        "starts": rows,
        "agreeing_starts": agreeing,
        "n_starts": len(rows),
        "half_agree": agreeing >= len(rows) / 2,
        "merged": merged,
        "cohere": cohere,
        "ours_wall_s_per_start_median": statistics.median(
            r["wall_s"] for r in rows if r["wall_s"] is not None
        ),
        "wall_note": (
            "ours: each task's wall_s (ER/HIO recipe, 100 AD steps, JIT compilation; tasks two "
            "at a time on the LocalCluster); cohere: Rec.iterate() alone (the recipe, no AD), "
            "one run at a time, in this process"
        ),
        "threads": thread_facts(),
        "dyncdi_hpc_uncommitted": uncommitted(),
        "load_after": list(os.getloadavg()),
    }
    if cohere_obj is not None:
        result["slices"] = central_slices({"ours": merged_obj, "cohere": cohere_obj})
    result["table"] = table_rows(result)
    return result


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point: the sweep (resumed) and three cohere seeds; quick: one."""
    return measure(QUICK_COHERE_SEEDS if quick else COHERE_SEEDS)


def _image(planes: list) -> np.ndarray:
    return np.array([[np.nan if v is None else v for v in row] for row in planes], float)


def relative_phase(slices: dict[str, Any], names: Sequence[str]) -> dict[str, list[np.ndarray]]:
    """Each object's planes (rad) less the first object's circular-mean phase over its
    planes, wrapped to [-pi, pi): the offset is arbitrary, and both share it after align."""
    images = {n: [_image(p) for p in slices[n]] for n in names}
    values = np.concatenate([x[np.isfinite(x)] for x in images[names[0]]])
    offset = float(np.angle(np.sum(np.exp(1j * values)))) if values.size else 0.0
    return {
        n: [np.angle(np.exp(1j * (x - offset))) for x in planes] for n, planes in images.items()
    }


def plot(result: dict[str, Any]) -> Figure | None:
    """Central phase slices of our merged object and cohere's (aligned onto it); per-start
    Fourier errors against the Poisson floor and phase RMS against the best start."""
    slices = result.get("slices")
    starts = result.get("starts") or []
    if not slices or not starts:
        return None
    figure = Figure(figsize=(15, 7), layout="constrained")
    axes = figure.subplots(2, 4)
    names = {"ours": "dyncdi-hpc merged", "cohere": "cohere-core"}
    planes = ("rocking", "row", "column")
    images = relative_phase(slices, list(names))
    finite = np.concatenate([x[np.isfinite(x)] for p in images.values() for x in p])
    limit = float(np.quantile(np.abs(finite), 0.99)) if finite.size else np.pi
    for r, name in enumerate(names):
        for c in range(3):
            ax = axes[r, c]
            im = ax.imshow(
                images[name][c].T, cmap="coolwarm", vmin=-limit, vmax=limit, origin="lower"
            )
            ax.set_title(
                f"{names[name]}: {planes[c]} index {slices['centre'][c]} (grid voxels)",
                fontsize=9,
            )
            ax.set_xticks([])
            ax.set_yticks([])
        figure.colorbar(im, ax=axes[r, 2], label="phase - mean phase (rad)", shrink=0.8)
    seeds = [s["seed"] for s in starts]
    top, bottom = axes[0, 3], axes[1, 3]
    top.scatter(seeds, [s["fourier_error"] for s in starts], label="start (final)")
    top.scatter(seeds, [s["fourier_error_ls_scale"] for s in starts], marker="x", label="LS scale")
    if result.get("poisson_floor"):
        top.axhline(result["poisson_floor"], color="k", ls=":", label="Poisson floor")
    top.axhline(result["merged"]["fourier_error"], color="tab:blue", ls="--", label="merged")
    if result.get("cohere"):
        top.axhline(result["cohere"]["fourier_error"], color="tab:orange", ls="--", label="cohere")
    top.set(xlabel="seed", ylabel="Fourier error", title="final Fourier error")
    top.legend(fontsize=7)
    bottom.scatter(seeds, [s["phase_rms_vs_best_rad"] for s in starts])
    bottom.axhline(AGREE_RAD, color="k", ls=":")
    bottom.set(
        xlabel="seed",
        ylabel="phase RMS vs best (rad)",
        title=f"{result['agreeing_starts']} of {len(starts)} agree",
    )
    c = result.get("cohere") or {}
    figure.suptitle(
        f"APS 34-ID-C scan 54: cohere vs merged Dice {c.get('support_dice', float('nan')):.3f}, "
        f"phase RMS {c.get('phase_rms_rad', float('nan')):.3f} rad",
        fontsize=10,
    )
    return figure
