"""A non-editable install finds its cluster profiles (package data) from any current folder."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, write_spec

pytestmark = pytest.mark.slow

PROFILES = ("local.yaml", "site-template.yaml", "slurm-cpu.yaml", "slurm-gpu.yaml")


def _install(tmp_path: Path) -> Path:
    """pip install (no dependencies, offline) a copy of the repo's package into a target folder."""
    # Built from a copy: an in-tree build would leave build/ in the repo, and stale files there
    # would end up in the wheel.
    src = tmp_path / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    shutil.copytree(REPO / "dyncdi_hpc", src / "dyncdi_hpc", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, src / name)
    site = tmp_path / "site"
    argv = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-build-isolation"]
    argv += ["--no-index", "--quiet", "--target", str(site), str(src)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stdout + run.stderr
    return site


def _python(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "DYNCDI_CLUSTER_CONFIGS"}
    env["PYTHONPATH"] = str(site)
    argv = [sys.executable, *args]
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_installed_package_finds_its_profiles_from_another_folder(tmp_path):
    site = _install(tmp_path)
    packaged = site / "dyncdi_hpc" / "cluster_configs"
    assert sorted(p.name for p in packaged.glob("*.yaml")) == list(PROFILES)
    assert not (tmp_path / "cluster_configs").exists()

    where = _python(site, tmp_path, "-c", "import dyncdi_hpc; print(dyncdi_hpc.__file__)")
    assert where.returncode == 0, where.stderr
    imported = Path(where.stdout.strip()).resolve()
    assert imported.is_relative_to(site.resolve()), imported  # the installed copy, not the repo
    assert not imported.is_relative_to(REPO)

    spec = write_spec(tmp_path / "spec.yaml", tmp_path / "s.zarr", sweep={"seed": 2})
    dry_run = ("-m", "dyncdi_hpc.cli", "sweep", str(spec), "--dry-run", "--cluster")
    slurm = _python(site, tmp_path, *dry_run, "slurm-cpu")
    assert slurm.returncode == 0, slurm.stdout + slurm.stderr
    assert "#SBATCH" in slurm.stdout
    assert str(packaged / "slurm-cpu.yaml") in slurm.stdout.replace("\n", "")

    local = _python(site, tmp_path, *dry_run, "local")
    assert local.returncode == 0, local.stdout + local.stderr
    assert str(packaged / "local.yaml") in local.stdout.replace("\n", "")
    assert not (tmp_path / "s.zarr").exists()  # a dry run writes nothing
