"""The GPU-only large-size path of the dynamical benchmark, kept working on the CPU at 8^3:
each variant runs in a fresh process and comes back as one JSON record and one table row."""

from __future__ import annotations

import pytest

from benchmarks import dynamical


@pytest.mark.slow
@pytest.mark.parametrize("variant", sorted(dynamical.LARGE_VARIANTS))
def test_large_run_in_a_fresh_process(variant: str) -> None:
    record = dynamical.large_in_subprocess(8, variant, repeats=1, timeout_s=300)
    assert "error" not in record, record
    assert record["n"] == 8 and record["variant"] == variant
    assert (record["box"] is not None) == (variant == "box")
    for key in ("dynamical_fwd", "dynamical_fwd_grad"):
        assert record["timings"][key]["median_s"] > 0
        assert record["memory_bytes_compiled"][key] > 0
    (row,) = dynamical.large_rows([record])
    assert row["N"] == 8 and row["variant"] == variant


@pytest.mark.slow
def test_large_run_reports_a_failed_variant() -> None:
    record = dynamical.large_in_subprocess(8, "no-such-variant", repeats=1, timeout_s=300)
    assert record["error"].startswith("exit ")
    (row,) = dynamical.large_rows([record])
    assert row["error"] == record["error"]
