"""Memory and time of one task against its grid: the constants `dyncdi sweep --dry-run` and the
memory refusal use (dyncdi_hpc/schedule/footprint.py), measured.

Each size runs in a fresh Python process (one JAX client, nothing cached): the peak resident
memory above the process's baseline after imports (getrusage ru_maxrss), the seconds per
phase-retrieval iteration and per AD step, for the kinematical and the dynamical model, and
the driver's peak while it simulates a dataset of that size.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from dyncdi_hpc.schedule.footprint import (
    AD_BYTES_PER_VOXEL,
    AD_S_PER_VOXEL_STEP,
    BASE_BYTES,
    FIXED_BYTES,
    PR_S_PER_VOXEL_ITER,
    SIMULATE_BYTES_PER_VOXEL,
)

PROBE = r"""
import json, resource, sys, time
import numpy as np
import jax
from dyncdi_hpc.config import CrystalConfig, GeometryConfig, ReconParams, SimulateConfig
from dyncdi_hpc.recon.pipeline import reconstruct

n, model, what, path = int(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
def rss():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
geometry_cfg = GeometryConfig(energy_kev=9.0, shape=(n, n, n), rocking_step_deg=0.16 / n,
                              pixel_size_um=55.0, detector_distance_m=1.0)
geometry = geometry_cfg.build()
if what == "simulate":
    from dyncdi_hpc.data.simulate import simulate
    size = 0.35 * min(geometry.field_of_view_nm)  # oversampling about 3 on every axis
    cfg = SimulateConfig(geometry=geometry_cfg, crystal=CrystalConfig(size_nm=size))
    base = rss()
    start = time.perf_counter()
    sim = simulate(cfg, geometry)
    seconds = time.perf_counter() - start
    np.save(path, np.asarray(sim.intensity, np.float32))
    print(json.dumps({"base": base, "peak": rss(), "s": seconds}))
    sys.exit()
intensity = np.load(path)
base = rss()
out = {}
for label, recipe, steps in (("pr", "20*ER", 0), ("ad", "2*ER", 6)):
    params = ReconParams(recipe=recipe, ad_steps=steps, model=model, log_every=1000)
    reconstruct(intensity, None, geometry, params, key=jax.random.key(0))  # compile
    start = time.perf_counter()
    reconstruct(intensity, None, geometry, params, key=jax.random.key(1))
    out[label] = time.perf_counter() - start
print(json.dumps({"base": base, "peak": rss(), "pr_iter_s": out["pr"] / 20,
                  "ad_step_s": (out["ad"] - 2 * out["pr"] / 20) / 6}))
"""


def probe(n: int, model: str, what: str, path: Path) -> dict[str, float]:
    """One measurement in a fresh process (see the module doc); "simulate" writes the
    intensities that "task" reads to path (.npy)."""
    run = subprocess.run(
        [sys.executable, "-c", PROBE, str(n), model, what, str(path)],
        capture_output=True,
        text=True,
        check=True,
        env={"XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false", "PATH": "/usr/bin:/bin"},
    )
    return json.loads(run.stdout.strip().splitlines()[-1])


def run(quick: bool) -> dict[str, Any]:
    """Registered entry point (quick: 48^3 and 64^3; else up to 128^3, dynamical to 96^3)."""
    sizes = (48, 64) if quick else (48, 64, 96, 128)
    rows, simulate = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for n in sizes:
            path = Path(tmp) / f"{n}.npy"
            m = probe(n, "kinematical", "simulate", path)
            simulate.append(
                {"n": n, "bytes_per_voxel": (m["peak"] - m["base"]) / n**3, "s": m["s"]}
            )
            for model in ("kinematical", "dynamical"):
                if model == "dynamical" and n > 96:
                    continue
                m = probe(n, model, "task", path)
                rows.append(
                    {
                        "model": model,
                        "n": n,
                        "task_peak_mib": (m["peak"] - m["base"]) / 2**20,
                        "bytes_per_voxel": (m["peak"] - m["base"]) / n**3,
                        "pr_s_per_voxel_iter": m["pr_iter_s"] / n**3,
                        "ad_s_per_voxel_step": m["ad_step_s"] / n**3,
                    }
                )
    largest = {
        model: max((r for r in rows if r["model"] == model), key=lambda r: r["n"])
        for model in ("kinematical", "dynamical")
    }
    table = [
        {
            "measure": f"{r['model']} {r['n']}^3",
            "peak MiB": round(r["task_peak_mib"], 1),
            "B/voxel": round(r["bytes_per_voxel"]),
            "PR ns/voxel/iter": round(1e9 * r["pr_s_per_voxel_iter"], 2),
            "AD ns/voxel/step": round(1e9 * r["ad_s_per_voxel_step"], 2),
        }
        for r in rows
    ]
    return {
        "description": __doc__.strip().splitlines()[0],
        "tasks": rows,
        "simulate": simulate,
        "constants_in_code": {
            "BASE_BYTES": BASE_BYTES,
            "FIXED_BYTES": FIXED_BYTES,
            "AD_BYTES_PER_VOXEL": AD_BYTES_PER_VOXEL,
            "SIMULATE_BYTES_PER_VOXEL": SIMULATE_BYTES_PER_VOXEL,
            "PR_S_PER_VOXEL_ITER": PR_S_PER_VOXEL_ITER,
            "AD_S_PER_VOXEL_STEP": AD_S_PER_VOXEL_STEP,
        },
        "largest_measured": {
            k: {"bytes_per_voxel": v["bytes_per_voxel"], "n": v["n"]} for k, v in largest.items()
        },
        "simulate_bytes_per_voxel_max": float(np.max([s["bytes_per_voxel"] for s in simulate])),
        "table": table,
    }
