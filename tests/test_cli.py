"""The command line: bad input gives one clear line and exit status 2 before anything runs."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from tests.conftest import GEOMETRY_32, write_spec


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


def _error_line(output: str) -> str:
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1, output
    assert lines[0].startswith("error: ")
    return lines[0]


def _npy_spec(tmp_path, array):
    np.save(tmp_path / "data.npy", array)
    spec = {
        "name": "measured",
        "store": str(tmp_path / "s.zarr"),
        "datasets": {"scan": {"path": "data.npy", "geometry": GEOMETRY_32.model_dump(mode="json")}},
        "sweep": {"seed": 2},
    }
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def _counts(shape=(32, 32, 32)):
    return np.random.default_rng(0).poisson(5.0, size=shape).astype(np.float32)


@pytest.mark.parametrize(
    ("corrupt", "words"),
    [
        (lambda a: a.__setitem__((3, 4, 5), np.nan), "1 NaN or infinite intensity values"),
        (lambda a: a.__setitem__((slice(0, 2), 0, 0), -3.0), "2 negative intensity values"),
    ],
)
def test_bad_counts_are_refused_before_anything_is_written(tmp_path, corrupt, words):
    data = _counts()
    corrupt(data)
    code, output = _run("sweep", _npy_spec(tmp_path, data))
    assert code == 2
    line = _error_line(output)
    assert "datasets.scan.path" in line and words in line
    assert not (tmp_path / "s.zarr").exists()


def test_shape_that_disagrees_with_the_geometry(tmp_path):
    code, output = _run("sweep", _npy_spec(tmp_path, _counts((32, 30, 32))))
    assert code == 2
    line = _error_line(output)
    assert "[32, 30, 32]" in line and "geometry says [32, 32, 32]" in line


def test_malformed_yaml(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: demo\ndatasets: {a: [1, 2}\n")
    code, output = _run("sweep", path)
    assert code == 2
    assert "malformed YAML at line 2" in _error_line(output)


def test_unknown_key(tmp_path):
    path = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1})
    data = yaml.safe_load(path.read_text())
    data["base"]["learning_rate"] = 0.1
    path.write_text(yaml.safe_dump(data))
    code, output = _run("sweep", path)
    assert code == 2
    assert "base.learning_rate: unknown key" in _error_line(output)


def test_missing_store(tmp_path):
    code, output = _run("status", tmp_path / "missing.zarr")
    assert code == 2
    assert "store: no store at" in _error_line(output)


def test_store_in_a_missing_folder(tmp_path):
    path = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1})
    code, output = _run("sweep", path, "--store", tmp_path / "no" / "dir" / "s.zarr")
    assert code == 2
    assert "does not exist" in _error_line(output)


def test_unknown_cluster_profile(tmp_path):
    path = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1})
    code, output = _run("sweep", path, "--cluster", "nosuchprofile", "--dry-run")
    assert code == 2
    assert "unknown cluster profile 'nosuchprofile'" in _error_line(output)


def test_dry_run_prints_the_task_table_and_runs_nothing(tmp_path):
    path = write_spec(
        tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2, "tv_weight": [0.0, 0.01]}
    )
    code, output = _run("sweep", path, "--dry-run")
    assert code == 0, output
    assert "4 tasks" in output and output.count("pending") == 4
    assert "dry run: nothing submitted" in output
    assert not (tmp_path / "s.zarr").exists()


def test_simulate_writes_an_input_group(tmp_path):
    cfg = tmp_path / "crystal.yaml"
    cfg.write_text(yaml.safe_dump({"geometry": GEOMETRY_32.model_dump(mode="json")}))
    code, output = _run("simulate", cfg, "--out", tmp_path / "s.zarr")
    assert code == 0, output
    assert "wrote inputs/crystal" in output
    assert (tmp_path / "s.zarr" / "inputs" / "crystal" / "intensity" / "zarr.json").is_file()


def test_physics_susceptibility_json_interface():
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "dyncdi_hpc.cli",
            "physics",
            "susceptibility",
            "--material",
            "Au",
            "--hkl",
            "1",
            "1",
            "1",
            "--energy-kev",
            "9",
            "--json",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    report = json.loads(out)
    for key in (
        "chi0",
        "chih",
        "chihbar",
        "bragg_angle_deg",
        "pendellosung_um",
        "extinction_depth_um",
        "darwin_width_urad",
        "refraction_shift_urad",
    ):
        assert key in report
    assert len(report["chih"]) == 2
    assert report["bragg_angle_deg"] == pytest.approx(17.01, abs=0.01)


def test_physics_forbidden_reflection_is_a_clear_error():
    code, output = _run(
        "physics", "susceptibility", "--material", "Au", "--hkl", "1", "0", "0", "--energy-kev", "9"
    )
    assert code == 2
    assert "forbidden" in _error_line(output)


SCAN54 = Path(__file__).resolve().parent.parent / "examples" / "data" / "aps34idc-au111-scan54"


def test_load_scan54_from_its_spec_file_with_the_detector_corrections(tmp_path):
    import xarray as xr

    store = tmp_path / "s54.zarr"
    code, output = _run(
        "load",
        SCAN54 / "frames",
        "--beamline",
        "aps-34idc",
        "--spec",
        SCAN54 / "example.spec",
        "--scan",
        "54",
        "--dark",
        SCAN54 / "dark.tif",
        "--flat",
        SCAN54 / "whitefield.tif",
        "--threshold",
        "2",
        "--name",
        "scan54",
        "--out",
        store,
    )
    assert code == 0, output
    # the flat field moves the brightest voxel to row 65, column 65: a 120-pixel window
    assert "wrote inputs/scan54 ([192, 120, 120]" in output
    assert "measured geometry: aps-34idc 34idcTIM2, rocking Theta" in output
    assert "warning: detector corrections (34idcTIM2)" in output
    ds = xr.open_zarr(store, group="inputs/scan54", consolidated=False)
    g = ds.attrs["geometry"]
    for key in ("q_basis_lab", "real_basis_lab", "beamline", "motors", "rocking_motor"):
        assert key in g, key
    assert g["centre_channel"] == [256.0, 256.0] and g["binning"] == [1, 1]
    assert g["roi"] == [62 + 5, 62 + 125, 63 + 5, 63 + 125]
    corrections = ds.attrs["corrections"]
    assert corrections["masked"]["hot"] == 201  # one hot pixel of the dark field, every frame
    assert corrections["masked"]["seam"] == 0  # the Timepix cross (chip row 256) is outside
    assert corrections["zeroed"]["threshold"] > 0 and "aliens" in corrections
    assert ds.attrs["provenance"]["load"]["sources"]["energy_kev"] == "file"
    assert bool(ds["mask"].values.any())


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--scan", "55"), "--scan: example.spec has no scan 55"),
        (("--scan", "54", "--roi", "450", "578", "63", "191"), "--roi: ROI [450, 578, 63, 191]"),
        (("--scan", "54", "--beamline", "nowhere"), "beamline: unknown beamline 'nowhere'"),
    ],
)
def test_load_errors_are_one_line_and_write_nothing(tmp_path, args, words):
    base = ("--beamline", "aps-34idc", "--spec", SCAN54 / "example.spec")
    code, output = _run("load", SCAN54 / "frames", *base, *args, "--out", tmp_path / "s.zarr")
    assert code == 2
    assert words in _error_line(output)
    assert not (tmp_path / "s.zarr").exists()


def test_beamlines_lists_the_presets():
    code, output = _run("beamlines")
    assert code == 0, output
    for words in ("aps-34idc", "esrf-id01", "petra-p10", "Theta y+", "34idcTIM2 512x512 55 um"):
        assert words in output, words


def test_profiles_lists_the_shipped_profiles_with_their_kind():
    code, output = _run("profiles")
    assert code == 0, output
    kinds = {line.split()[0]: line.split()[1] for line in output.splitlines()}
    assert kinds["local"] == "local" and kinds["slurm-cpu"] == kinds["slurm-gpu"] == "slurm"


def test_config_show_prints_the_profile_after_environment_and_set(monkeypatch):
    monkeypatch.setenv("DASK_DYNCDI__CLUSTER__LOCAL__N_WORKERS", "3")
    code, output = _run("config", "show", "--set", "local.threads_per_worker=1")
    assert code == 0, output
    shown = yaml.safe_load(output)["dyncdi"]["cluster"]
    assert shown["kind"] == "local"
    assert shown["local"]["n_workers"] == 3 and shown["local"]["threads_per_worker"] == 1
    code, output = _run("config", "show", "--cluster", "slurm-cpu", "--set", "slurm.memory=3GB")
    assert code == 0, output
    assert yaml.safe_load(output.split("# job script")[0])["jobqueue"]["slurm-cpu"]["memory"] == (
        "3GB"
    )
    assert "#SBATCH" in output
    code, output = _run("config", "show", "--set", "local.n_wrokers=4")
    assert code == 2 and "not a keyword of distributed.LocalCluster" in _error_line(output)


def test_shell_completion_script_as_the_readme_says():
    env = {**os.environ, "_DYNCDI_COMPLETE": "bash_source"}
    run = subprocess.run(
        [sys.executable, "-m", "dyncdi_hpc"], env=env, capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "_dyncdi_completion()" in run.stdout and "complete " in run.stdout
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    assert "_DYNCDI_COMPLETE=bash_source dyncdi" in readme
