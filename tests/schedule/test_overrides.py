"""--set: a sweep-spec key is set and validated like the file; a cluster-profile key is checked
against what the cluster takes; anything else is refused, the same way on every profile."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.config import load_sweep
from tests.conftest import write_spec


def _run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result.exit_code, result.output


@pytest.fixture
def spec(tmp_path):
    return write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2})


def test_a_spec_key_is_set_before_validation(spec):
    loaded = load_sweep(spec, (("base.lr_phase", 1e-3), ("sweep.seed", 3)))
    assert loaded.base.lr_phase == 1e-3 and loaded.sweep["seed"] == 3
    code, output = _run("sweep", spec, "--set", "sweep.seed=3", "--dry-run")
    assert code == 0, output
    assert "3 tasks" in output


@pytest.mark.parametrize(
    ("override", "words"),
    [
        ("base.lr_phse=1", "base.lr_phse: unknown key"),
        ("base.lr_phase=-1", "base.lr_phase: Input should be greater than 0"),
        ("lr_phase=1e6", "for a reconstruction parameter write base.lr_phase"),
        ("recipe=10*ER", "for a reconstruction parameter write base.recipe"),
        ("local.n_wrokers=4", "--set local.n_wrokers: not a keyword of distributed.LocalCluster"),
        ("sweep.seed=0", "sweep.seed: 0 random starts would run nothing"),
        ("sweep.seed=-2", "sweep.seed: -2 random starts would run nothing"),
        ("sweep.seed=[0,-1]", "sweep.seed: -1 is not a seed"),
        (
            "datasets.xtal.simulate.geometry.energy_kev=0",
            "datasets.xtal.simulate.geometry.energy_kev: Input should be greater than 0",
        ),
    ],
)
def test_a_key_that_does_not_apply_is_refused_in_one_line(spec, override, words):
    code, output = _run("sweep", spec, "--set", override, "--dry-run")
    assert code == 2, output
    lines = [line for line in output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and words in lines[0], output
    assert not spec.with_name("s.zarr").exists()


def test_one_mistake_in_a_dataset_is_one_error(spec):
    """The dataset's kind is told by its keys: a bad simulate: value is not also reported as
    the missing path: of a measured dataset or an unknown key of it."""
    code, output = _run(
        "sweep", spec, "--set", "datasets.xtal.simulate.geometry.energy_kev=0", "--dry-run"
    )
    assert code == 2
    assert output.count(";") == 0 and "path" not in output and "unknown key" not in output, output


def test_an_unknown_key_gets_the_same_message_on_every_profile(spec):
    messages = set()
    for profile in ("local", "slurm-cpu", "slurm-gpu"):
        code, output = _run(
            "sweep", spec, "--cluster", profile, "--set", "lr_phase=1e6", "--dry-run"
        )
        assert code == 2, output
        messages.add(output.strip())
    assert (
        len(messages) == 1
        and "neither a sweep-spec key nor a cluster-profile key" in messages.pop()
    )
