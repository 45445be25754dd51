"""The cohere comparison's helpers on synthetic data; none of them needs cohere-core."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.figure import Figure

from benchmarks import BENCHMARKS, PLOTS
from benchmarks import cohere as bench
from dyncdi_hpc.config import parse_recipe


def test_registered() -> None:
    assert BENCHMARKS["cohere"] is bench.run
    assert PLOTS["cohere"] is bench.plot
    assert set(bench.QUICK_SIZES) == {64} and set(bench.SIZES) == {64, 128}


def test_chunks_end_on_multiples_and_keep_the_recipe() -> None:
    blocks = parse_recipe("2*(30*ER+170*HIO)+100*ER")
    plan = bench.chunks(blocks, 20)
    assert [c.end for c in plan] == list(range(20, 501, 20))
    assert plan[1].pieces == (("ER", 10), ("HIO", 10))
    flat = [name for c in plan for name, n in c.pieces for _ in range(n)]
    assert flat == [name for name, n in blocks for _ in range(n)]
    assert bench.recipe_of(plan[:2]) == "20*ER+10*ER+10*HIO"
    assert [c.end for c in bench.chunks((("HIO", 50),), 20)] == [20, 40, 50]
    with pytest.raises(ValueError, match="every"):
        bench.chunks(blocks, 0)


def test_first_reach_and_common_target() -> None:
    its = [0, 20, 40, 60]
    assert bench.first_reach(its, [1.0, 0.5, 0.19, 0.1], 0.2) == 40
    assert bench.first_reach(its, [1.0, 0.5, 0.3, 0.25], 0.2) is None
    assert bench.common_target(0.1, 0.15) == 0.2
    assert bench.common_target(0.1, 0.3) == 0.3
    assert bench.common_target(0.1, 0.15, None) == 0.15


def test_time_to_error_and_summary() -> None:
    its = list(range(0, 201, 20))
    fast = np.linspace(1.0, 0.05, len(its))  # reaches 0.2 at 180
    slow = np.linspace(1.0, 0.25, len(its))  # never reaches 0.2: target becomes 0.25
    both = bench.time_to_error(
        {"ours": (its, fast), "cohere": (its, fast)}, {"ours": 1.0, "cohere": 4.0}
    )
    assert both["target"] == 0.2
    assert both["iterations"] == {"ours": 180, "cohere": 180}
    assert both["time_s"] == {"ours": 180.0, "cohere": 720.0}
    worse = bench.time_to_error(
        {"ours": (its, fast), "cohere": (its, slow)}, {"ours": 1.0, "cohere": 2.0}
    )
    assert worse["target"] == pytest.approx(0.25)
    assert worse["iterations"]["cohere"] == 200
    assert worse["iterations"]["ours"] < 200
    summary = bench.summarise([both, worse])
    assert summary["ours_time_to_error_s"] == pytest.approx((180 + worse["time_s"]["ours"]) / 2)
    assert summary["speedup_time_to_error"] == pytest.approx(
        summary["cohere_time_to_error_s"] / summary["ours_time_to_error_s"]
    )
    assert summary["speedup_time_to_error_per_seed"][0] == pytest.approx(4.0)


def test_cohere_convention_has_our_modulus() -> None:
    """cohere's far field N * ifftn of the start we hand it has our |fftn(psi, ortho)|."""
    rng = np.random.default_rng(0)
    shape = (8, 6, 4)
    psi = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    support = rng.random(shape) > 0.5
    image, cohere_support = bench.cohere_start(psi, support)
    assert image.dtype == np.complex128
    assert cohere_support.dtype == np.int64
    assert np.array_equal(np.fft.ifftshift(cohere_support).astype(bool), support)
    theirs = np.abs(psi.size * np.fft.ifftn(image))
    ours = np.abs(np.fft.fftn(psi, norm="ortho"))
    np.testing.assert_allclose(theirs, ours, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(bench.from_cohere(image), psi, rtol=1e-5, atol=1e-6)


def test_split_flow_moves_each_prelude_to_the_previous_iteration() -> None:
    def op(name: str):
        def f() -> None: ...

        f.__name__ = name
        return f

    one = ["next", "to_reciprocal_space", "modulus", "to_direct_space", "er"]
    flow = [op(n) for n in [*one, "next", "shrink_wrap_operation", *one[1:], *one]]
    parts = [[f.__name__ for f in p] for p in bench.split_flow(flow)]
    assert len(parts) == 3
    assert parts[0] == [*one, "next", "shrink_wrap_operation"]
    assert parts[1] == [*one[1:], "next"]
    assert parts[2] == one[1:]


def test_cohere_params_match_our_recipe() -> None:
    params = bench.cohere_params(bench.RECIPE, "/tmp/start")
    assert params["algorithm_sequence"] == bench.RECIPE
    assert params["shrink_wrap_trigger"] == [bench.SHRINKWRAP.every] * 2
    assert params["shrink_wrap_threshold"] == bench.SHRINKWRAP.threshold
    assert params["shrink_wrap_gauss_sigma"] == bench.SHRINKWRAP.sigma_start
    assert bench.SHRINKWRAP.sigma_start == bench.SHRINKWRAP.sigma_end
    assert params["continue_dir"] == "/tmp/start"


def test_lockstep_alternates_and_collects() -> None:
    order: list[str] = []
    prob = bench.Problem(4, np.ones((4, 4, 4), np.float32), None, None, [], 0)

    def steps(name: str, dt: float):
        yield bench.Step(0, -1.0, 0.0, None)
        for end in (20, 40):
            order.append(name)
            yield bench.Step(end, dt, dt, None)

    runs = {
        name: (steps(name, dt), bench.Recorder(prob, metrics=False))
        for name, dt in (("a", 0.2), ("b", 0.6))
    }
    curves = bench.lockstep(runs)
    assert order == ["a", "b", "a", "b"]
    assert curves["b"].iterations == [0, 20, 40]
    assert curves["b"].s_per_iter_chunks() == pytest.approx([0.03, 0.03])
    assert curves["a"].to_json()["cpu_over_wall"] == pytest.approx(1.0)


def test_plot_and_table_of_a_synthetic_result() -> None:
    run = {
        tool: {
            "iterations": [0, 20, 40],
            "phase_rms": [1.5, 0.5, 0.1],
            "fourier_error": [1.0, 0.1, 0.01],
            "chunk_s": [dt, dt],
            "dtype": "complex64",
        }
        for tool, dt in (("ours", 0.1), ("cohere", 0.4))
    }
    entry = {
        "size": 16,
        "ours_s_per_iter": 0.005,
        "cohere_s_per_iter": 0.02,
        "speedup_per_iteration": 4.0,
        "ours_time_to_error_s": 0.2,
        "cohere_time_to_error_s": 0.8,
        "speedup_time_to_error": 4.0,
        "iterations_to_error_median": {"ours": 40, "cohere": 40},
        "target_met": False,
        "per_seed_phase": [{"target": 0.2}],
        "runs": [{"seed": 0, **run}],
    }
    (row,) = bench.table_rows(entry)
    assert row["x to error"] == 4.0
    assert row["ours it"] == row["cohere it"] == 40
    assert row[">=5x"] is False
    assert isinstance(bench.plot({"sizes": [entry]}), Figure)
    assert bench.plot({"sizes": []}) is None
