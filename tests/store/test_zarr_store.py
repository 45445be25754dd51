import os
import subprocess
import sys

import numpy as np
import pytest
import xarray as xr

from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.store.zarr_store import Store


def _ds(value: float) -> xr.Dataset:
    return xr.Dataset(
        {"a": (("x0", "x1"), np.full((4, 5), value, np.float32), {"units": "rad"})},
        attrs={"status": "done", "value": value},
    )


def test_result_is_written_once_and_read_back(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    assert store.write_result("abc", _ds(1.0))
    assert not store.write_result("abc", _ds(2.0))  # the second writer loses, nothing changes
    assert store.result_ids() == ["abc"]
    assert store.result_attrs("abc")["value"] == 1.0
    np.testing.assert_array_equal(store.read_result("abc")["a"].values, 1.0)
    assert os.listdir(tmp_path / "s.zarr" / "_staging") == ["zarr.json"]


def test_a_half_written_group_is_never_listed(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    # a writer killed mid-write leaves its group under _staging only
    _ds(3.0).to_zarr(
        tmp_path / "s.zarr" / "_staging" / "dead-123", mode="w", zarr_format=3, consolidated=False
    )
    assert store.result_ids() == []
    assert store.write_result("dead", _ds(4.0))
    assert store.result_ids() == ["dead"]


def test_plain_xarray_in_another_process_opens_every_group(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    store.write_input("data", _ds(0.5))
    store.write_result("t1", _ds(1.5))
    store.write_merged("data-kinematical", _ds(2.5))
    assert store.consolidate()
    code = (  # xarray's defaults, every warning an error
        "import sys, xarray as xr\n"
        "for g in ('inputs/data', 'results/t1', 'merged/data-kinematical'):\n"
        "    ds = xr.open_zarr(sys.argv[1], group=g)\n"
        "    print(g, float(ds['a'].mean()), ds['a'].attrs['units'])\n"
    )
    out = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(tmp_path / "s.zarr")],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert "inputs/data 0.5 rad" in out
    assert "results/t1 1.5 rad" in out
    assert "merged/data-kinematical 2.5 rad" in out


def test_missing_store_is_a_clear_error(tmp_path):
    with pytest.raises(DyncdiError, match="no store at") as err:
        Store.open(tmp_path / "nowhere.zarr")
    assert err.value.field == "store"


def test_store_in_a_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(DyncdiError, match="does not exist"):
        Store.create(tmp_path / "no" / "such" / "s.zarr")


def test_unwritable_store_is_a_clear_error():
    # sysfs refuses new files even to root, unlike a folder without write permission
    with pytest.raises(DyncdiError, match="not writable"):
        Store.create("/sys/s.zarr")


def test_discarding_a_result_lets_it_be_written_again(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    store.write_result("t", _ds(1.0))
    store.discard_result("t")
    assert store.result_ids() == []
    assert store.write_result("t", _ds(2.0))


def test_a_multi_group_keeps_its_labels_and_is_replaced_atomically(tmp_path):
    store = Store.create(tmp_path / "s.zarr")
    ds = _ds(1.0).assign_coords(x0=["x", "y", "z", "w"])  # numpy fixed-length unicode labels
    store.write_multi("set", ds)
    store.write_multi("set", _ds(2.0).assign_coords(x0=["x", "y", "z", "w"]))
    assert store.multi_names() == ["set"]
    assert store.multi_attrs("set")["value"] == 2.0
    back = store.read_multi("set")
    assert list(back["x0"].values) == ["x", "y", "z", "w"]
    np.testing.assert_array_equal(back["a"].values, 2.0)
