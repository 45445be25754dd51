"""Cost of the dynamical forward model against the kinematical one: time and memory.

For each grid size N (N^3 voxels, N rocking angles) both models run forward and forward +
gradient of a Poisson-like scalar on the same crystal, timed side by side; memory is XLA's
compiled estimate (arguments + outputs + temporaries) from `memory_analysis()`, so sizes that
would not fit in this machine's memory can still be sized. Scaling exponents are fitted over
the sizes measured, and the dynamical model's memory is extrapolated to 256^3. The dynamical
model runs with OPTIONS (angle chunks and checkpoint blocks, for memory) on the full grid and
in the crystal's box, and with a reconstruction's options (the box alone, "box recon").

On a GPU the full run times N = 32, 64, 128 (full-grid fwd+grad included) and, first, in
`large`, runs each of LARGE_SIZES (256^3) for real, one fresh process per variant (support
box, full grid), recording its times and the allocator's measured peak
(`memory_stats()['peak_bytes_in_use']`, which a fresh process makes that variant's own) beside
the compiled estimate. Run it with XLA_PYTHON_CLIENT_PREALLOCATE=false, so that this process
holds no pool the large runs would have to fit beside.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import time
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from dyncdi_hpc.config import CrystalConfig, GeometryConfig, SimulateConfig
from dyncdi_hpc.data.simulate import simulate
from dyncdi_hpc.physics import dynamical, kinematical
from dyncdi_hpc.physics.objects import CrystalParams

from .harness import time_interleaved

SIZES = (16, 32, 64)
QUICK_SIZES = (16, 32)
MEMORY_ONLY_SIZES = (128,)  # full grid compiled for memory_analysis only; the box also timed
TIMED_GRAD_MAX = 64  # fwd+grad of the dynamical model is only compiled (not run) above this
GPU_SIZES = (32, 64, 128)  # timed on a GPU, full-grid fwd+grad included
LARGE_SIZES = (256,)  # on a GPU: run for real, each variant in a fresh process (measured peak)
LARGE_VARIANTS = {"box": 2, "full": 1}  # variant -> timed repeats (after one warm-up call)
LARGE_TIMEOUT_S = 180.0  # per variant; a variant that runs longer is recorded as timed out
LARGE_MEM_FRACTION = "0.95"  # of the GPU's memory the large runs' allocator may use
OPTIONS = dynamical.DynamicalOptions(angle_chunk=8, checkpoint_block=8)
SUPPORT_THRESHOLD = 0.01  # the static box: voxels with S above this, grown by one voxel
FUSED_SIZE = 128  # fused Pallas march against the XLA scan: N^3 on a GPU (QUICK: FUSED_QUICK)
FUSED_QUICK = 64


def boxed_options(params: CrystalParams) -> dynamical.DynamicalOptions:
    """OPTIONS with the crystal's static bounding box (dynamical.support_box)."""
    mask = np.asarray(jax.nn.sigmoid(params.logits)) > SUPPORT_THRESHOLD
    return dataclasses.replace(OPTIONS, box=dynamical.support_box(mask, margin=1))


def recon_options(params: CrystalParams) -> dynamical.DynamicalOptions:
    """The options a reconstruction uses (recon/stages.py): the box, no angle chunks."""
    return dataclasses.replace(boxed_options(params), angle_chunk=0, checkpoint_block=0)


def problem(n: int) -> tuple[CrystalParams, Any]:
    """The demo's 800 nm Au 111 crystal on an n^3 grid (same scan, finer sampling as n grows)."""
    geometry = GeometryConfig(
        energy_kev=9.0,
        shape=(n, n, n),
        rocking_step_deg=0.005,
        pixel_size_um=55.0,
        detector_distance_m=1.0,
    )
    g = geometry.build()
    truth = simulate(SimulateConfig(geometry=geometry, crystal=CrystalConfig(size_nm=800)), g).truth
    frac = np.clip(truth.amplitude, 1e-3, 1 - 1e-3)
    params = CrystalParams(
        jnp.asarray(np.log(frac / (1 - frac)), jnp.float32), jnp.asarray(truth.phase, jnp.float32)
    )
    return params, g


def _memory_bytes(fn, *args) -> int:
    stats = jax.jit(fn).lower(*args).compile().memory_analysis()
    return int(stats.argument_size_in_bytes + stats.output_size_in_bytes + stats.temp_size_in_bytes)


def _fit_exponent(sizes: list[int], values: list[float]) -> float | None:
    good = [(n, v) for n, v in zip(sizes, values, strict=True) if v and v > 0]
    if len(good) < 2:
        return None
    x, y = np.log([n for n, _ in good]), np.log([v for _, v in good])
    return float(np.polyfit(x, y, 1)[0])


def measure(
    sizes: tuple[int, ...],
    repeats: int,
    *,
    timed_grad_max: int = TIMED_GRAD_MAX,
    memory_only_sizes: tuple[int, ...] | None = None,
) -> dict[str, Any]:
    """Time and memory of both models at each size (N^3 voxels, N rocking angles).

    memory_only_sizes: compiled for memory_analysis only (None: MEMORY_ONLY_SIZES, skipped in
    the quick run).
    """
    if memory_only_sizes is None:
        memory_only_sizes = () if quick_memory_skip(sizes) else MEMORY_ONLY_SIZES
    entries = []
    for n in sizes:
        params, geometry = problem(n)

        def kin(p, g=geometry):
            return kinematical.forward(p, g)

        def dyn(p, g=geometry):
            return dynamical.forward(p, g, OPTIONS)

        box_opts = boxed_options(params)

        def dyn_box(p, g=geometry, o=box_opts):
            return dynamical.forward(p, g, o)

        def scalar(model):
            return lambda p: jnp.sum(jnp.sqrt(model(p) + 1e-6))

        kin_grad = jax.jit(jax.grad(scalar(kin)))
        dyn_grad = jax.jit(jax.grad(scalar(dyn)))
        box_grad = jax.jit(jax.grad(scalar(dyn_box)))
        recon_opts = recon_options(params)

        def dyn_recon(p, g=geometry, o=recon_opts):
            return dynamical.forward(p, g, o)

        recon_grad = jax.jit(jax.grad(scalar(dyn_recon)))
        calls = {
            "kinematical_fwd": partial(kin, params),
            "kinematical_fwd_grad": partial(kin_grad, params),
            "dynamical_fwd": partial(dyn, params),
            "dynamical_box_fwd": partial(dyn_box, params),
            "dynamical_box_fwd_grad": partial(box_grad, params),
            "dynamical_box_recon_fwd_grad": partial(recon_grad, params),
        }
        if n <= timed_grad_max:
            calls["dynamical_fwd_grad"] = partial(dyn_grad, params)
        timings = time_interleaved(calls, repeats=repeats)
        memory = {
            "kinematical_fwd": _memory_bytes(kin, params),
            "kinematical_fwd_grad": _memory_bytes(jax.grad(scalar(kin)), params),
            "dynamical_fwd": _memory_bytes(dyn, params),
            "dynamical_fwd_grad": _memory_bytes(jax.grad(scalar(dyn)), params),
            "dynamical_box_fwd": _memory_bytes(dyn_box, params),
            "dynamical_box_fwd_grad": _memory_bytes(jax.grad(scalar(dyn_box)), params),
            "dynamical_box_recon_fwd_grad": _memory_bytes(jax.grad(scalar(dyn_recon)), params),
        }
        times = {k: t.to_json() for k, t in timings.items()}
        print(
            f"dynamical N={n}: {json.dumps({'timings': times, 'memory_bytes': memory})}", flush=True
        )
        med = {k: t.median_s for k, t in timings.items()}
        entries.append(
            {
                "n": n,
                "rocking_angles": n,
                "box": box_opts.box,
                "march_points_full": dynamical.march_plan(geometry, OPTIONS).points,
                "march_points_box": dynamical.march_plan(geometry, box_opts).points,
                "timings": times,
                "memory_bytes": memory,
                "ratio_fwd": med["dynamical_fwd"] / med["kinematical_fwd"],
                "ratio_fwd_grad": (
                    med["dynamical_fwd_grad"] / med["kinematical_fwd_grad"]
                    if "dynamical_fwd_grad" in med
                    else None
                ),
                "ratio_fwd_grad_over_n": (
                    med["dynamical_fwd_grad"] / med["kinematical_fwd_grad"] / n
                    if "dynamical_fwd_grad" in med
                    else None
                ),
                "peak_bytes_in_use_so_far": peak_bytes_in_use(),  # this process, all sizes
                "ratio_box_fwd_grad_over_n": (
                    med["dynamical_box_fwd_grad"] / med["kinematical_fwd_grad"] / n
                ),
                "ratio_box_recon_fwd_grad_over_n": (
                    med["dynamical_box_recon_fwd_grad"] / med["kinematical_fwd_grad"] / n
                ),
            }
        )
    memory_only = []
    for n in memory_only_sizes:
        params, geometry = problem(n)

        def full(p, g=geometry):
            return jnp.sum(jnp.sqrt(dynamical.forward(p, g, OPTIONS) + 1e-6))

        box_opts = boxed_options(params)

        def boxed(p, g=geometry, o=box_opts):
            return jnp.sum(jnp.sqrt(dynamical.forward(p, g, o) + 1e-6))

        recon_opts = recon_options(params)

        def recon(p, g=geometry, o=recon_opts):
            return jnp.sum(jnp.sqrt(dynamical.forward(p, g, o) + 1e-6))

        # the box fits in memory and time here: timed, unlike the full grid
        timed = time_interleaved(
            {
                "dynamical_box_fwd_grad": partial(jax.jit(jax.grad(boxed)), params),
                "dynamical_box_recon_fwd_grad": partial(jax.jit(jax.grad(recon)), params),
            },
            repeats=2,
        )
        memory_only.append(
            {
                "n": n,
                "dynamical_fwd_grad": _memory_bytes(jax.grad(full), params),
                "dynamical_box_fwd_grad": _memory_bytes(jax.grad(boxed), params),
                "dynamical_box_recon_fwd_grad": _memory_bytes(jax.grad(recon), params),
                "timings": {k: t.to_json() for k, t in timed.items()},
            }
        )
    ns = [e["n"] for e in entries]
    exponents = {
        key: _fit_exponent(ns, [e["memory_bytes"][key] for e in entries])
        for key in entries[0]["memory_bytes"]
    }
    time_exponents = {
        key: _fit_exponent(ns, [e["timings"].get(key, {}).get("median_s") for e in entries])
        for key in ("kinematical_fwd", "dynamical_fwd", "dynamical_fwd_grad")
    }
    last = entries[-1]
    grad_exp = exponents["dynamical_fwd_grad"] or 3.0
    extrapolated = last["memory_bytes"]["dynamical_fwd_grad"] * (256 / last["n"]) ** grad_exp
    if memory_only:  # extrapolate from the largest size compiled, with the fitted exponent
        top = memory_only[-1]
        extrapolated = top["dynamical_fwd_grad"] * (256 / top["n"]) ** grad_exp
    table = [
        {
            "N": e["n"],
            "kin fwd ms": 1e3 * e["timings"]["kinematical_fwd"]["median_s"],
            "kin fwd+grad ms": 1e3 * e["timings"]["kinematical_fwd_grad"]["median_s"],
            "dyn fwd ms": 1e3 * e["timings"]["dynamical_fwd"]["median_s"],
            "dyn fwd+grad ms": (
                1e3 * e["timings"]["dynamical_fwd_grad"]["median_s"]
                if "dynamical_fwd_grad" in e["timings"]
                else "not run"
            ),
            "fwd+grad ratio / N": e["ratio_fwd_grad_over_n"],
            "box fwd ms": 1e3 * e["timings"]["dynamical_box_fwd"]["median_s"],
            "box fwd+grad ms": 1e3 * e["timings"]["dynamical_box_fwd_grad"]["median_s"],
            "box ratio / N": e["ratio_box_fwd_grad_over_n"],
            "box recon fwd+grad ms": 1e3 * e["timings"]["dynamical_box_recon_fwd_grad"]["median_s"],
            "box recon ratio / N": e["ratio_box_recon_fwd_grad_over_n"],
            "box fwd+grad MiB": e["memory_bytes"]["dynamical_box_fwd_grad"] / 2**20,
            "dyn fwd+grad MiB": e["memory_bytes"]["dynamical_fwd_grad"] / 2**20,
            "kin fwd+grad MiB": e["memory_bytes"]["kinematical_fwd_grad"] / 2**20,
        }
        for e in entries
    ] + [
        {
            "N": m["n"],
            "dyn fwd+grad ms": "not run",
            "box fwd+grad ms": 1e3 * m["timings"]["dynamical_box_fwd_grad"]["median_s"],
            "box recon fwd+grad ms": (
                1e3 * m["timings"]["dynamical_box_recon_fwd_grad"]["median_s"]
            ),
            "box fwd+grad MiB": m["dynamical_box_fwd_grad"] / 2**20,
            "dyn fwd+grad MiB": m["dynamical_fwd_grad"] / 2**20,
        }
        for m in memory_only
    ]
    return {
        "description": __doc__.strip().splitlines()[0],
        "options": {
            "angle_chunk": OPTIONS.angle_chunk,
            "checkpoint_block": OPTIONS.checkpoint_block,
            "points_per_extinction": OPTIONS.points_per_extinction,
            "points_per_voxel": OPTIONS.points_per_voxel,
        },
        "memory_source": "XLA compiled memory_analysis: arguments + outputs + temporaries",
        "sizes": entries,
        "memory_only": memory_only,
        "memory_exponents": exponents,
        "time_exponents": time_exponents,
        "dynamical_fwd_grad_memory_256_extrapolated_gib": extrapolated / 2**30,
        "target": {
            "fwd_grad_within_2N_of_kinematical": [
                e["ratio_fwd_grad_over_n"] <= 2 if e["ratio_fwd_grad_over_n"] else None
                for e in entries
            ],
            "box_fwd_grad_within_2N_of_kinematical": [
                e["ratio_box_fwd_grad_over_n"] <= 2 for e in entries
            ],
            "box_recon_fwd_grad_within_2N_of_kinematical": [
                e["ratio_box_recon_fwd_grad_over_n"] <= 2 for e in entries
            ],
            "fwd_grad_128_under_2_gib": {
                m["n"]: {
                    "full": m["dynamical_fwd_grad"] < 2 * 2**30,
                    "box": m["dynamical_box_fwd_grad"] < 2 * 2**30,
                }
                for m in memory_only
            },
        },
        "table": table,
    }


def quick_memory_skip(sizes: tuple[int, ...]) -> bool:
    """The quick run (QUICK_SIZES) skips the memory-only sizes."""
    return tuple(sizes) == QUICK_SIZES


def peak_bytes_in_use() -> int | None:
    """The default device's allocator peak since the process started (None if not reported)."""
    stats = jax.devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def measure_large(n: int, variant: str, repeats: int = 2) -> dict[str, Any]:
    """Forward and fwd+grad of the dynamical model at n^3, in this process (meant to be fresh).

    variant "box": with the crystal's support box; "full": the whole grid. The allocator peak
    is read after the forward runs and again after fwd+grad runs, so the second includes both.
    """
    if variant not in LARGE_VARIANTS:
        raise ValueError(f"variant must be one of {sorted(LARGE_VARIANTS)}, got {variant!r}")
    start = time.perf_counter()
    params, geometry = problem(n)
    opts = boxed_options(params) if variant == "box" else OPTIONS
    setup_s = time.perf_counter() - start

    def fwd(p):
        return dynamical.forward(p, geometry, opts)

    def loss(p):
        return jnp.sum(jnp.sqrt(fwd(p) + 1e-6))

    fwd_jit, grad_jit = jax.jit(fwd), jax.jit(jax.grad(loss))
    base = peak_bytes_in_use()
    t_fwd = time_interleaved({"fwd": partial(fwd_jit, params)}, repeats=repeats)["fwd"]
    peak_fwd = peak_bytes_in_use()
    t_grad = time_interleaved({"fwd_grad": partial(grad_jit, params)}, repeats=repeats)["fwd_grad"]
    peak_grad = peak_bytes_in_use()
    stats = jax.devices()[0].memory_stats() or {}
    return {
        "n": n,
        "variant": variant,
        "box": opts.box,
        "march_points": dynamical.march_plan(geometry, opts).points,
        "setup_s": setup_s,
        "timings": {"dynamical_fwd": t_fwd.to_json(), "dynamical_fwd_grad": t_grad.to_json()},
        "memory_bytes_compiled": {
            "dynamical_fwd": _memory_bytes(fwd, params),
            "dynamical_fwd_grad": _memory_bytes(jax.grad(loss), params),
        },
        "peak_bytes_in_use": {"before": base, "after_fwd": peak_fwd, "after_fwd_grad": peak_grad},
        "bytes_limit": stats.get("bytes_limit"),
        "device_kind": jax.devices()[0].device_kind,
    }


def large_in_subprocess(
    n: int, variant: str, repeats: int = 2, timeout_s: float = LARGE_TIMEOUT_S
) -> dict[str, Any]:
    """measure_large in a fresh Python process, so the allocator peak is this variant's own."""
    root = Path(__file__).resolve().parents[1]
    env = dict(
        os.environ,
        XLA_PYTHON_CLIENT_PREALLOCATE="false",
        XLA_PYTHON_CLIENT_MEM_FRACTION=LARGE_MEM_FRACTION,
    )
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(root), env.get("PYTHONPATH")) if p)
    code = (
        "import json, sys; from benchmarks.dynamical import measure_large; "
        "print(json.dumps(measure_large(int(sys.argv[1]), sys.argv[2], int(sys.argv[3]))), "
        "flush=True)"
    )
    command = [sys.executable, "-c", code, str(n), variant, str(repeats)]
    start = time.perf_counter()
    try:
        out = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=timeout_s
        )
    except subprocess.TimeoutExpired:
        return {"n": n, "variant": variant, "error": f"timed out after {timeout_s:.0f} s"}
    wall = time.perf_counter() - start
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode != 0 or not lines:
        tail = out.stderr.strip().splitlines()[-5:]
        return {"n": n, "variant": variant, "error": f"exit {out.returncode}", "stderr": tail}
    return {**json.loads(lines[-1]), "process_wall_s": wall}


def large_rows(large: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Printed rows of the large runs: times, measured peak and compiled estimate."""
    rows = []
    for r in large:
        if "error" in r:
            rows.append({"N": r["n"], "variant": r["variant"], "error": r["error"]})
            continue
        peak = r["peak_bytes_in_use"]["after_fwd_grad"]
        rows.append(
            {
                "N": r["n"],
                "variant": r["variant"],
                "fwd ms": 1e3 * r["timings"]["dynamical_fwd"]["median_s"],
                "fwd+grad ms": 1e3 * r["timings"]["dynamical_fwd_grad"]["median_s"],
                "peak GiB": peak / 2**30 if peak is not None else None,
                "compiled fwd+grad GiB": r["memory_bytes_compiled"]["dynamical_fwd_grad"] / 2**30,
            }
        )
    return rows


def fused_march(n: int = FUSED_SIZE, repeats: int = 3) -> dict[str, Any]:
    """fwd+grad at n^3 with march_kernel "xla" and "pallas" side by side, on a GPU only.

    The reconstruction's options (the support box, no angle chunks or checkpoints), so that
    both marches keep no history; also the largest gradient difference between them.
    """
    if jax.default_backend() != "gpu":
        return {
            "fused_march": "not measured",
            "reason": "no GPU on this machine (Pallas interpret mode on CPU is a correctness "
            "check, not a speed)",
        }
    params, geometry = problem(n)
    base = recon_options(params)
    grads = {}
    for kernel in ("xla", "pallas"):
        opts = dataclasses.replace(base, march_kernel=kernel)

        def loss(p, o=opts):
            return jnp.sum(jnp.sqrt(dynamical.forward(p, geometry, o) + 1e-6))

        grads[kernel] = jax.jit(jax.grad(loss))
    timings = time_interleaved(
        {f"{k}_fwd_grad": partial(g, params) for k, g in grads.items()}, repeats=repeats
    )
    a, b = (grads[k](params) for k in ("xla", "pallas"))
    diff = max(
        float(jnp.max(jnp.abs(x - y)) / jnp.max(jnp.abs(x)))
        for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True)
    )
    times = {k: t.to_json() for k, t in timings.items()}
    return {
        "n": n,
        "box": base.box,
        "march_points": dynamical.march_plan(geometry, base).points,
        "timings": times,
        "speedup_pallas_over_xla": (
            timings["xla_fwd_grad"].median_s / timings["pallas_fwd_grad"].median_s
        ),
        "grad_max_rel_difference": diff,
        "device_kind": jax.devices()[0].device_kind,
    }


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point: N = 16, 32, 64 (quick: 16, 32); on a GPU 32, 64, 128 and 256.

    Every run also holds "fused_march" (fused_march: measured on a GPU only).
    """
    if quick:
        return {**measure(QUICK_SIZES, repeats=2), "fused_march": fused_march(FUSED_QUICK, 2)}
    if jax.default_backend() != "gpu":
        return {**measure(SIZES, repeats=3), "fused_march": fused_march()}
    large = []  # first, while this process holds next to nothing on the GPU
    for n in LARGE_SIZES:
        for variant, repeats in LARGE_VARIANTS.items():
            large.append(large_in_subprocess(n, variant, repeats))
            print(f"dynamical large: {json.dumps(large[-1])}", flush=True)  # kept if killed
    result = measure(GPU_SIZES, repeats=3, timed_grad_max=max(GPU_SIZES), memory_only_sizes=())
    result["large"] = large
    result["large_note"] = (
        "each variant in a fresh process, run before the timed sizes; peak_bytes_in_use is the "
        "allocator's measured peak (XLA_PYTHON_CLIENT_PREALLOCATE=false, "
        f"XLA_PYTHON_CLIENT_MEM_FRACTION={LARGE_MEM_FRACTION}); memory_bytes_compiled is XLA's "
        "memory_analysis estimate; the parent's XLA_PYTHON_CLIENT_PREALLOCATE was "
        f"{os.environ.get('XLA_PYTHON_CLIENT_PREALLOCATE', 'unset (true)')}"
    )
    result["table"] = result["table"] + large_rows(large)
    result["fused_march"] = fused_march()
    return result


def plot(result: dict[str, Any]) -> Figure | None:
    """Time and memory of both models against N, log-log."""
    entries = result.get("sizes") or []
    if not entries:
        return None
    ns = [e["n"] for e in entries]
    figure = Figure(figsize=(11, 4.5), layout="constrained")
    left, right = figure.subplots(1, 2)
    for key in ("kinematical_fwd", "kinematical_fwd_grad", "dynamical_fwd", "dynamical_fwd_grad"):
        pts = [
            (n, e["timings"][key]["median_s"])
            for n, e in zip(ns, entries, strict=True)
            if key in e["timings"]
        ]
        if pts:
            left.loglog(*zip(*pts, strict=True), marker="o", label=key)
        right.loglog(ns, [e["memory_bytes"][key] / 2**20 for e in entries], marker="o", label=key)
    for r in result.get("large") or []:  # GPU runs: 256^3 in fresh processes
        if "error" in r:
            continue
        marker = "s" if r["variant"] == "full" else "D"
        for key, fill in (("dynamical_fwd", "none"), ("dynamical_fwd_grad", None)):
            t = r["timings"][key]["median_s"]
            left.loglog(
                [r["n"]], [t], marker=marker, mfc=fill, ls="", label=f"{r['variant']} {key}"
            )
        peak = r["peak_bytes_in_use"]["after_fwd_grad"]
        if peak is not None:
            label = f"{r['variant']} dynamical_fwd_grad, measured peak"
            right.loglog([r["n"]], [peak / 2**20], marker=marker, ls="", label=label)
    left.set_xlabel("N (N^3 voxels, N rocking angles)")
    left.set_ylabel("time (s)")
    left.legend()
    right.set_xlabel("N")
    right.set_ylabel("compiled memory estimate (MiB)")
    right.legend()
    return figure
