"""JAX's persistent compilation cache: where it is, how it is switched off, and that drivers
and workers (local and SLURM) are pointed at it."""

from __future__ import annotations

import os
import subprocess
import sys

from dyncdi_hpc.schedule.compile_cache import cache_dir, cache_env, worker_env
from dyncdi_hpc.schedule.profiles import load_profile
from dyncdi_hpc.schedule.slurm import job_script


def test_the_cache_folder_and_its_switch(tmp_path):
    assert cache_dir({"XDG_CACHE_HOME": str(tmp_path)}) == tmp_path / "dyncdi" / "jax"
    assert cache_dir({"DYNCDI_JAX_CACHE": str(tmp_path / "c")}) == tmp_path / "c"
    assert (
        cache_dir({"DYNCDI_JAX_CACHE": "off"}) is None
        and cache_env({"DYNCDI_JAX_CACHE": "0"}) == {}
    )
    # a folder the user gave JAX itself wins
    given = {"JAX_COMPILATION_CACHE_DIR": "/x", "DYNCDI_JAX_CACHE": "off"}
    assert cache_env(given)["JAX_COMPILATION_CACHE_DIR"] == "/x"


def test_workers_get_the_cache_under_the_profiles_own_worker_env(monkeypatch, tmp_path):
    monkeypatch.setenv("DYNCDI_JAX_CACHE", str(tmp_path))
    monkeypatch.delenv("JAX_COMPILATION_CACHE_DIR", raising=False)
    env = worker_env({"worker_env": {"XLA_FLAGS": "--x", "JAX_COMPILATION_CACHE_DIR": "/mine"}})
    assert env["XLA_FLAGS"] == "--x" and env["JAX_COMPILATION_CACHE_DIR"] == "/mine"
    assert env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"] == "0"
    script = job_script(load_profile("slurm-cpu"))
    assert f"export JAX_COMPILATION_CACHE_DIR={tmp_path}" in script


def test_a_fresh_process_writes_its_programs_into_the_cache(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    env["DYNCDI_JAX_CACHE"] = str(tmp_path / "cache")
    code = (
        "from dyncdi_hpc.schedule.compile_cache import enable_here\n"
        "enable_here()\n"
        "import jax, jax.numpy as jnp\n"
        "print(float(jax.jit(lambda x: (x * 2.0).sum())(jnp.ones(3))))\n"
    )
    for _ in range(2):  # the second process finds the first's program
        run = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
        )
        assert run.returncode == 0 and run.stdout.strip() == "6.0", run.stderr
    assert any((tmp_path / "cache").iterdir())
