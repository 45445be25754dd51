"""Performance benchmarks of dyncdi-hpc: `python -m benchmarks run [--quick] [--only NAME]`.

Results go to benchmarks/results/NAME.json; `python -m benchmarks plot` draws them as PNGs.
To add a benchmark, write a module with `run(quick: bool) -> dict` (see harness.py for what
the dict holds) and register it in BENCHMARKS; register `plot(result) -> Figure | None` in
PLOTS if it can be drawn.
"""

from __future__ import annotations

from . import (
    cohere,
    distributed,
    dynamical,
    footprint,
    kernels,
    quality,
    real_34idc,
    real_34idc_dynamical,
)
from .harness import Benchmark, Plot

BENCHMARKS: dict[str, Benchmark] = {
    "kernels": kernels.run,
    "dynamical": dynamical.run,
    "distributed": distributed.run,
    "footprint": footprint.run,
    "cohere": cohere.run,
    "thick_crystal": quality.run_thick_crystal,
    "sizes": quality.run_sizes,
    "thick_crystal64": quality.run_thick_crystal64,
    "sizes64": quality.run_sizes64,
    "real_34idc": real_34idc.run,
    "real_34idc_dynamical": real_34idc_dynamical.run,
}

# Each runs a whole workflow sweep (minutes to tens of minutes): `run --quick` without --only
# leaves them out so that it stays under 10 minutes; `--only NAME [--quick]` runs one.
WORKFLOW_BENCHMARKS = (
    "thick_crystal",
    "sizes",
    "thick_crystal64",
    "sizes64",
    "real_34idc",
    "real_34idc_dynamical",
)

PLOTS: dict[str, Plot] = {
    "kernels": kernels.plot,
    "dynamical": dynamical.plot,
    "cohere": cohere.plot,
    "sizes": quality.plot_sizes,
    "sizes64": quality.plot_sizes,
    "real_34idc": real_34idc.plot,
    "real_34idc_dynamical": real_34idc_dynamical.plot,
}

__all__ = ["BENCHMARKS", "PLOTS", "WORKFLOW_BENCHMARKS"]
