import json
import warnings

import numpy as np
import pytest
import xarray as xr

from dyncdi_hpc.store import consolidated
from dyncdi_hpc.store.zarr_store import Store


def _ds(value: float) -> xr.Dataset:
    return xr.Dataset({"a": (("x0",), np.full(4, value, np.float32))})


def _store(tmp_path) -> Store:
    store = Store.create(tmp_path / "s.zarr")
    store.write_input("data", _ds(0.5))
    store.write_result("t1", _ds(1.5))
    store.write_merged("data-kinematical", _ds(2.5))
    return store


def test_a_consolidated_store_opens_with_xarray_defaults_and_no_warning(tmp_path):
    store = _store(tmp_path)
    assert store.consolidate()
    assert consolidated.is_consolidated(store.path)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for group, value in (("inputs/data", 0.5), ("merged/data-kinematical", 2.5)):
            assert float(xr.open_zarr(store.path, group=group)["a"].mean()) == value
    assert store.sweeps() == {}  # the root's attributes read as before


def test_any_write_drops_the_copy_so_no_group_is_hidden(tmp_path):
    store = _store(tmp_path)
    store.consolidate()
    store.write_result("t2", _ds(3.5))
    assert not consolidated.is_consolidated(store.path)
    # a stale copy would raise KeyError for t2; without one xarray reads the files
    ds = xr.open_zarr(store.path, group="results/t2", consolidated=False)
    assert float(ds["a"].mean()) == 3.5
    store.consolidate()
    store.record_sweep("s", {"name": "s"}, ["t1", "t2"])
    assert not consolidated.is_consolidated(store.path)
    assert store.sweeps()["s"]["task_ids"] == ["t1", "t2"]
    store.consolidate()
    Store.create(store.path)  # a writer opening the store drops it first
    assert not consolidated.is_consolidated(store.path)


def test_a_large_store_stays_plain(tmp_path):
    store = _store(tmp_path)
    size = consolidated.metadata_bytes(store.path)
    assert size > 0
    assert not consolidated.consolidate(store.path, max_bytes=size - 1)
    assert "consolidated_metadata" not in json.loads((store.path / "zarr.json").read_text())
    assert consolidated.consolidate(store.path, max_bytes=size)


def test_dropping_twice_is_harmless(tmp_path):
    store = _store(tmp_path)
    consolidated.drop(store.path)
    store.consolidate()
    consolidated.drop(store.path)
    consolidated.drop(store.path)
    with pytest.warns(RuntimeWarning, match="consolidated"):
        xr.open_zarr(store.path, group="inputs/data")
