"""Cost of the dynamical forward model against the kinematical one: time and memory.

For each grid size N (N^3 voxels, N rocking angles) both models run forward and forward +
gradient of a Poisson-like scalar on the same crystal, timed side by side; memory is XLA's
compiled estimate (arguments + outputs + temporaries) from `memory_analysis()`, so sizes that
would not fit in this machine's memory can still be sized. Scaling exponents are fitted over
the sizes measured, and the dynamical model's memory is extrapolated to 256^3. The dynamical
model runs with OPTIONS (angle chunks and checkpoint blocks, for memory) on the full grid and
in the crystal's box, and with a reconstruction's options (the box alone, "box recon").
"""

from __future__ import annotations

import dataclasses
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure

from dyncdi_hpc.config import CrystalConfig, GeometryConfig, SimulateConfig
from dyncdi_hpc.data.simulate import simulate
from dyncdi_hpc.physics import dynamical3d, kinematic
from dyncdi_hpc.physics.kinematic import CrystalParams

from .harness import time_interleaved

SIZES = (16, 32, 64)
QUICK_SIZES = (16, 32)
MEMORY_ONLY_SIZES = (128,)  # compiled for memory_analysis only
TIMED_GRAD_MAX = 64  # fwd+grad of the dynamical model is only compiled (not run) above this
OPTIONS = dynamical3d.DynamicalOptions(angle_chunk=8, checkpoint_block=8)
SUPPORT_THRESHOLD = 0.01  # the static box: voxels with S above this, grown by one voxel


def boxed_options(params: CrystalParams) -> dynamical3d.DynamicalOptions:
    """OPTIONS with the crystal's static bounding box (dynamical3d.support_box)."""
    mask = np.asarray(jax.nn.sigmoid(params.logits)) > SUPPORT_THRESHOLD
    return dataclasses.replace(OPTIONS, box=dynamical3d.support_box(mask, margin=1))


def recon_options(params: CrystalParams) -> dynamical3d.DynamicalOptions:
    """The options a reconstruction uses (recon/pipeline.py): the box, no angle chunks."""
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


def measure(sizes: tuple[int, ...], repeats: int) -> dict[str, Any]:
    """Time and memory of both models at each size (N^3 voxels, N rocking angles)."""
    entries = []
    for n in sizes:
        params, geometry = problem(n)

        def kin(p, g=geometry):
            return kinematic.forward(p, g)

        def dyn(p, g=geometry):
            return dynamical3d.forward(p, g, OPTIONS)

        box_opts = boxed_options(params)

        def dyn_box(p, g=geometry, o=box_opts):
            return dynamical3d.forward(p, g, o)

        def scalar(model):
            return lambda p: jnp.sum(jnp.sqrt(model(p) + 1e-6))

        kin_grad = jax.jit(jax.grad(scalar(kin)))
        dyn_grad = jax.jit(jax.grad(scalar(dyn)))
        box_grad = jax.jit(jax.grad(scalar(dyn_box)))
        recon_opts = recon_options(params)

        def dyn_recon(p, g=geometry, o=recon_opts):
            return dynamical3d.forward(p, g, o)

        recon_grad = jax.jit(jax.grad(scalar(dyn_recon)))
        calls = {
            "kinematical_fwd": partial(kin, params),
            "kinematical_fwd_grad": partial(kin_grad, params),
            "dynamical_fwd": partial(dyn, params),
            "dynamical_box_fwd": partial(dyn_box, params),
            "dynamical_box_fwd_grad": partial(box_grad, params),
            "dynamical_box_recon_fwd_grad": partial(recon_grad, params),
        }
        if n <= TIMED_GRAD_MAX:
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
        med = {k: t.median_s for k, t in timings.items()}
        entries.append(
            {
                "n": n,
                "rocking_angles": n,
                "box": box_opts.box,
                "march_points_full": dynamical3d.march_plan(geometry, OPTIONS).points,
                "march_points_box": dynamical3d.march_plan(geometry, box_opts).points,
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
                "ratio_box_fwd_grad_over_n": (
                    med["dynamical_box_fwd_grad"] / med["kinematical_fwd_grad"] / n
                ),
                "ratio_box_recon_fwd_grad_over_n": (
                    med["dynamical_box_recon_fwd_grad"] / med["kinematical_fwd_grad"] / n
                ),
            }
        )
    memory_only = []
    for n in () if quick_memory_skip(sizes) else MEMORY_ONLY_SIZES:
        params, geometry = problem(n)

        def full(p, g=geometry):
            return jnp.sum(jnp.sqrt(dynamical3d.forward(p, g, OPTIONS) + 1e-6))

        box_opts = boxed_options(params)

        def boxed(p, g=geometry, o=box_opts):
            return jnp.sum(jnp.sqrt(dynamical3d.forward(p, g, o) + 1e-6))

        recon_opts = recon_options(params)

        def recon(p, g=geometry, o=recon_opts):
            return jnp.sum(jnp.sqrt(dynamical3d.forward(p, g, o) + 1e-6))

        memory_only.append(
            {
                "n": n,
                "dynamical_fwd_grad": _memory_bytes(jax.grad(full), params),
                "dynamical_box_fwd_grad": _memory_bytes(jax.grad(boxed), params),
                "dynamical_box_recon_fwd_grad": _memory_bytes(jax.grad(recon), params),
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


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point: N = 16, 32, 64 (quick: 16, 32)."""
    return measure(QUICK_SIZES if quick else SIZES, repeats=2 if quick else 3)


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
    left.set_xlabel("N (N^3 voxels, N rocking angles)")
    left.set_ylabel("time (s)")
    left.legend()
    right.set_xlabel("N")
    right.set_ylabel("compiled memory estimate (MiB)")
    right.legend()
    return figure
