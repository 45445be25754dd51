import pytest

from dyncdi_hpc.config import load_sweep
from dyncdi_hpc.errors import DyncdiError
from tests.conftest import REPO, write_spec


def test_demo_spec_validates():
    spec = load_sweep(REPO / "workflows" / "demo.yaml")
    assert spec.name == "demo"
    assert spec.store.is_absolute()


def test_malformed_yaml_names_line_and_column(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("name: x\nsweep: [1, 2\nstore: s.zarr\n")
    with pytest.raises(DyncdiError, match=r"malformed YAML at line \d+, column \d+"):
        load_sweep(path)


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda d: d["base"].update(tv_wieght=0.1), "base.tv_wieght: unknown key"),
        (lambda d: d.update(colour="red"), "colour: unknown key"),
        (lambda d: d["base"].update(ad_steps="many"), "base.ad_steps: Input should be a valid"),
        (lambda d: d["base"].update(loss="l1"), "base.loss: Input should be 'poisson'"),
        (lambda d: d.pop("store"), "store: Field required"),
        (lambda d: d["sweep"].update(learning=[1]), "sweep.learning: not a parameter"),
        (lambda d: d["sweep"].update(tv_weight=3), "sweep.tv_weight: give a list"),
        (lambda d: d["base"].update(recipe="10*XX"), "unknown step 'XX'"),
        (
            lambda d: d["merge"].update(metric="free_deviance"),
            "merge.metric: free_deviance ranks by held-out voxels, and some tasks hold none out",
        ),
        (
            lambda d: d["datasets"]["xtal"]["simulate"]["geometry"].update(energy_kev=-1),
            "datasets.xtal.simulate.geometry.energy_kev: Input should be greater than 0",
        ),
    ],
)
def test_bad_spec_errors_name_the_field(tmp_path, edit, message):
    import yaml

    path = write_spec(tmp_path / "s.yaml", tmp_path / "s.zarr", sweep={"seed": 2})
    data = yaml.safe_load(path.read_text())
    edit(data)
    path.write_text(yaml.safe_dump(data))
    with pytest.raises(DyncdiError) as err:
        load_sweep(path)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_spec_file(tmp_path):
    with pytest.raises(DyncdiError, match="no such file"):
        load_sweep(tmp_path / "nope.yaml")


def test_new_neutral_fields_keep_task_ids_and_fingerprints_of_older_stores():
    """Ids computed by the code before `stages`, `saturation` and simulate.model existed."""
    from dyncdi_hpc.config import ADStage, ReconParams, TaskSpec
    from dyncdi_hpc.identity import stable_hash
    from tests.conftest import sim_config

    spec = TaskSpec(dataset="d", fingerprint="f", params=ReconParams(), seed=0)
    assert spec.task_id == "423956ba11f4d9e4"
    payload = {"kind": "simulate", "config": sim_config().fingerprint_payload()}
    assert stable_hash(payload) == "bb242a09ec94796f"
    staged = ReconParams(stages=(ADStage(model="kinematical", ad_steps=10),))
    other = spec.model_copy(update={"params": staged})
    assert other.task_id != spec.task_id
    dyn = sim_config().model_copy(update={"model": "dynamical"})
    assert stable_hash({"kind": "simulate", "config": dyn.fingerprint_payload()}) != stable_hash(
        payload
    )


def test_dynamical_only_fields_enter_the_ids_of_dynamical_tasks_only():
    from dyncdi_hpc.config import ReconParams, TaskSpec

    def task_id(**params) -> str:
        return TaskSpec(dataset="d", fingerprint="f", params=ReconParams(**params), seed=0).task_id

    assert task_id(dynamical_start="previous") == task_id() == "423956ba11f4d9e4"
    dynamical = {"model": "dynamical"}
    assert task_id(**dynamical, dynamical_start="previous") != task_id(**dynamical)
    staged = {"stages": [{"model": "dynamical", "ad_steps": 5}]}
    assert task_id(**staged, dynamical_start="flat_phase") != task_id(**staged)


def test_extension_keys_hold_anchors_and_are_not_configuration(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(
        (REPO / "workflows" / "demo.yaml")
        .read_text()
        .replace("datasets:\n", "x-note: &n 3\nx-anything: {whatever: 1}\ndatasets:\n", 1)
        .replace("n_lobes: 3", "n_lobes: *n")
    )
    spec = load_sweep(path)
    assert spec == load_sweep(REPO / "workflows" / "demo.yaml").model_copy(
        update={"store": spec.store}
    )


@pytest.mark.parametrize(
    "name",
    [
        "demo",
        "thick-crystal",
        "sizes",
        "thick-crystal64",
        "sizes64",
        "thick-crystal128",
        "sizes128",
        "aps34idc-au111",
        "aps34idc-au111-models",
    ],
)
def test_shipped_workflows_validate(name):
    spec = load_sweep(REPO / "workflows" / f"{name}.yaml")
    assert spec.name == name


def test_shipped_simulate_config_is_the_demos_dataset():
    import yaml

    from dyncdi_hpc.config import SimulateConfig

    config = SimulateConfig(
        **yaml.safe_load((REPO / "workflows" / "simulate-au111.yaml").read_text())
    )
    assert config == load_sweep(REPO / "workflows" / "demo.yaml").datasets["au111"].simulate


def test_store_and_dataset_paths_resolve_from_the_spec_files_folder(tmp_path, monkeypatch):
    import yaml

    folder = tmp_path / "run"
    folder.mkdir()
    dataset = {"path": "frames", "spec": "scan.spec", "dark": "dark.tif", "scan": 54}
    dataset["geometry"] = {"beamline": "presets/mine.yaml", "energy_kev": 9.0}
    spec = {"name": "x", "store": "out/s.zarr", "datasets": {"a": dataset}}
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    monkeypatch.chdir(tmp_path)  # not the spec's folder: paths do not depend on it
    loaded = load_sweep(folder.relative_to(tmp_path) / "spec.yaml")
    base = folder.resolve()
    assert loaded.store == base / "out" / "s.zarr"
    a = loaded.datasets["a"]
    assert (a.path, a.spec, a.dark, a.flat) == (
        base / "frames",
        base / "scan.spec",
        base / "dark.tif",
        None,
    )
    assert a.geometry == {"beamline": str(base / "presets" / "mine.yaml"), "energy_kev": 9.0}
    spec["store"] = str(tmp_path / "elsewhere.zarr")
    spec["datasets"]["a"]["geometry"]["beamline"] = "aps-34idc"  # a packaged preset's name
    (folder / "spec.yaml").write_text(yaml.safe_dump(spec))
    loaded = load_sweep(folder / "spec.yaml")
    assert loaded.store == tmp_path / "elsewhere.zarr"
    assert loaded.datasets["a"].geometry["beamline"] == "aps-34idc"
