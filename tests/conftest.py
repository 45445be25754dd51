"""Shared fixtures: small real problems (simulated crystals, stores on disk)."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import pytest
import yaml

from dyncdi_hpc.config import CrystalConfig, GeometryConfig, ReconParams, SimulateConfig
from dyncdi_hpc.schedule.compile_cache import CACHE_ENV, enable_here
from tests.slurm_plugin import pytest_addoption as pytest_addoption
from tests.slurm_plugin import pytest_collection_modifyitems as pytest_collection_modifyitems
from tests.slurm_plugin import pytest_configure as pytest_configure
from tests.slurm_plugin import pytest_unconfigure as pytest_unconfigure

REPO = Path(__file__).resolve().parents[1]

# Silent float32 <-> float64 (and int -> float) promotions are errors in the tests, as in
# equinox's: the package must say which dtype it computes in.
jax.config.update("jax_numpy_dtype_promotion", "strict")

# One compilation cache for the whole run (the tests' own processes, their drivers and
# workers, which inherit the variable): each fresh worker loads what another compiled.
if CACHE_ENV not in os.environ and "JAX_COMPILATION_CACHE_DIR" not in os.environ:
    os.environ[CACHE_ENV] = tempfile.mkdtemp(prefix="dyncdi-test-jax-cache-")
    atexit.register(shutil.rmtree, os.environ[CACHE_ENV], ignore_errors=True)
enable_here()

GEOMETRY_32 = GeometryConfig(
    energy_kev=9.0,
    material="Au",
    hkl=(1, 1, 1),
    shape=(32, 32, 32),
    rocking_step_deg=0.005,
    pixel_size_um=55.0,
    detector_distance_m=1.0,
)

# Fewer iterations than the defaults: enough for the store/scheduling tests, which check
# plumbing; reconstruction quality is tested with the defaults in tests/recon.
FAST_PARAMS = {"recipe": "20*ER+60*HIO+20*ER", "ad_steps": 20, "log_every": 10}


def sim_config(noise: bool = False, size_nm: float = 800.0) -> SimulateConfig:
    """The spine's test crystal: faceted Au, 32^3 detector frame, a few radians of phase."""
    return SimulateConfig(geometry=GEOMETRY_32, crystal=CrystalConfig(size_nm=size_nm), noise=noise)


@pytest.fixture(scope="session")
def geometry32():
    return GEOMETRY_32.build()


@pytest.fixture(scope="session")
def noiseless32(geometry32):
    from dyncdi_hpc.data.simulate import simulate

    return simulate(sim_config(), geometry32)


@pytest.fixture(scope="session")
def fast_params():
    return ReconParams(**FAST_PARAMS)


def write_spec(
    path: Path,
    store: Path,
    *,
    sweep: dict,
    base: dict | None = None,
    noise: bool = False,
    cluster: str = "local",
) -> Path:
    """Write a sweep YAML for tests and return its path."""
    spec = {
        "name": "test",
        "store": str(store),
        "cluster": cluster,
        "datasets": {"xtal": {"simulate": sim_config(noise).model_dump(mode="json")}},
        "base": {**FAST_PARAMS, **(base or {})},
        "sweep": sweep,
        "merge": {"select": "best_fraction", "fraction": 0.5},
    }
    path.write_text(yaml.safe_dump(spec, sort_keys=False))
    return path


def run_tiny_sweep(store_path: Path, sweep: dict, base: dict, merge: dict):
    """Run in-process, and merge, a sweep of the 16^3 dynamically simulated 450 nm crystal
    ("thick") with the fast staged recipe (kinematical AD, then base's model): (spec, store)."""
    from dyncdi_hpc.config import ADStage, SweepSpec
    from dyncdi_hpc.merge.combine import merge_store
    from dyncdi_hpc.schedule.run import plan_sweep
    from dyncdi_hpc.task import run_task
    from tests.recon.test_dynamical_recon import GEOMETRY_16

    simulate = SimulateConfig(
        geometry=GEOMETRY_16, crystal=CrystalConfig(size_nm=450.0), model="dynamical"
    )
    spec = SweepSpec(
        name=store_path.stem,
        store=store_path,
        datasets={"thick": {"simulate": simulate}},
        base={
            "recipe": "20*ER+40*HIO+20*ER",
            "stages": [ADStage(model="kinematical", ad_steps=10)],
            "ad_steps": 10,
            "log_every": 5,
            **base,
        },
        sweep=sweep,
        merge=merge,
    )
    store, the_plan = plan_sweep(spec, store_path)
    for task in the_plan.todo:
        assert run_task(str(store_path), task.model_dump_json())["status"] == "done"
    merge_store(store, spec.merge)
    return spec, store


@pytest.fixture(scope="session")
def two_model_store(tmp_path_factory):
    """A finished, merged 16^3 store of 2 starts with each model (the dynamical one from a
    flat and from the previous start), 5% of the voxels held out: (spec, store)."""
    return run_tiny_sweep(
        tmp_path_factory.mktemp("two-models") / "two-models.zarr",
        sweep={
            "seed": 2,
            "model": ["kinematical", "dynamical"],
            "dynamical_start": ["flat", "previous"],
        },
        base={"free_fraction": 0.05},
        merge={"metric": "free_deviance", "fraction": 0.5},
    )
