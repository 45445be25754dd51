"""Performance benchmarks of dyncdi-hpc: `python -m benchmarks run [--quick] [--only NAME]`.

Results go to benchmarks/results/NAME.json; `python -m benchmarks plot` draws them as PNGs.
To add a benchmark, write a module with `run(quick: bool) -> dict` (see harness.py for what
the dict holds) and register it in BENCHMARKS; register `plot(result) -> Figure | None` in
PLOTS if it can be drawn.
"""

from __future__ import annotations

from . import cohere, distributed, dynamical, kernels
from .harness import Benchmark, Plot

BENCHMARKS: dict[str, Benchmark] = {
    "kernels": kernels.run,
    "dynamical": dynamical.run,
    "distributed": distributed.run,
    "cohere": cohere.run,
}

PLOTS: dict[str, Plot] = {
    "kernels": kernels.plot,
    "dynamical": dynamical.plot,
    "cohere": cohere.plot,
}

__all__ = ["BENCHMARKS", "PLOTS"]
