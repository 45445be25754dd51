"""The multi-reflection stage of a sweep: spec validation, planning, and a real run."""

from pathlib import Path

import numpy as np
import pytest
import xarray as xr
import yaml
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.multi.sets import sample_truth_dataset, simulated_fingerprints
from dyncdi_hpc.multi.stage import multi_vs_truth
from dyncdi_hpc.schedule.run import plan_sweep, run_sweep
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import FAST_PARAMS, GEOMETRY_32, REPO

# 16^3 scans of ~85 nm voxels (the dynamical tests' geometry), a 450 nm crystal, a 20^3 sample
# grid of 45 nm: the smallest set whose routes still give a usable u
GEOMETRY_16 = GEOMETRY_32.model_copy(
    update={"shape": (16, 16, 16), "rocking_step_deg": 0.01, "pixel_size_um": 110.0}
)
HKLS = [(1, 1, 1), (-1, 1, 1), (0, 0, 2)]
CLUSTER = ("local.n_workers=2", "local.dashboard_address=127.0.0.1:0")


def _dataset(hkl) -> str:
    return "d" + "".join(str(i) for i in hkl)


def multi_spec(tmp_path: Path, hkls=HKLS, geometry: dict | None = None, **update) -> Path:
    """A sweep YAML whose datasets are one simulated multi set `xtal` (tiny, noiseless)."""
    g = {**GEOMETRY_16.model_dump(mode="json"), **(geometry or {})}
    entries = [{"dataset": _dataset(h), "geometry": {**g, "hkl": list(h)}} for h in hkls]
    spec = {
        "name": "multi-test",
        "store": str(tmp_path / "m.zarr"),
        "datasets": {_dataset(h): {"from_store": True} for h in hkls},
        "base": FAST_PARAMS,
        "sweep": {"seed": 1},
        "multi": {
            "xtal": {
                "reflections": entries,
                "grid": {"shape": [20, 20, 20], "voxel_nm": 45.0},
                "joint": {"steps": 40, "log_every": 20},
                "simulate": {"crystal": {"size_nm": 450.0}, "noise": False},
                "seed": 1,
                **update,
            }
        },
    }
    path = tmp_path / "m.yaml"
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def test_the_workflow_file_validates_and_its_dry_run_plan_writes_nothing(tmp_path):
    spec = load_sweep(REPO / "workflows" / "multi-reflection.yaml")
    cfg = spec.multi["au4"]
    assert [e.dataset for e in cfg.reflections] == list(spec.datasets)
    store_path = tmp_path / "dry.zarr"
    store, the_plan = plan_sweep(spec, store_path, write=False)
    assert store is None and not store_path.exists() and not list(tmp_path.iterdir())
    assert len(the_plan.todo) == 4 * 4  # four reflections, four seeds
    fingerprints = simulated_fingerprints(cfg)
    assert {t.dataset: t.fingerprint for t in the_plan.tasks} == fingerprints


def test_the_dry_run_command_lists_the_set_and_writes_nothing(tmp_path):
    path = multi_spec(tmp_path)
    result = CliRunner().invoke(main, ["sweep", str(path), "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "3 tasks" in result.output and "dry run: nothing submitted" in result.output
    assert "multi.xtal: 3 reflections (simulated" in result.output
    assert not (tmp_path / "m.zarr").exists()


def test_multi_does_not_enter_task_ids(tmp_path):
    spec = load_sweep(multi_spec(tmp_path))
    bare = spec.model_copy(update={"multi": {}})
    with_multi = plan_sweep(spec, tmp_path / "a.zarr", write=False)[1].tasks
    # without the set the datasets are not in any store: give the same fingerprints by hand
    from dyncdi_hpc.sweep import expand

    assert [t.task_id for t in expand(bare, {t.dataset: t.fingerprint for t in with_multi})] == [
        t.task_id for t in with_multi
    ]


@pytest.mark.parametrize(
    ("hkls", "geometry", "field", "problem"),
    [
        ([(1, 1, 1), (1, 1, -1), (0, 0, 2)], None, "multi.xtal.reflections", "coplanar"),
        (HKLS, {"energy_kev": 9.5}, "multi.xtal.reflections[1].energy_kev", "energy"),
    ],
)
def test_a_bad_set_is_refused_before_anything_is_written_or_started(
    tmp_path, hkls, geometry, field, problem
):
    path = multi_spec(tmp_path, hkls)
    if geometry:  # only the second reflection's energy differs
        data = yaml.safe_load(path.read_text())
        data["multi"]["xtal"]["reflections"][1]["geometry"].update(geometry)
        path.write_text(yaml.safe_dump(data))
    spec = load_sweep(path)
    store_path = tmp_path / "m.zarr"
    with pytest.raises(DyncdiError) as err:
        run_sweep(spec, store_path=store_path, cluster="local", overrides=CLUSTER)
    assert err.value.field == field and problem in str(err.value)
    assert not store_path.exists()


def test_a_set_naming_an_unknown_or_simulated_file_dataset_is_refused(tmp_path):
    data = yaml.safe_load(multi_spec(tmp_path).read_text())
    data["multi"]["xtal"]["reflections"][2]["dataset"] = "nope"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DyncdiError) as err:
        load_sweep(path)
    assert err.value.field == "multi.xtal.reflections[2].dataset"


def test_errors_against_the_truth_ignore_a_constant_u_and_see_a_wrong_one(tmp_path):
    cfg = load_sweep(multi_spec(tmp_path)).multi["xtal"]
    truth = sample_truth_dataset(cfg)
    u = truth["displacement"].values.astype(float)
    support = truth["support"].values
    rng = np.random.default_rng(0)
    ds = xr.Dataset(
        {
            "shape": (("x", "y", "z"), truth["amplitude"].values),
            "displacement": (("component", "x", "y", "z"), np.where(support, u + 0.3, np.nan)),
            "displacement_independent": (
                ("component", "x", "y", "z"),
                np.where(support, u + 0.01 * rng.normal(size=u.shape), np.nan),
            ),
            "strain": (("x",), np.zeros(20)),  # only its presence matters: a tensor set
        },
        attrs={"voxel_nm": cfg.grid.voxel_nm},
    )
    v = multi_vs_truth(ds, truth)
    assert v["voxels"] > 0.5 * support.sum() and np.allclose(v["shift_voxels"], 0, atol=0.05)
    assert v["joint"]["u_rms_over_range_max"] < 1e-3  # a constant u is a rigid translation
    assert v["joint"]["strain_rms_over_range"] < 1e-3
    span = np.ptp(u[:, support], axis=1).max()
    assert v["independent"]["u_rms_over_range_max"] == pytest.approx(0.01 / span, rel=0.3)


@pytest.mark.slow
@pytest.mark.cluster
def test_a_multi_sweep_writes_u_on_the_sample_grid_and_a_rerun_skips_it(tmp_path):
    spec = load_sweep(multi_spec(tmp_path))
    store_path = tmp_path / "m.zarr"
    outcome = run_sweep(spec, store_path=store_path, cluster="local", overrides=CLUSTER)
    assert outcome.counts["done"] == 3 and outcome.multi == ["xtal"] and not outcome.multi_skipped
    store = Store.open(store_path)
    assert store.multi_names() == ["xtal"]
    ds = store.read_multi("xtal")
    assert ds["displacement"].shape == (3, 20, 20, 20)
    u = ds["displacement"].values
    assert np.isfinite(u[:, ds["support"].values]).all() and ds["support"].values.sum() > 0
    attrs = store.multi_attrs("xtal")
    assert attrs["from_merged"] == [True] * 3
    assert attrs["merged_groups"] == {_dataset(h): f"{_dataset(h)}-kinematical" for h in HKLS}
    v = attrs["vs_truth"]
    for route in ("joint", "independent"):
        assert np.isfinite(v[route]["u_rms_over_range_max"])
        assert np.isfinite(v[route]["strain_rms_over_range"])
    assert v["voxels"] > 0
    assert "multi/xtal" in outcome.report.read_text()

    written = attrs["provenance"]["written_at"]
    again = run_sweep(spec, store_path=store_path, cluster="local", overrides=CLUSTER)
    assert again.skipped == 3 and again.multi_skipped == ["xtal"]
    assert store.multi_attrs("xtal")["provenance"]["written_at"] == written

    listing = CliRunner().invoke(main, ["status", str(store_path)])
    assert listing.exit_code == 0, listing.output
    assert "multi/xtal (vs truth, RMS / largest range: joint u" in listing.output
    assert listing.output.count("merged/") == 3
