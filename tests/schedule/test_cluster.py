"""Cluster profiles: loading, overrides, validation, SLURM job scripts (no SLURM needed)."""

import sys

import pytest
import yaml
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.schedule.cluster import start_cluster
from dyncdi_hpc.schedule.profiles import builtin_slurm_keys, load_profile
from dyncdi_hpc.schedule.slurm import job_script
from tests.conftest import REPO, write_spec


@pytest.mark.parametrize("name", ["slurm-cpu", "slurm-gpu", "site-template"])
def test_slurm_profiles_define_every_jobqueue_key(name):
    profile = load_profile(name)
    assert profile.kind == "slurm"
    assert set(profile.jobqueue) == builtin_slurm_keys()
    assert profile.jobqueue["python"] == sys.executable  # null in the file: the driver's python
    raw = yaml.safe_load((REPO / "cluster_configs" / f"{name}.yaml").read_text())
    assert set(raw["jobqueue"][profile.config_name]) == builtin_slurm_keys()


def test_local_profile_still_loads():
    profile = load_profile("local")
    assert profile.kind == "local" and profile.settings["local"]["n_workers"] == 2


def test_set_overrides_dyncdi_and_jobqueue_keys():
    profile = load_profile(
        "slurm-cpu",
        ("scale=4", "slurm.cores=2", "slurm.job_extra_directives=['--constraint=x']"),
    )
    assert profile.settings["scale"] == 4
    assert profile.jobqueue["cores"] == 2
    assert profile.jobqueue["job-extra-directives"] == ["--constraint=x"]
    # Overrides do not leak into the next load in the same process.
    again = load_profile("slurm-cpu")
    assert again.settings["scale"] == 2 and again.jobqueue["cores"] == 1
    assert again.jobqueue["job-extra-directives"] == []


def test_environment_variables_override_and_set_wins(monkeypatch):
    monkeypatch.setenv("DASK_JOBQUEUE__SLURM_CPU__MEMORY", "8GB")
    monkeypatch.setenv("DASK_DYNCDI__CLUSTER__SCALE", "3")
    profile = load_profile("slurm-cpu")
    assert profile.jobqueue["memory"] == "8GB" and profile.settings["scale"] == 3
    assert "#SBATCH --mem=8G" in job_script(profile)
    profile = load_profile("slurm-cpu", ("slurm.memory=2GB",))
    assert profile.jobqueue["memory"] == "2GB"


def test_unknown_profile_names_the_known_ones():
    with pytest.raises(DyncdiError, match="unknown cluster profile 'nope'") as info:
        load_profile("nope")
    assert "slurm-cpu" in str(info.value) and "local" in str(info.value)


def test_unknown_profile_on_the_command_line_submits_nothing(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 1})
    result = CliRunner().invoke(main, ["sweep", str(spec), "--cluster", "nope"])
    assert result.exit_code == 2
    assert "unknown cluster profile 'nope'" in result.output
    assert not (tmp_path / "s.zarr").exists()


def _partial_profile(tmp_path):
    data = yaml.safe_load((REPO / "cluster_configs" / "slurm-cpu.yaml").read_text())
    data["dyncdi"]["cluster"]["config_name"] = "partial"
    data["jobqueue"] = {"partial": {"cores": 1, "memory": "1GB", "walltime": "00:10:00"}}
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def test_profile_missing_jobqueue_keys_is_a_clear_error(tmp_path):
    path = _partial_profile(tmp_path)
    with pytest.raises(DyncdiError, match=r"jobqueue\.partial: missing") as info:
        load_profile(str(path))
    assert "interface" in str(info.value) and "site-template.yaml" in str(info.value)


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        (("slurm.corez=1",), "'corez' is not a dask-jobqueue SLURM key"),
        (("sclae=3",), "unknown key"),
        (("adapt={minimum: 1, maximum: 4}",), "exactly one of scale"),
        (("scale=null",), "exactly one of scale"),
        (("scale=0",), "scale"),
        (("scale=null", "adapt={minimum: 3, maximum: 2}"), "adapt"),
        (("slurm.cores=null",), "cores: must be set"),
        (("slurm.walltime=00:30:00",), "not below the walltime"),
        (("slurm.worker-extra-args=['--lifetime', '58m', '--lifetime-stagger', '2m']",), "below"),
        (("slurm.worker-extra-args=['--lifetime', '1h30m']",), "cannot read"),
    ],
)
def test_bad_settings_are_errors_before_anything_starts(overrides, match):
    with pytest.raises(DyncdiError, match=match):
        load_profile("slurm-cpu", overrides)


def test_adapt_instead_of_scale():
    profile = load_profile("slurm-cpu", ("scale=null", "adapt={minimum: 0, maximum: 4}"))
    assert profile.settings["adapt"] == {"minimum": 0, "maximum": 4}


def test_gpu_job_script_without_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch: generating the script needs none
    script = job_script(load_profile("slurm-gpu"))
    for line in (
        "#SBATCH -p gpu",
        "#SBATCH --gres=gpu:1",
        "#SBATCH -t 01:00:00",
        "#SBATCH --cpus-per-task=1",
        "export XLA_PYTHON_CLIENT_PREALLOCATE=false",
    ):
        assert line in script.splitlines()
    (command,) = [line for line in script.splitlines() if "distributed.cli.dask_worker" in line]
    assert command.startswith(f"{sys.executable} -m distributed.cli.dask_worker")
    assert "--nthreads 1" in command and "--lifetime 55m --lifetime-stagger 4m" in command
    assert "CUDA_VISIBLE_DEVICES=" not in script.replace("CUDA_VISIBLE_DEVICES=${", "")


def test_job_script_expands_home_and_leaves_no_log_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    script = job_script(load_profile("slurm-cpu", ("slurm.log-directory=~/logs/dyncdi",)))
    assert f"#SBATCH -e {tmp_path}/logs/dyncdi/dyncdi-worker-%J.err" in script
    assert not (tmp_path / "logs").exists()


def test_dry_run_prints_the_job_script(tmp_path):
    spec = write_spec(
        tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2}, cluster="slurm-gpu"
    )
    result = CliRunner().invoke(main, ["sweep", str(spec), "--dry-run", "--set", "scale=1"])
    assert result.exit_code == 0, result.output
    assert "dry run: nothing submitted" in result.output
    assert "#SBATCH --gres=gpu:1" in result.output and "--lifetime 55m" in result.output
    assert not (tmp_path / "s.zarr").exists()


def test_start_without_sbatch_says_how_to_get_slurm(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(DyncdiError, match=r"sbatch is not on PATH.*\.ci/slurm-up"):
        start_cluster(load_profile("slurm-cpu"))
