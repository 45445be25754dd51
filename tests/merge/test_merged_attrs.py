"""What a merged group records besides its arrays (issue #15): the Poisson floor of the
Fourier error its members are measured against, and the merged crystal's extent in the lab;
and how `dyncdi status` shows them, also for a group merged before they were recorded.

The results are tests/data/store_f41b5a8.tar.gz's (a 16^3 scan of a 500 nm faceted Au
crystal with Poisson noise), so nothing is reconstructed here."""

from __future__ import annotations

import tarfile
from pathlib import Path

import numpy as np
import pytest

from dyncdi_hpc.analysis.extent import support_extent_nm
from dyncdi_hpc.analysis.noise import poisson_floor
from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.data.measurement import read_measurement
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.store.summary import merged_line
from dyncdi_hpc.store.zarr_store import Store

DATA = Path(__file__).resolve().parents[1] / "data"
SPEC = DATA / "store_f41b5a8.yaml"
TARBALL = DATA / "store_f41b5a8.tar.gz"


@pytest.fixture(scope="module")
def old_store(tmp_path_factory) -> Path:
    dest = tmp_path_factory.mktemp("old_store")
    with tarfile.open(TARBALL) as tar:
        if hasattr(tarfile, "data_filter"):
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return dest / "store_f41b5a8.zarr"


def test_a_group_merged_before_shows_no_floor_or_extent(old_store):
    store = Store.open(old_store)
    (key,) = store.merged_keys()
    attrs = store.merged_attrs(key)
    assert "fourier_error_floor" not in attrs and "extent_nm" not in attrs
    line = merged_line(key, attrs)
    assert line.startswith(f"merged/{key}: ") and "floor" not in line and "extent" not in line


def test_merged_group_records_the_floor_and_the_lab_extent(old_store):
    store = Store.create(old_store)  # an existing store: adds the sections newer code keeps
    (key,) = merge_store(store, load_sweep(SPEC).merge)
    attrs = store.merged_attrs(key)
    m = read_measurement(store.read_input(attrs["dataset"]), "inputs")

    floor = attrs["fourier_error_floor"]
    assert floor == poisson_floor(m.intensity, m.mask)
    # 1e5 counts at the peak: a floor of order 1/4 per bright voxel over the counts, and no
    # member fits the noise better than the noise allows (their errors are stored per task)
    errors = [store.result_attrs(t)["metrics"]["error"] for t in attrs["members"]]
    assert 1e-4 < floor < min(errors)

    extent = attrs["extent_nm"]
    assert set(extent) == {"x", "y", "z", "frame"} and extent["frame"] == "lab"
    support = store.read_merged(key)["support"].values.astype(bool)
    expected = support_extent_nm(support, m.geometry.real_basis_lab)
    assert {a: extent[a] for a in "xyz"} == pytest.approx(expected)
    # the merged crystal is about as large as the true one (a voxel is 78-88 nm)
    truth = support_extent_nm(m.truth.support, m.geometry.real_basis_lab)
    for axis in "xyz":
        assert abs(extent[axis] - truth[axis]) < 2 * 90.0, (axis, extent, truth)

    line = merged_line(key, attrs)
    assert f"; error floor (Poisson) {floor:.3g}" in line
    sizes = " x ".join(f"{extent[a]:.0f}" for a in "xyz")
    assert line.endswith(f"; extent {sizes} nm (lab x, y, z)")
    assert np.isfinite([extent[a] for a in "xyz"]).all()


def test_members_count_their_independent_starts_and_one_per_start_keeps_them_apart(old_store):
    # 3 seeds x 3 TV weights: the weights share their seed's random start
    store = Store.create(old_store)
    rule = load_sweep(SPEC).merge
    (key,) = merge_store(store, rule)
    attrs = store.merged_attrs(key)
    seeds = [store.result_attrs(t)["spec"]["seed"] for t in attrs["members"]]
    assert attrs["independent_starts"] == len(set(seeds))
    assert f"from {len(set(seeds))} independent starts" in merged_line(key, attrs)

    (key,) = merge_store(store, rule.model_copy(update={"one_per_start": True, "fraction": 1.0}))
    attrs = store.merged_attrs(key)
    seeds = [store.result_attrs(t)["spec"]["seed"] for t in attrs["selected"]]
    assert sorted(seeds) == [0, 1, 2]  # each start once, by its best result
    assert attrs["independent_starts"] == len(attrs["members"])
    for t in attrs["selected"]:  # ... and that is the best of its start
        spec = store.result_attrs(t)["spec"]
        same_start = [
            store.result_attrs(u)["metrics"]["error"]
            for u in store.result_ids()
            if store.result_attrs(u)["spec"]["seed"] == spec["seed"]
            and store.result_attrs(u)["status"] == "done"
        ]
        assert store.result_attrs(t)["metrics"]["error"] == min(same_start)


def test_ranking_by_free_deviance_without_held_out_voxels_is_a_clear_error(old_store):
    from dyncdi_hpc.config import MergeRule
    from dyncdi_hpc.errors import DyncdiError

    store = Store.create(old_store)
    with pytest.raises(DyncdiError, match=r"merge.metric: \d+ results of .* have no free_dev"):
        merge_store(store, MergeRule(metric="free_deviance"))
