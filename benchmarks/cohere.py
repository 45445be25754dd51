"""Against cohere-core: the same ER/HIO + shrink-wrap recipe, the same starts, the same CPU.

cohere-core (the APS Bragg CDI phasing library, `pip install cohere-core`) runs here on its
numpy back end (`pkg="np"`, scipy.fft). Both tools reconstruct the same simulated crystals
(the kernels benchmark's Au 111 scan, Poisson noise, 1e5 counts in the brightest voxel) from
the same random starts, with the same recipe, HIO beta and shrink-wrap (period, threshold,
Gaussian sigma), in one process, one seed after the other, ours first then cohere's.

The error metric is the phase RMS (rad) against the truth inside the true support, after
removing the ambiguities with `dyncdi_hpc.merge.align` (twin, translation, ramp, offset); the
normalised Fourier amplitude error (`projections.fourier_error`) is recorded beside it. Both are
evaluated on psi * support every `EVERY` iterations, outside the timed calls.

Time to error = (seconds per iteration) x (iterations needed to first reach a target that both
tools reach on that start): TARGET_RAD when both reach it, else the worse of the two tools' best
errors. Seconds per iteration are the timed recipe runs themselves (total time of the timed
chunks over the iterations; shrink-wrap included), median over the seeds.

How the two runs are made the same:
- Data: cohere gets the same float32 amplitudes sqrt(I), saved peak-centred to data.npy
  (cohere fftshifts it into FFT order itself).
- Start: cohere's Fourier transform is N * ifftn (scipy norm="forward"), ours fftn(norm="ortho");
  conj(psi) / sqrt(N) under cohere's transform has the measured modulus wherever psi has it
  under ours, and every ER/HIO iterate maps the same way. cohere starts from
  fftshift(conj(psi0)) / sqrt(N) and fftshift(support0) (our random_start, moved to the array
  centre because cohere's shrink-wrap blur, scipy.ndimage.gaussian_filter, is not periodic),
  given through cohere's own `continue_dir` (image.npy, support.npy).
- Snapshots: we execute `rec.flow`, the list of bound methods that `Rec.iterate()` runs, in
  chunks that end at multiples of EVERY; each chunk runs through the next iteration's
  shrink-wrap, which cohere applies before its projection, so the support at a snapshot is the
  one ours has after the same iteration.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import os
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from dyncdi_hpc.config import (
    ALGORITHMS,
    DisplacementConfig,
    GeometryConfig,
    ReconParams,
    SimulateConfig,
    parse_recipe,
)
from dyncdi_hpc.data.simulate import simulate
from dyncdi_hpc.merge.align import align, phase_rms
from dyncdi_hpc.provenance import package_version
from dyncdi_hpc.recon.pipeline import centre_roll
from dyncdi_hpc.recon.projections import (
    PRState,
    ShrinkWrapParams,
    fourier_error,
    random_start,
    run_block,
)
from dyncdi_hpc.recon.stages import to_fft_order

from .kernels import CRYSTAL, GEOMETRY

# grid size -> random starts; the iterations a start needs to reach the target vary a lot
# (HIO is chaotic), so the cheap size gets more starts
SIZES = {64: 8, 128: 4}
QUICK_SIZES = {64: 2}
RECIPE = ReconParams().recipe
HIO_BETA = 0.9
# cohere's shrink-wrap has one fixed Gaussian sigma per trigger; ours ramps sigma_start ->
# sigma_end over the recipe, so both ends are set to the same sigma here.
SW_EVERY, SW_THRESHOLD, SW_SIGMA = 20, 0.15, 1.0
SHRINKWRAP = ShrinkWrapParams(SW_EVERY, SW_THRESHOLD, SW_SIGMA, SW_SIGMA)
EVERY = 20
TARGET_RAD = 0.2
TARGET_SPEEDUP = 5.0
# iterations of the timing-only run of cohere with scipy.fft using every usable core
ALL_CORES_ITERS = 40

ERROR_METRIC = (
    "phase RMS (rad) against the truth inside the true support, after dyncdi_hpc.merge.align "
    "(twin, translation, phase ramp, offset) of psi*support on the truth; both volumes "
    "centred by centre_roll and cropped to the central (N/2)^3 box before aligning"
)
THREAD_ENV = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "XLA_FLAGS",
)


class Chunk(NamedTuple):
    """Iterations up to `end` (exclusive start at the previous chunk's end), as recipe pieces."""

    end: int
    pieces: tuple[tuple[str, int], ...]


def chunks(blocks: Sequence[tuple[str, int]], every: int) -> list[Chunk]:
    """Split a recipe's (algorithm, n) blocks into chunks ending at multiples of every and at
    the end of the recipe; a chunk that spans a block boundary holds one piece per block."""
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    out: list[Chunk] = []
    pieces: list[tuple[str, int]] = []
    done = 0
    for name, n in blocks:
        left = n
        while left > 0:
            step = min(left, every - done % every)
            if pieces and pieces[-1][0] == name:
                pieces[-1] = (name, pieces[-1][1] + step)
            else:
                pieces.append((name, step))
            left -= step
            done += step
            if done % every == 0:
                out.append(Chunk(done, tuple(pieces)))
                pieces = []
    if pieces:
        out.append(Chunk(done, tuple(pieces)))
    return out


def first_reach(iterations: Sequence[int], errors: Sequence[float], target: float) -> int | None:
    """First iteration whose error is at or below target; None if the curve never gets there."""
    for it, err in zip(iterations, errors, strict=True):
        if err <= target:
            return int(it)
    return None


def common_target(best_a: float, best_b: float, fixed: float | None = TARGET_RAD) -> float:
    """An error both runs reach: `fixed` when both reach it, else the worse of their bests."""
    if fixed is not None and max(best_a, best_b) <= fixed:
        return float(fixed)
    return float(max(best_a, best_b))


def time_to_error(
    curves: dict[str, tuple[Sequence[int], Sequence[float]]],
    s_per_iter: dict[str, float],
    fixed: float | None = TARGET_RAD,
) -> dict[str, Any]:
    """Target both tools reach, iterations each needs to reach it, and that times s/iteration.

    curves: tool -> (iterations, errors) of one start, exactly two tools.
    """
    (a, (ia, ea)), (b, (ib, eb)) = curves.items()
    target = common_target(min(ea), min(eb), fixed)
    iters = {a: first_reach(ia, ea, target), b: first_reach(ib, eb, target)}
    return {
        "target": target,
        "iterations": iters,
        "time_s": {k: s_per_iter[k] * v for k, v in iters.items() if v is not None},
    }


def summarise(per_seed: Sequence[dict[str, Any]], ours: str = "ours", other: str = "cohere"):
    """Median time to error of each tool over the starts, and the ratio other / ours."""
    t_ours = statistics.median(s["time_s"][ours] for s in per_seed)
    t_other = statistics.median(s["time_s"][other] for s in per_seed)
    per = [s["time_s"][other] / s["time_s"][ours] for s in per_seed]
    return {
        f"{ours}_time_to_error_s": t_ours,
        f"{other}_time_to_error_s": t_other,
        "speedup_time_to_error": t_other / t_ours,
        "speedup_time_to_error_per_seed": per,
    }


class Problem(NamedTuple):
    """One simulated scan: amplitudes (FFT order, float32), the truth cropped for the metric."""

    n: int
    amplitude: np.ndarray
    truth: np.ndarray
    truth_support: np.ndarray
    oversampling: list[float]
    support_voxels: int


def centred_crop(obj: np.ndarray, support: np.ndarray) -> np.ndarray:
    """Roll support's centre of mass to the array centre and keep the central (N/2)^3 box."""
    rolled = np.roll(obj, centre_roll(support), axis=tuple(range(obj.ndim)))
    box = tuple(slice(n // 4, n // 4 + n // 2) for n in obj.shape)
    return rolled[box]


def problem(n: int) -> Problem:
    """The kernels benchmark's crystal on an (n, n, n) grid, with Poisson noise."""
    cfg = SimulateConfig(
        geometry=GeometryConfig(shape=(n, n, n), **GEOMETRY),
        crystal=CRYSTAL,
        displacement=DisplacementConfig(kind="lobes", phase_range_rad=3.0, n_lobes=3, seed=1),
    )
    sim = simulate(cfg, cfg.geometry.build())
    t = sim.truth
    truth = t.amplitude * np.exp(1j * t.phase)
    extents = [
        np.ptp(np.flatnonzero(t.support.any(axis=tuple(a for a in range(3) if a != ax)))) + 1
        for ax in range(3)
    ]
    return Problem(
        n=n,
        amplitude=np.sqrt(to_fft_order(sim.intensity)).astype(np.float32),
        truth=centred_crop(truth, t.support),
        truth_support=centred_crop(t.support, t.support),
        oversampling=[float(n / e) for e in extents],
        support_voxels=int(t.support.sum()),
    )


def phase_error(centred: np.ndarray, prob: Problem) -> float:
    """Phase RMS (rad) of a peak-centred object against the truth, after align (see module)."""
    support = np.abs(centred) > 0
    if not support.any():
        return float("nan")
    crop = centred_crop(centred, support)
    aligned = align(crop, prob.truth)
    return phase_rms(aligned.obj, prob.truth, prob.truth_support)


class Curve(NamedTuple):
    """Errors after each chunk (iteration 0: the start) and the timed seconds of each chunk."""

    iterations: list[int]
    phase_rms: list[float]
    fourier_error: list[float]
    chunk_s: list[float]
    chunk_cpu_s: list[float]
    dtype: str

    def s_per_iter_chunks(self) -> list[float]:
        """Seconds per iteration of each timed chunk."""
        steps = [b - a for a, b in itertools.pairwise(self.iterations)]
        return [t / k for t, k in zip(self.chunk_s, steps, strict=True)]

    def to_json(self) -> dict[str, Any]:
        wall = sum(self.chunk_s)
        return {
            "iterations": self.iterations,
            "phase_rms": self.phase_rms,
            "fourier_error": self.fourier_error,
            "chunk_s": self.chunk_s,
            "s_per_iter_median_chunk": statistics.median(self.s_per_iter_chunks()),
            "s_per_iter_total": wall / (self.iterations[-1] - self.iterations[0]),
            "cpu_over_wall": sum(self.chunk_cpu_s) / wall if wall > 0 else None,
            "dtype": self.dtype,
        }


class Step(NamedTuple):
    """One timed chunk of a run: iterations done, wall and CPU seconds, psi*support (ours)."""

    end: int
    wall_s: float
    cpu_s: float
    psi: np.ndarray | None


class Recorder:
    """Collects the chunks of one run and evaluates both metrics on psi*support (FFT order)."""

    def __init__(self, prob: Problem, *, metrics: bool = True):
        self.prob = prob
        self.metrics = metrics
        self.amplitude = jnp.asarray(prob.amplitude)
        self.measured = jnp.ones(prob.amplitude.shape, bool)
        self.iterations: list[int] = []
        self.phase: list[float] = []
        self.fourier: list[float] = []
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.dtype = ""

    def add(self, step: Step) -> None:
        if step.wall_s >= 0:
            self.wall.append(step.wall_s)
            self.cpu.append(step.cpu_s)
        self.iterations.append(step.end)
        if self.metrics and step.psi is not None:
            psi = jnp.asarray(step.psi, jnp.complex64)
            self.fourier.append(float(fourier_error(psi, self.amplitude, self.measured)))
            self.phase.append(phase_error(np.fft.fftshift(step.psi), self.prob))

    def curve(self) -> Curve:
        return Curve(self.iterations, self.phase, self.fourier, self.wall, self.cpu, self.dtype)


def ours_steps(
    prob: Problem, start: PRState, plan: Sequence[Chunk], recorder: Recorder
) -> Iterator[Step]:
    """Our jitted run_block over the plan; one host sync per chunk (the timed unit)."""
    amplitude = jnp.asarray(prob.amplitude)
    measured = jnp.ones(amplitude.shape, bool)
    beta = jnp.asarray(HIO_BETA, amplitude.dtype)
    total = jnp.asarray(plan[-1].end)
    recorder.dtype = str(start.psi.dtype)
    yield Step(0, -1.0, 0.0, np.asarray(start.psi * start.support))
    state = start
    for chunk in plan:
        c0, t0 = time.process_time(), time.perf_counter()
        for name, n in chunk.pieces:
            code = jnp.asarray(ALGORITHMS.index(name))
            state = run_block(
                state, amplitude, measured, code, jnp.asarray(n), beta, total, SHRINKWRAP
            )
        jax.block_until_ready(state)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        yield Step(chunk.end, wall, cpu, np.asarray(state.psi * state.support))


def compile_ours(prob: Problem, start: PRState) -> float:
    """Compile run_block for this shape (one ER iteration); returns the first call's seconds."""
    amplitude = jnp.asarray(prob.amplitude)
    t0 = time.perf_counter()
    out = run_block(
        start,
        amplitude,
        jnp.ones(amplitude.shape, bool),
        jnp.asarray(ALGORITHMS.index("ER")),
        jnp.asarray(1),
        jnp.asarray(HIO_BETA, amplitude.dtype),
        jnp.asarray(1),
        SHRINKWRAP,
    )
    jax.block_until_ready(out)
    return time.perf_counter() - t0


def cohere_params(recipe: str, continue_dir: str | None) -> dict[str, Any]:
    """The configuration dict given to cohere_core.controller.phasing.create_rec."""
    params: dict[str, Any] = {
        "algorithm_sequence": recipe,
        "hio_beta": HIO_BETA,
        "shrink_wrap_trigger": [SW_EVERY, SW_EVERY],
        "shrink_wrap_type": "GAUSS",
        "shrink_wrap_threshold": SW_THRESHOLD,
        "shrink_wrap_gauss_sigma": SW_SIGMA,
    }
    if continue_dir is not None:
        params["continue_dir"] = continue_dir
    return params


def cohere_start(psi_fft: np.ndarray, support_fft: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Our start in cohere's convention: centred conj(psi)/sqrt(N) (complex128), int support."""
    psi = np.fft.fftshift(np.conj(psi_fft.astype(np.complex128))) / np.sqrt(psi_fft.size)
    return psi, np.fft.fftshift(support_fft).astype(np.int64)


def from_cohere(image: np.ndarray) -> np.ndarray:
    """A centred cohere image back to our convention (FFT order, ortho transform)."""
    return np.fft.ifftshift(np.conj(image)) * np.sqrt(image.size)


def recipe_of(plan: Sequence[Chunk]) -> str:
    """A cohere algorithm_sequence that runs the plan's pieces in order."""
    return "+".join(f"{n}*{name}" for c in plan for name, n in c.pieces)


def split_flow(flow: Sequence[Callable[[], Any]]) -> list[list[Callable[[], Any]]]:
    """Cut cohere's flow before each to_reciprocal_space but the first: item i is iteration
    i's projection and the next iteration's prelude (next, shrink-wrap); item 0 also holds the
    first prelude."""
    cuts = [i for i, f in enumerate(flow) if f.__name__ == "to_reciprocal_space"]
    bounds = [0, *cuts[1:], len(flow)]
    return [list(flow[b:e]) for b, e in itertools.pairwise(bounds)]


def _cohere_rec(prob: Problem, start: PRState, recipe: str, workdir: Path) -> Any:
    from cohere_core.controller import phasing

    data = workdir / "data.npy"
    if not data.exists():
        np.save(data, np.fft.fftshift(prob.amplitude))
    cont = workdir / "start"
    cont.mkdir(exist_ok=True)
    psi, support = cohere_start(np.asarray(start.psi), np.asarray(start.support))
    np.save(cont / "image.npy", psi)
    np.save(cont / "support.npy", support)
    params = cohere_params(recipe, str(cont))
    with contextlib.redirect_stdout(io.StringIO()):  # cohere prints the data shape
        rec = phasing.create_rec(params, str(data), "np", -1, debug=True)
    if rec is None:
        raise RuntimeError("cohere_core create_rec failed")
    return rec


def cohere_steps(
    prob: Problem,
    start: PRState,
    plan: Sequence[Chunk],
    workdir: Path,
    recorder: Recorder,
    fft_workers: int = 1,
) -> Iterator[Step]:
    """cohere-core's Rec on the numpy back end, its flow executed chunk by chunk."""
    import scipy.fft

    rec = _cohere_rec(prob, start, recipe_of(plan), workdir)
    per_iter = split_flow(rec.flow)
    if len(per_iter) != plan[-1].end:
        raise RuntimeError(f"cohere's flow has {len(per_iter)} iterations, the plan {plan[-1].end}")
    recorder.dtype = str(rec.ds_image.dtype)
    yield Step(0, -1.0, 0.0, from_cohere(rec.ds_image * rec.support))
    done = 0
    for chunk in plan:
        calls = [f for it in per_iter[done : chunk.end] for f in it]
        # np.errstate: cohere computes A/|F| everywhere, also where |F| = 0
        with np.errstate(divide="ignore", invalid="ignore"), scipy.fft.set_workers(fft_workers):
            c0, t0 = time.process_time(), time.perf_counter()
            for f in calls:
                f()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        done = chunk.end
        recorder.dtype = str(rec.ds_image.dtype)
        yield Step(done, wall, cpu, from_cohere(rec.ds_image * rec.support))


def lockstep(runs: dict[str, tuple[Iterator[Step], Recorder]]) -> dict[str, Curve]:
    """Advance the runs one chunk each in turn (load drifts hit them alike); metrics untimed."""
    for steps in zip(*(it for it, _ in runs.values()), strict=True):
        for step, (_, recorder) in zip(steps, runs.values(), strict=True):
            recorder.add(step)
    return {name: recorder.curve() for name, (_, recorder) in runs.items()}


def uncommitted() -> list[str]:
    """`git status --porcelain` lines of the package: the code measured may differ from HEAD."""
    try:
        out = subprocess.run(
            ["git", "status", "--porcelain", "--", "dyncdi_hpc"],
            cwd=Path(__file__).resolve().parents[1],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return []
    return out.stdout.splitlines() if out.returncode == 0 else []


def thread_facts() -> dict[str, Any]:
    """Thread-related environment, the BLAS/OpenMP libraries loaded, scipy.fft workers."""
    import scipy.fft
    from threadpoolctl import threadpool_info

    return {
        "environment": {k: os.environ.get(k) for k in THREAD_ENV},
        "threadpool_info": [
            {k: i.get(k) for k in ("user_api", "internal_api", "prefix", "version", "num_threads")}
            | {"architecture": i.get("architecture")}
            for i in threadpool_info()
        ],
        "scipy_fft_workers": scipy.fft.get_workers(),
    }


def measure_size(n: int, seeds: int, workdir: Path) -> dict[str, Any]:
    """Both tools from `seeds` random starts on an (n, n, n) problem; per-size JSON entry."""
    from threadpoolctl import threadpool_limits

    prob = problem(n)
    plan = chunks(parse_recipe(RECIPE), EVERY)
    short = chunks((("HIO", ALL_CORES_ITERS),), EVERY)
    cores = len(os.sched_getaffinity(0))
    amplitude, measured = jnp.asarray(prob.amplitude), jnp.ones((n,) * 3, bool)
    starts = [random_start(jax.random.key(s), amplitude, measured) for s in range(seeds)]
    compile_s = compile_ours(prob, starts[0])
    load = [list(os.getloadavg())]
    with threadpool_limits(limits=1):
        # untimed warm-up of both (first touch of the arrays, FFT plans), then the runs
        for _ in cohere_steps(prob, starts[0], short[:1], workdir, Recorder(prob)):
            pass
        curves = []
        for start in starts:
            runs = {
                "ours": (ours_steps(prob, start, plan, rec := Recorder(prob)), rec),
                "cohere": (cohere_steps(prob, start, plan, workdir, rec := Recorder(prob)), rec),
            }
            curves.append(lockstep(runs))
            load.append(list(os.getloadavg()))
        # per-iteration time only: cohere with scipy.fft on every usable core, beside the rest
        untimed = {"metrics": False}
        timing = lockstep(
            {
                "ours": (ours_steps(prob, starts[0], short, r := Recorder(prob, **untimed)), r),
                "cohere": (
                    cohere_steps(prob, starts[0], short, workdir, r := Recorder(prob, **untimed)),
                    r,
                ),
                "cohere_all_cores": (
                    cohere_steps(
                        prob, starts[0], short, workdir, r := Recorder(prob, **untimed), cores
                    ),
                    r,
                ),
            }
        )

    tools = ("ours", "cohere")
    s_iter = {
        t: statistics.median(x for c in curves for x in c[t].s_per_iter_chunks()) for t in tools
    }
    phase = [
        time_to_error({t: (c[t].iterations, c[t].phase_rms) for t in tools}, s_iter) for c in curves
    ]
    fourier = [
        time_to_error({t: (c[t].iterations, c[t].fourier_error) for t in tools}, s_iter, None)
        for c in curves
    ]
    summary = summarise(phase)
    short_s = {t: statistics.median(c.s_per_iter_chunks()) for t, c in timing.items()}
    return {
        "size": n,
        "shape": [n, n, n],
        "oversampling": prob.oversampling,
        "support_voxels": prob.support_voxels,
        "dtype_ours": curves[0]["ours"].dtype,
        "dtype_cohere": curves[0]["cohere"].dtype,
        "ours_s_per_iter": s_iter["ours"],
        "cohere_s_per_iter": s_iter["cohere"],
        "s_per_iter_rule": "median over every timed 20-iteration chunk of every start",
        "speedup_per_iteration": s_iter["cohere"] / s_iter["ours"],
        **summary,
        "iterations_to_error_median": {
            t: statistics.median(p["iterations"][t] for p in phase) for t in tools
        },
        "target_met": summary["speedup_time_to_error"] >= TARGET_SPEEDUP,
        "error_metric": ERROR_METRIC,
        "per_seed_phase": phase,
        "fourier_error_metric": "projections.fourier_error of psi*support (normalised, squared)",
        "per_seed_fourier": fourier,
        "fourier_time_to_error": summarise(fourier),
        "ours_compile_s": compile_s,
        "loadavg": load,
        "hio_timing": {
            "what": (
                f"{ALL_CORES_ITERS} HIO iterations from start 0, the three runs in lockstep; "
                f"cohere_all_cores: scipy.fft.set_workers({cores})"
            ),
            "s_per_iter": short_s,
            "cpu_over_wall": {t: c.to_json()["cpu_over_wall"] for t, c in timing.items()},
            "dtype": {t: c.dtype for t, c in timing.items()},
        },
        "runs": [
            {"seed": seed, **{t: c[t].to_json() for t in tools}} for seed, c in enumerate(curves)
        ],
    }


def table_rows(entry: dict[str, Any]) -> list[dict[str, Any]]:
    """The printed row of one size."""
    targets = sorted({p["target"] for p in entry["per_seed_phase"]})
    return [
        {
            "size": f"{entry['size']}^3",
            "ours ms/it": 1e3 * entry["ours_s_per_iter"],
            "cohere ms/it": 1e3 * entry["cohere_s_per_iter"],
            "x per it": entry["speedup_per_iteration"],
            "target rad": ", ".join(f"{t:.3g}" for t in targets),
            "ours it": entry["iterations_to_error_median"]["ours"],
            "cohere it": entry["iterations_to_error_median"]["cohere"],
            "ours s": entry["ours_time_to_error_s"],
            "cohere s": entry["cohere_time_to_error_s"],
            "x to error": entry["speedup_time_to_error"],
            f">={TARGET_SPEEDUP:g}x": entry["target_met"],
        }
    ]


def measure(sizes: dict[int, int]) -> dict[str, Any]:
    """The cohere comparison at each grid size n (n -> number of random starts)."""
    import scipy

    with tempfile.TemporaryDirectory(prefix="cohere-bench-") as tmp:
        threads = thread_facts()
        entries = []
        for n, seeds in sizes.items():
            workdir = Path(tmp) / str(n)
            workdir.mkdir()
            entries.append(measure_size(n, seeds, workdir))
    return {
        "params": {
            "sizes": [e["size"] for e in entries],
            "seeds": {str(n): k for n, k in sizes.items()},
            "recipe": RECIPE,
            "hio_beta": HIO_BETA,
            "shrinkwrap": SHRINKWRAP._asdict(),
            "record_every": EVERY,
            "target_rad": TARGET_RAD,
            "target_rule": (
                "per start: TARGET_RAD if both tools' best phase RMS <= TARGET_RAD, else the "
                "larger of the two best values; time = median s/iter x first iteration at or "
                "below it; the size's times are medians over the starts"
            ),
            "geometry": {k: list(v) if isinstance(v, tuple) else v for k, v in GEOMETRY.items()},
            "crystal": CRYSTAL.model_dump(mode="json"),
            "peak_counts": 1e5,
            "noise": "Poisson",
        },
        "cohere": {
            "version": package_version("cohere-core"),
            "backend": "numpy (pkg='np'), scipy.fft, device -1 (CPU)",
            "api": (
                "cohere_core.controller.phasing.create_rec(params, 'data.npy', 'np', -1, "
                "debug=True); the bound methods of rec.flow executed in order (as Rec.iterate "
                "does), cut into chunks of record_every iterations"
            ),
            "params": cohere_params(RECIPE, "<tmp>/start"),
            "start": (
                "continue_dir holds image.npy = fftshift(conj(psi0))/sqrt(N) (complex128) and "
                "support.npy = fftshift(support0) (int64), psi0/support0 = our random_start"
            ),
            "threads": (
                "threadpoolctl.threadpool_limits(1) around both tools; scipy.fft workers 1 "
                "(its default); hio_timing.cohere_all_cores repeats a short HIO run with "
                "scipy.fft.set_workers(all usable cores)"
            ),
        },
        "threads": threads,
        "dyncdi_hpc_uncommitted": uncommitted(),
        "versions": {
            "cohere-core": package_version("cohere-core"),
            "scipy": scipy.__version__,
            "numpy": np.__version__,
            "jax": jax.__version__,
        },
        "target_speedup": TARGET_SPEEDUP,
        "units": "seconds; errors: phase RMS in rad, Fourier error dimensionless",
        "sizes": entries,
        "table": [row for e in entries for row in table_rows(e)],
    }


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point: 64^3 (8 starts) and 128^3 (4 starts); quick: 64^3, 2 starts."""
    return measure(QUICK_SIZES if quick else SIZES)


def plot(result: dict[str, Any]) -> Figure | None:
    """Phase RMS and Fourier error against wall-clock time, each size, both tools, all starts."""
    entries = result.get("sizes") or []
    if not entries:
        return None
    device = result.get("metadata", {}).get("cpu_model", "")
    figure = Figure(figsize=(5.5 * len(entries), 8), layout="constrained")
    axes = np.atleast_2d(figure.subplots(2, len(entries), squeeze=False))
    colours = {"ours": "tab:blue", "cohere": "tab:orange"}
    for col, entry in enumerate(entries):
        top, bottom = axes[0, col], axes[1, col]
        for run in entry["runs"]:
            for tool in ("ours", "cohere"):
                r = run[tool]
                t = np.concatenate([[0.0], np.cumsum(r["chunk_s"])])
                t[0] = t[1] / 10  # the start, drawn at the left of the log axis
                label = f"{tool} ({r['dtype']})" if run["seed"] == 0 else None
                top.plot(t, r["phase_rms"], color=colours[tool], alpha=0.8, label=label)
                bottom.plot(t, r["fourier_error"], color=colours[tool], alpha=0.8, label=label)
        for p in entry["per_seed_phase"]:
            top.axhline(p["target"], color="k", ls=":", lw=0.8)
        for tool in ("ours", "cohere"):
            top.axvline(entry[f"{tool}_time_to_error_s"], color=colours[tool], ls="--", lw=1)
        top.set(
            xscale="log",
            ylabel="phase RMS vs truth (rad)",
            title=(
                f"{entry['size']}^3: {entry['speedup_time_to_error']:.1f}x to error, "
                f"{entry['speedup_per_iteration']:.1f}x per iteration"
            ),
        )
        bottom.set(
            xscale="log", yscale="log", xlabel="wall-clock s (timed chunks)", ylabel="Fourier error"
        )
        top.legend(fontsize=8)
        bottom.legend(fontsize=8)
    figure.suptitle(f"dyncdi-hpc vs cohere-core, {RECIPE}, same starts ({device})", fontsize=10)
    return figure
