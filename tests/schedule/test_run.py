"""The distributed path on a real LocalCluster with two worker processes."""

import json
import subprocess
import sys

import pytest
import yaml
from click.testing import CliRunner

from dyncdi_hpc.cli import EXIT_TASKS_FAILED, main
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import REPO, write_spec

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

CLUSTER = ("--set", "local.n_workers=2", "--set", "local.dashboard_address=127.0.0.1:0")


def _sweep(spec, *extra, exit_code=0):
    result = CliRunner().invoke(main, ["sweep", str(spec), *CLUSTER, *map(str, extra)])
    assert result.exit_code == exit_code, result.output
    return result.output


def _count_groups_in_another_process(store) -> dict:
    code = (
        "import json, sys, pathlib, xarray as xr\n"
        "root = pathlib.Path(sys.argv[1])\n"
        "out = {}\n"
        "for d in sorted(p for p in (root / 'results').iterdir() if p.is_dir()):\n"
        "    ds = xr.open_zarr(root, group=f'results/{d.name}', consolidated=False)\n"
        "    out[d.name] = [ds.attrs['status'], ds.attrs['started_at'], sorted(ds.data_vars)]\n"
        "print(json.dumps(out))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code, str(store)], capture_output=True, text=True, check=True
    )
    return json.loads(run.stdout)


def _open_merged_with_xarray_defaults(store) -> None:
    """Every group of the finished store opens with plain xarray, no warning, nm coords."""
    code = (
        "import sys, xarray as xr\n"
        "for g in ('inputs/xtal', 'merged/xtal-kinematical'):\n"
        "    ds = xr.open_zarr(sys.argv[1], group=g)\n"
        "    assert ds['x0'].attrs['units'] == 'nm', ds['x0'].attrs\n"
        "    assert abs(float(ds['x0'][1] - ds['x0'][0]) - 1) > 1, ds['x0'].values\n"
        "    assert float(ds['x0'][ds.sizes['x0'] // 2]) == 0.0\n"
        "print('ok')\n"
    )
    run = subprocess.run(
        [sys.executable, "-W", "error", "-c", code, str(store)], capture_output=True, text=True
    )
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_sweep_resume_and_extension(tmp_path):
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 2, "tv_weight": [0.0, 1e-3]})
    output = _sweep(spec)
    assert "4 to compute" in output and "this run: done 4" in output
    first = _count_groups_in_another_process(store)
    assert len(first) == 4
    # plain xarray sees each result's one complex array (amplitude and phase on read)
    assert all(v[0] == "done" and v[2] == ["object"] for v in first.values())
    assert (tmp_path / "s-report" / "index.html").is_file()
    assert "merging the best results of each dataset and model:" in output
    assert "writing the report:" in output
    status = CliRunner().invoke(main, ["status", str(store)]).output
    assert "tv_weight" in status and "0.001" in status  # the sweep's axis is a column
    _open_merged_with_xarray_defaults(store)

    again = _sweep(spec)
    assert "nothing to compute" in again
    assert _count_groups_in_another_process(store) == first  # untouched, not recomputed

    data = yaml.safe_load(spec.read_text())
    data["sweep"]["tv_weight"].append(1e-2)
    spec.write_text(yaml.safe_dump(data))
    more = _sweep(spec)
    assert "2 already done" not in more and "4 already done, 2 to compute" in more
    after = _count_groups_in_another_process(store)
    assert len(after) == 6
    assert {k: after[k] for k in first} == first


def test_a_diverging_task_is_recorded_as_failed_and_left_out_of_the_merge(tmp_path):
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 2, "lr_scale": [1e-2, 1e30]})
    output = _sweep(spec, exit_code=EXIT_TASKS_FAILED)
    assert "done 2" in output and "failed 2" in output
    s = Store.open(store)
    failed = [t for t in s.result_ids() if s.result_attrs(t)["status"] == "failed"]
    assert len(failed) == 2
    for t in failed:
        assert "non-finite" in s.result_attrs(t)["reason"]
        assert s.result_attrs(t)["spec"]["params"]["lr_scale"] == 1e30
    (key,) = s.merged_keys()
    members = s.merged_attrs(key)["members"]
    assert not set(members) & set(failed) and members
    status = CliRunner().invoke(main, ["status", str(store)])
    assert "done: 2" in status.output and "failed: 2" in status.output


def test_demo_sweep_noiseless_merged_phase_error(tmp_path):
    demo = yaml.safe_load((REPO / "workflows" / "demo.yaml").read_text())
    demo["datasets"]["au111"]["simulate"]["noise"] = False
    spec = tmp_path / "demo.yaml"
    spec.write_text(yaml.safe_dump(demo))
    output = _sweep(spec, "--store", tmp_path / "demo.zarr")
    assert "this run: done 16" in output
    s = Store.open(tmp_path / "demo.zarr")
    v = s.merged_attrs("au111-kinematical")["vs_truth"]
    assert v["phase_rms_rad"] < 0.2
    assert v["support_dice"] >= 0.9
