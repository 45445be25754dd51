"""The merged object against the data: its Fourier error (the tasks' metric), its refinement
by error reduction, and a merge rule change that never silently replaces a merged group."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from dyncdi_hpc.cli import main
from dyncdi_hpc.merge.refine import fourier_error, refine_onto_data, refine_region
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import write_spec


def _truth(sim):
    return sim.truth.amplitude * np.exp(1j * sim.truth.phase)


def test_the_true_object_fits_noiseless_data_at_any_scale_and_position(noiseless32):
    obj = _truth(noiseless32)
    intensity = noiseless32.intensity
    assert fourier_error(obj, intensity, None) < 1e-6
    # the metric is scale- and shift-free, as the tasks' fitted scale and centring are
    moved = 3.0 * np.roll(obj, (2, -1, 3), axis=(0, 1, 2))
    assert fourier_error(moved, intensity, None) == pytest.approx(
        fourier_error(obj, intensity, None), abs=1e-6
    )
    assert fourier_error(obj * np.exp(0.8j * (np.abs(obj) > 0)), intensity, None) < 1e-6
    # and it can fail: a wrong phase fits worse
    rng = np.random.default_rng(0)
    wrong = np.abs(obj) * np.exp(1j * rng.uniform(-1, 1, obj.shape))
    assert fourier_error(wrong, intensity, None) > 0.05


def test_the_mean_of_two_members_fits_worse_and_refinement_recovers_the_fit(noiseless32):
    """Two fits that each differ from the truth by a different phase error: their mean fits
    the data worse than either; error reduction inside the widened majority support brings
    it back below the better member, and keeps it inside that region."""
    truth = _truth(noiseless32)
    support = noiseless32.truth.support
    rng = np.random.default_rng(1)
    members = [truth * np.exp(0.35j * rng.standard_normal(truth.shape) * support) for _ in range(2)]
    intensity, mask = noiseless32.intensity, np.zeros(truth.shape, bool)
    mask[0, 0, :4] = True  # masked voxels are left free
    errors = [fourier_error(m, intensity, mask) for m in members]
    mean = np.mean(members, axis=0)
    assert fourier_error(mean, intensity, mask) > 0  # finite, comparable
    region = refine_region(support.astype(float))
    assert region.sum() > support.sum() and (region | support).sum() == region.sum()
    refined = refine_onto_data(mean, region, intensity, mask, 100)
    assert np.all(refined[~region] == 0)
    assert fourier_error(refined, intensity, mask) < min(errors)
    assert fourier_error(refined, intensity, mask) < fourier_error(mean, intensity, mask)


@pytest.mark.slow
@pytest.mark.cluster
def test_refined_merge_fits_like_its_members_and_a_rule_change_is_refused(tmp_path):
    spec = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 4}, noise=True)
    cluster = ["--set", "local.n_workers=2", "--set", "local.dashboard_address=127.0.0.1:0"]
    run = CliRunner().invoke(main, ["sweep", str(spec), *cluster])
    assert run.exit_code == 0, run.output
    store = Store.open(tmp_path / "s.zarr")
    (key,) = store.merged_keys()
    plain = store.merged_attrs(key)["fit"]
    assert plain["refine_iterations"] == 0
    assert plain["fourier_error"] == plain["mean_fourier_error"]
    before = (store.path / "merged" / key).resolve()

    # another rule: refused, nothing replaced, until asked
    changed = ["--set", "merge.refine_iterations=50"]
    for command in (
        ["sweep", str(spec), *cluster, *changed],
        ["sweep", str(spec), "--dry-run", *changed],
    ):
        refused = CliRunner().invoke(main, command)
        assert refused.exit_code == 2, refused.output
        assert refused.output.strip().splitlines()[-1] == (
            f"error: merge: merged/{key} was merged under another rule (refine_iterations "
            "differ) (fix: pass --remerge to replace it, or restore the rule it was merged with)"
        )
    assert (store.path / "merged" / key).resolve() == before
    run = CliRunner().invoke(main, ["sweep", str(spec), *cluster, *changed, "--remerge"])
    assert run.exit_code == 0, run.output
    fit = store.merged_attrs(key)["fit"]
    assert fit["refine_iterations"] == 50
    assert fit["fourier_error"] < fit["mean_fourier_error"]
    assert fit["error_ratio_to_best"] <= 1.2, fit
