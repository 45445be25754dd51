"""The documentation site (mkdocs.yml, docs/): it builds strictly (any warning fails), its
generated pages hold what the code defines, and every configuration field has the
description the sweep-spec reference shows."""

from __future__ import annotations

import importlib.util
import os
import re
import subprocess
import sys

import pytest

from tests.conftest import REPO

HOOK = REPO / "docs" / "hooks" / "spec_reference.py"


def _hook():
    """docs/hooks/spec_reference.py as a module (it is not part of the package)."""
    spec = importlib.util.spec_from_file_location("docs_spec_reference", HOOK)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_every_config_field_has_a_description():
    hook = _hook()
    models = hook.all_models()
    names = {model.__name__ for model in models}
    # the walk reaches every part of a sweep spec, a simulation config and a beamline preset
    for expected in (
        "SweepSpec",
        "ArrayDataset",
        "SimulatedDataset",
        "StoredDataset",
        "ReconParams",
        "ShrinkWrap",
        "ADStage",
        "MergeRule",
        "Generations",
        "MultiReflectionConfig",
        "JointADConfig",
        "GeometryConfig",
        "SimulateConfig",
        "CrystalConfig",
        "Beamline",
        "Detector",
    ):
        assert expected in names, f"{expected} is not reached from the reference's roots"
    missing = [
        f"{model.__module__}.{model.__name__}.{name}"
        for model in models
        for name, field in model.model_fields.items()
        if not (field.description or "").strip()
    ]
    assert not missing, "fields without Field(description=...): " + ", ".join(missing)


def test_spec_reference_tables_name_nested_keys():
    text = _hook().spec_reference()
    for row in ("| `ad_steps` |", "| `refine_iterations` |", "| `checkpoint_every` |"):
        assert row in text
    assert "### `base.shrinkwrap`: ShrinkWrap" in text
    assert "### `merge`: MergeRule" in text


@pytest.mark.slow
def test_site_builds_strictly(tmp_path):
    for module in ("mkdocs", "material", "mkdocstrings_handlers.python", "mkdocs_click"):
        pytest.importorskip(module, reason="pip install -e '.[docs]'")
    site = tmp_path / "site"
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    run = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-4000:] + run.stderr[-4000:]

    spec = (site / "spec-reference" / "index.html").read_text()
    for key in ("ad_steps", "refine_iterations", "checkpoint_every", "outlier_dice", "voxel_nm"):
        assert f"<code>{key}</code>" in spec, key
    cli = (site / "cli" / "index.html").read_text()
    for command in ("sweep", "load", "export", "status", "merge", "config-show"):
        assert f'id="dyncdi-{command}"' in cli, command
    assert "--retry-failed" in cli
    api = (site / "api" / "index.html").read_text()
    for name in (
        "dyncdi_hpc.run_sweep",
        "dyncdi_hpc.physics.forward_model",
        "dyncdi_hpc.config.SweepSpec",
    ):
        assert f'id="{name}"' in api, name
    tutorial = re.sub(r"<[^>]+>", "", (site / "tutorial" / "index.html").read_text())
    assert "refine_iterations: 100" in tutorial  # the sweep file, included from workflows/
