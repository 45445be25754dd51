"""The two-model benchmark's summaries (benchmarks/real_34idc_dynamical.py) on the tiny
two-model store: rows per arm, paired differences, the crystal's size, the figure. The
measured scan's numbers are in benchmarks/results/real_34idc_dynamical.json."""

from __future__ import annotations

import pytest
from matplotlib.figure import Figure

from benchmarks import real_34idc_dynamical as bench
from dyncdi_hpc.report.compare import difference_of


@pytest.mark.slow
def test_rows_arms_pairs_and_size(two_model_store) -> None:
    _, store = two_model_store
    rows = bench.start_rows(store, "thick")
    assert {r["arm"] for r in rows} == {"kinematical", "dynamical-flat", "dynamical-previous"}
    assert len(rows) == 6 and all(r["free_deviance"] > 0 for r in rows)
    # the last stage starts where the shared kinematical stage ended
    assert all(r["loss_before_last_stage"] > 0 for r in rows)
    arms = bench.arm_summary(rows)
    assert arms["kinematical"]["starts"] == 2
    assert arms["kinematical"]["free_deviance_best"] <= arms["kinematical"]["free_deviance_median"]
    pair = bench.paired(rows, "dynamical-previous")
    assert pair["seeds"] == [0, 1] and len(pair["free_deviance_minus_kinematical"]) == 2
    size = bench.crystal_size(store, "thick")
    assert 0 < size["thickness_over_pendellosung"] < 2
    assert size["thickness_along_q_nm"] == pytest.approx(
        size["thickness_over_pendellosung"] * size["pendellosung_nm"]
    )
    diff = difference_of(store, "thick")
    slices = bench._slices(diff.displacement_difference_nm, 5)
    result = {
        "starts": rows,
        "arms": arms,
        "crystal": size,
        "difference": diff.summary(),
        "difference_slices": {"displacement_difference_nm": slices},
    }
    assert isinstance(bench.plot(result), Figure)
    assert bench.plot({"starts": []}) is None
