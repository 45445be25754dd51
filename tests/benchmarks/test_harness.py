"""The benchmark harness end to end on a tiny kernels run (16^3, one repeat): JSON fields,
figures, the command line. Timings are never asserted, only their presence and shape."""

from __future__ import annotations

import json
import math
from io import StringIO
from pathlib import Path

import pytest
from click.testing import CliRunner
from rich.console import Console

from benchmarks import BENCHMARKS, PLOTS, harness, kernels
from benchmarks.__main__ import cli

N = 16
INNER = 2


@pytest.fixture(scope="module")
def results_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A results folder holding kernels.json from one tiny run through the harness."""
    folder = tmp_path_factory.mktemp("results")
    tiny = {"kernels": lambda quick: kernels.measure((N,), repeats=1, inner=INNER)}
    paths = harness.run_benchmarks(
        tiny, quick=True, results_dir=folder, console=Console(file=StringIO())
    )
    assert paths == [folder / "kernels.json"]
    return folder


@pytest.fixture(scope="module")
def result(results_dir: Path) -> dict:
    return json.loads((results_dir / "kernels.json").read_text())


@pytest.mark.slow
def test_metadata(result: dict) -> None:
    meta = result["metadata"]
    for key in ("date", "machine", "cpu_model", "cpu_count", "jax_backend", "device_kind"):
        assert meta[key], key
    assert set(meta["versions"]) >= {"jax", "jaxlib", "numpy"}
    cpu = meta["cpu"]
    assert set(cpu) == {"isa", "caches", "steal_fraction_since_boot", "memory_bandwidth_gbs"}
    assert set(cpu["isa"]) <= set(harness.ISA_FLAGS)
    assert 0.1 < cpu["memory_bandwidth_gbs"] < 1e4
    assert result["benchmark"] == "kernels"
    assert result["quick"] is True


def test_kernel_timings(result: dict) -> None:
    assert result["params"]["sizes"] == [N]
    (entry,) = result["sizes"]
    assert entry["shape"] == [N, N, N]
    assert entry["dtype"] == "complex64"
    assert min(entry["oversampling"]) >= 2
    assert set(entry["kernels"]) == set(kernels.KERNELS)
    for name, k in entry["kernels"].items():
        assert len(k["raw_s"]) == 1, name
        assert k["inner"] == (INNER if name in kernels.LOOPED else 1), name
        values = (k["median_s"], k["min_s"], k["max_s"], k["cpu_over_wall"])
        assert all(math.isfinite(v) for v in values), name
    assert entry["kernels"]["fft_pair"]["hlo_fft_ops"] == 2


def test_ratios_and_target(result: dict) -> None:
    (entry,) = result["sizes"]
    ratios, target = entry["ratios"], entry["target"]
    assert ratios["fft_pair"] == 1.0
    assert ratios["ad_vs_2x_fft_pair"] == pytest.approx(ratios["ad_vs_fft_pair"] / 2)
    pairs = entry["kernels"]["ad"]["hlo_fft_ops"] / 2
    assert target["ad_reference_fft_pairs"] == pairs
    assert ratios["ad_vs_needed_ffts"] == pytest.approx(ratios["ad"] / pairs)
    for key in ("er_met", "hio_met", "er_hio_met", "ad_met", "ad_met_vs_2x_fft_pair"):
        assert isinstance(target[key], bool), key
    assert target["er_hio_met"] == (target["er_met"] and target["hio_met"])
    assert "adjoint" in target["ad_reference"]
    assert {row["kernel"] for row in result["table"]} == set(kernels.KERNELS)


def test_time_interleaved_excludes_warmup() -> None:
    calls = {"a": 0, "b": 0}

    def counter(name: str):
        def call() -> int:
            calls[name] += 1
            return calls[name]

        return call

    timings = harness.time_interleaved(
        {name: counter(name) for name in calls}, repeats=3, inner={"a": 4}, warmup=2
    )
    assert calls == {"a": 5, "b": 5}
    assert len(timings["a"].raw_s) == len(timings["b"].raw_s) == len(timings["a"].cpu_s) == 3
    assert (timings["a"].inner, timings["b"].inner) == (4, 1)


def test_plot_skips_what_it_cannot_draw(results_dir: Path) -> None:
    (results_dir / "other.json").write_text(json.dumps({"benchmark": "other"}))
    (results_dir / "broken.json").write_text("{not json")
    out = StringIO()
    paths = harness.plot_results(PLOTS, results_dir=results_dir, console=Console(file=out))
    assert paths == [results_dir / "kernels.png"]
    assert (results_dir / "kernels.png").stat().st_size > 0
    assert "other.json: benchmark 'other' has no plot" in out.getvalue()
    assert "broken.json" in out.getvalue()


def test_cli(results_dir: Path) -> None:
    runner = CliRunner()
    assert "kernels" in BENCHMARKS
    bad = runner.invoke(cli, ["run", "--only", "nope", "--results-dir", str(results_dir)])
    assert bad.exit_code == 2
    assert "nope" in bad.output
    ok = runner.invoke(cli, ["plot", "--results-dir", str(results_dir)])
    assert ok.exit_code == 0, ok.output
    assert "kernels.png" in ok.output
