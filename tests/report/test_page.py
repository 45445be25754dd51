"""The report: figures of a store built by running real tasks in-process."""

import base64
import json
import re

import jax
import numpy as np
import pytest

from dyncdi_hpc.config import MergeRule, load_sweep
from dyncdi_hpc.merge.combine import merge_store
from dyncdi_hpc.report import page as page_module
from dyncdi_hpc.report.figures import object_figure
from dyncdi_hpc.report.page import write_report
from dyncdi_hpc.schedule.run import plan_sweep
from dyncdi_hpc.task import run_task
from tests.conftest import write_spec

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def small_store(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    spec = load_sweep(write_spec(tmp / "s.yaml", tmp / "s.zarr", sweep={"seed": 3}))
    store, the_plan = plan_sweep(spec, spec.store)
    for task in the_plan.todo:  # in-process: the task function the workers run
        summary = run_task(str(store.path), task.model_dump_json())
        assert summary["status"] == "done"
    merge_store(store, MergeRule(select="all", bootstrap=20))
    return store


def test_merged_group_has_strain_and_uncertainties_with_units(small_store):
    key = small_store.merged_keys()[0]
    ds = small_store.read_merged(key)
    for name, units in {
        "displacement": "nm",
        "strain": "1",
        "phase_std": "rad",
        "displacement_std": "nm",
        "strain_std": "1",
        "strain_sem": "1",
        "amplitude_sem": "1",
    }.items():
        assert ds[name].attrs["units"] == units, name
        assert ds[name].attrs["long_name"], name
    inside = ds["support"].values
    assert np.isfinite(ds["strain"].values[inside]).mean() > 0.5
    assert np.all(np.isnan(ds["displacement"].values[~inside]))
    attrs = small_store.merged_attrs(key)
    assert len(attrs["selected"]) == 3
    assert set(attrs["members"]) <= set(attrs["selected"])
    assert ds["member_outlier"].shape == (3,)


@pytest.mark.slow
def test_report_is_a_self_contained_page_with_valid_pngs(small_store, tmp_path, monkeypatch):
    truth_figures = []

    def spy(*args, **kwargs):
        truth_figures.append(kwargs)
        return object_figure(*args, **kwargs)

    monkeypatch.setattr(page_module, "object_figure", spy)
    page = write_report(small_store, tmp_path / "report")
    html = page.read_text()
    pngs = sorted((tmp_path / "report").glob("*.png"))
    assert {p.name for p in pngs} == {
        "xtal-kinematical-intensity.png",
        "xtal-kinematical-object.png",
        "xtal-kinematical-uncertainty.png",
        "xtal-kinematical-support.png",
        "xtal-kinematical-truth.png",
        "xtal-kinematical-prtf.png",
        "losses.png",
    }
    embedded = re.findall(r'src="data:image/png;base64,([^"]+)"', html)
    assert len(embedded) == len(pngs)
    for p in pngs:
        assert p.read_bytes()[:8] == PNG_MAGIC
        assert p.name in html
    for data in embedded:
        assert base64.b64decode(data)[:8] == PNG_MAGIC
    assert not re.search(r'src="(?!data:)', html)  # nothing outside the page
    assert "phase RMS" in html
    tasks = html.split("<h2>Tasks</h2>")[1]
    assert tasks.count("<tr>") == 1 + 3
    assert "Provenance" in html and "<h2>Sweep</h2>" in html
    # the truth comparison on the conjugate grid's own voxel sizes (nm), zoomed on the crystal
    (kwargs,) = truth_figures
    assert len(kwargs["voxel_nm"]) == 3 and min(kwargs["voxel_nm"]) > 1.0
    assert len(kwargs["limits_nm"]) == 3
    # the merge rule and the sweep: tables of keys and values, no JSON
    rule = html.split("Merge rule:")[1].split("</table>")[0]
    sweep = html.split("<h2>Sweep</h2>")[1].split("<h2>Tasks</h2>")[0]
    for text in (rule, sweep):
        assert "{" not in text and "&quot;" not in text and '"' not in text
    assert "<td>select</td><td>all</td>" in rule and "<td>bootstrap</td><td>20</td>" in rule
    assert "<p>none</p>" in sweep  # plan_sweep records no sweep: test_tables.py shows one


def test_rerunning_a_finished_task_is_a_no_op(small_store):
    tid = small_store.result_ids()[0]
    spec = small_store.result_attrs(tid)["spec"]
    assert run_task(str(small_store.path), json.dumps(spec))["status"] == "skipped"
    assert jax.devices()[0].platform in small_store.result_attrs(tid)["device"]["platform"]


def test_the_modelled_intensity_of_a_dynamical_group_is_the_dynamical_model():
    """A thick crystal's dynamical scan: the report's dynamical model of the true object (at the
    scan's rocking offset) reproduces it; the kinematical |FFT|^2 of the same object does not."""
    from dyncdi_hpc.config import CrystalConfig, SimulateConfig
    from dyncdi_hpc.data.measurement import Measurement
    from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical
    from dyncdi_hpc.report.page import modelled_intensity
    from tests.recon.test_dynamical_recon import GEOMETRY_16

    geometry = GEOMETRY_16.build()
    cfg = SimulateConfig(geometry=GEOMETRY_16, crystal=CrystalConfig(size_nm=450.0), noise=False)
    sim = simulate_dynamical(cfg, geometry)
    data, truth = sim.data.intensity, sim.data.truth
    m = Measurement(data, None, geometry, truth)
    obj = truth.amplitude * np.exp(1j * truth.phase)

    def misfit(model: str) -> float:
        model_i = modelled_intensity(obj, data, None, model, m, sim.rocking_offset_rad)
        return float(np.linalg.norm(model_i - data) / np.linalg.norm(data))

    dynamical, kinematical = misfit("dynamical"), misfit("kinematical")
    assert dynamical < 0.01 and kinematical > 0.2, (dynamical, kinematical)  # 0.002, 0.38
