"""The report's comparison of two models on one dataset (report/compare.py)."""

from __future__ import annotations

import math

import pytest

from dyncdi_hpc.report.compare import members_fit, model_comparison_section, model_pairs
from dyncdi_hpc.report.page import write_report


@pytest.mark.slow
def test_a_store_with_both_models_gets_their_comparison(two_model_store, tmp_path) -> None:
    _, store = two_model_store
    assert model_pairs(store) == ["thick"]
    for model in ("kinematical", "dynamical"):
        fit = members_fit(store, f"thick-{model}")
        assert fit["members"] >= 1
        assert fit["free_deviance_median"] > 0 and math.isfinite(fit["fit_deviance_median"])
    section = model_comparison_section(store, "thick", tmp_path)
    assert "thick: kinematical vs dynamical" in section and "free_deviance_median" in section
    assert (tmp_path / "thick-models.png").stat().st_size > 10_000
    page = write_report(store, tmp_path / "report").read_text()
    assert page.count("kinematical vs dynamical</h2>") == 1


def test_a_store_with_one_model_has_no_pair(tmp_path) -> None:
    from dyncdi_hpc.store.zarr_store import Store

    store = Store.create(tmp_path / "empty.zarr")
    assert model_pairs(store) == []
