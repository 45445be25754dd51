"""Shared benchmark machinery: timing, machine metadata, JSON results, tables and figures.

A benchmark is a function `run(quick: bool) -> dict` registered by name in
`benchmarks.BENCHMARKS`. Its dict holds whatever the benchmark measures, plus a `table`: a
list of flat rows (column name -> number, text or bool) that is printed after the run. The
harness adds the machine metadata and writes `results/NAME.json`. A benchmark that can be
drawn also registers `plot(result: dict) -> Figure | None` in `benchmarks.PLOTS`.
"""

from __future__ import annotations

import gc
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, NamedTuple

import jax
from matplotlib.figure import Figure
from rich.console import Console
from rich.table import Table

from dyncdi_hpc.provenance import now_iso, package_version

Benchmark = Callable[[bool], dict[str, Any]]
Plot = Callable[[dict[str, Any]], Figure | None]

RESULTS_DIR = Path(__file__).resolve().parent / "results"
VERSIONED = ("jax", "jaxlib", "numpy", "optax", "dyncdi-hpc")
ENVIRONMENT = (
    "XLA_FLAGS",
    "JAX_PLATFORMS",
    "CUDA_VISIBLE_DEVICES",
    "OMP_NUM_THREADS",
    "XLA_PYTHON_CLIENT_PREALLOCATE",
    "XLA_PYTHON_CLIENT_MEM_FRACTION",
)


class Timing(NamedTuple):
    """Wall-clock times (s) of the timed calls, each running `inner` iterations of a kernel."""

    raw_s: tuple[float, ...]
    inner: int
    first_call_s: float | None
    cpu_s: tuple[float, ...] = ()

    @property
    def median_s(self) -> float:
        """Median time of one iteration (s): median call time divided by inner."""
        return statistics.median(self.raw_s) / self.inner

    def to_json(self) -> dict[str, Any]:
        """Raw call times and per-iteration median, min and max (s)."""
        return {
            "inner": self.inner,
            "raw_s": list(self.raw_s),
            "median_s": self.median_s,
            "min_s": min(self.raw_s) / self.inner,
            "max_s": max(self.raw_s) / self.inner,
            "first_call_s": self.first_call_s,
            # Process CPU time over wall time of the timed calls: about the number of cores
            # kept busy (1 = single-threaded, or the other cores were taken by other work).
            "cpu_over_wall": (
                sum(self.cpu_s) / sum(self.raw_s) if self.cpu_s and sum(self.raw_s) > 0 else None
            ),
        }


def time_interleaved(
    calls: Mapping[str, Callable[[], Any]],
    *,
    repeats: int,
    inner: Mapping[str, int] | None = None,
    warmup: int = 1,
) -> dict[str, Timing]:
    """Time several calls round-robin, so slow drifts of the machine hit them all alike.

    Each call runs `warmup` times untimed first (compilation and first-touch allocation),
    then `repeats` timed times; every timed call ends with jax.block_until_ready on its result.
    `inner[name]` is how many kernel iterations one call of `name` runs (default 1).
    """
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    inner = dict(inner or {})
    first: dict[str, float] = {}
    for name, call in calls.items():
        for i in range(warmup):
            start = time.perf_counter()
            jax.block_until_ready(call())
            if i == 0:
                first[name] = time.perf_counter() - start
    raw: dict[str, list[float]] = {name: [] for name in calls}
    cpu: dict[str, list[float]] = {name: [] for name in calls}
    gc.collect()
    for _ in range(repeats):
        for name, call in calls.items():
            cpu_start, start = time.process_time(), time.perf_counter()
            jax.block_until_ready(call())
            raw[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - cpu_start)
    return {
        name: Timing(
            tuple(raw[name]),
            inner.get(name, 1),
            first.get(name),
            tuple(cpu[name]),
        )
        for name in calls
    }


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _git_commit() -> str | None:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except OSError:
        return None
    return out.stdout.strip() if out.returncode == 0 else None


# instruction sets that decide XLA's and the FFT's vector width: the same code is up to several
# times faster with AVX-512 than with AVX2 (issue 17: one machine's figures doubled on another)
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_fp16", "amx_tile")


def _cpu_caches() -> dict[str, str]:
    """The first CPU's caches, {"L1d": "48K", "L2": "2048K", ...} (Linux sysfs; else {})."""
    caches = {}
    for index in sorted(Path("/sys/devices/system/cpu/cpu0/cache").glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        suffix = {"Data": "d", "Instruction": "i"}.get(kind, "")
        caches[f"L{level}{suffix}"] = size
    return caches


def _cpu_flags() -> list[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [f for f in ISA_FLAGS if f in present]
    except OSError:
        pass
    return []


def _steal_fraction() -> float | None:
    """Share of CPU time since boot that the hypervisor gave to other guests (/proc/stat)."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except (OSError, IndexError):
        return None
    ticks = [int(v) for v in fields[:8]]
    return ticks[7] / sum(ticks) if len(ticks) == 8 and sum(ticks) else None


def memory_bandwidth_gbs(megabytes: int = 256, repeats: int = 5) -> float:
    """Best of `repeats` numpy copies of a `megabytes` array, as GB/s (read + write); larger
    than most last-level caches (300 MB on some server CPUs: then partly a cache figure)."""
    import numpy as np

    src = np.ones(megabytes * 2**20 // 8)
    dst = np.empty_like(src)
    best = math.inf
    for _ in range(repeats):
        start = time.perf_counter()
        np.copyto(dst, src)
        best = min(best, time.perf_counter() - start)
    return 2 * src.nbytes / best / 1e9


def cpu_facts() -> dict[str, Any]:
    """What explains a CPU figure across machines: vector ISA, caches, steal, memory speed."""
    return {
        "isa": _cpu_flags(),
        "caches": _cpu_caches(),
        "steal_fraction_since_boot": _steal_fraction(),
        "memory_bandwidth_gbs": memory_bandwidth_gbs(),
    }


def _loadavg() -> list[float] | None:
    return list(os.getloadavg()) if hasattr(os, "getloadavg") else None


def metadata() -> dict[str, Any]:
    """Where and with what a benchmark ran: host, CPU, JAX backend and device, versions, date."""
    devices = jax.devices()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {
        "date": now_iso(),
        "machine": platform.node(),
        "arch": platform.machine(),
        "platform": platform.platform(),
        "cpu_model": _cpu_model(),
        "cpu": cpu_facts(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": cores,
        "jax_backend": jax.default_backend(),
        "device_kind": devices[0].device_kind,
        "device_count": len(devices),
        "python": platform.python_version(),
        "versions": {name: package_version(name) for name in VERSIONED},
        "environment": {k: os.environ[k] for k in ENVIRONMENT if k in os.environ},
        "loadavg": _loadavg(),
        "git_commit": _git_commit(),
    }


def write_result(name: str, result: Mapping[str, Any], results_dir: Path) -> Path:
    """Write one benchmark's result to results_dir/NAME.json (atomically) and return the path."""
    results_dir.mkdir(parents=True, exist_ok=True)
    path = results_dir / f"{name}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(result, indent=2) + "\n")
    tmp.replace(path)
    return path


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        return "[green]yes[/]" if value else "[red]no[/]"
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.4g}"
    return "" if value is None else str(value)


def print_table(title: str, rows: Iterable[Mapping[str, Any]], console: Console) -> None:
    """Print flat rows as a rich table; columns in first-seen order, missing cells blank."""
    rows = list(rows)
    columns = list(dict.fromkeys(key for row in rows for key in row))
    table = Table(title=title)
    for column in columns:
        table.add_column(column, justify="left" if column in ("size", "kernel") else "right")
    for row in rows:
        table.add_row(*(_cell(row.get(column)) for column in columns))
    console.print(table)


def run_benchmarks(
    benchmarks: Mapping[str, Benchmark],
    *,
    quick: bool,
    results_dir: Path = RESULTS_DIR,
    console: Console | None = None,
) -> list[Path]:
    """Run each benchmark, write results_dir/NAME.json with metadata, print its table."""
    console = console or Console(width=None if sys.stdout.isatty() else 120)
    paths = []
    for name, benchmark in benchmarks.items():
        console.print(f"[bold]{name}[/] ({'quick' if quick else 'full'}) ...")
        load = _loadavg()
        if load and load[0] >= 0.5:
            # Other processes share the cores: the medians will be slower and noisier.
            console.print(f"[yellow]the machine is busy (1-minute load {load[0]:.2f})[/]")
        start = time.perf_counter()
        result = benchmark(quick)
        record = {
            "benchmark": name,
            "quick": quick,
            "wall_s": time.perf_counter() - start,
            "loadavg_at_start": load,
            "metadata": metadata(),
            **result,
        }
        path = write_result(name, record, results_dir)
        print_table(
            f"{name} ({record['metadata']['device_kind']})", result.get("table", []), console
        )
        console.print(f"wrote {path} in {record['wall_s']:.1f} s")
        paths.append(path)
    return paths


def plot_results(
    plots: Mapping[str, Plot], *, results_dir: Path = RESULTS_DIR, console: Console | None = None
) -> list[Path]:
    """One PNG per results_dir/NAME.json whose benchmark has a plot; the others are skipped."""
    console = console or Console()
    paths = []
    for source in sorted(results_dir.glob("*.json")):
        try:
            result = json.loads(source.read_text())
        except (OSError, json.JSONDecodeError) as err:
            console.print(f"skipped {source.name}: not readable JSON ({err})", markup=False)
            continue
        name = result.get("benchmark", source.stem) if isinstance(result, dict) else source.stem
        plot = plots.get(name)
        if plot is None:
            console.print(f"skipped {source.name}: benchmark {name!r} has no plot", markup=False)
            continue
        figure = plot(result)
        if figure is None:
            console.print(f"skipped {source.name}: nothing to plot", markup=False)
            continue
        path = results_dir / f"{name}.png"
        figure.savefig(path, dpi=120)
        console.print(f"wrote {path}", markup=False)
        paths.append(path)
    return paths
