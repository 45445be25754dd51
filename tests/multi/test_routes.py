"""Several reflections of one crystal: the joint AD reconstruction of u and the classic route."""

import time

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pydantic import ValidationError

from dyncdi_hpc.analysis.registration import remove_translation
from dyncdi_hpc.analysis.strain_tensor import displacement_errors, strain_dataset, strain_errors
from dyncdi_hpc.config import (
    CrystalConfig,
    JointADConfig,
    MultiReflectionConfig,
    ReconParams,
    load_sweep,
)
from dyncdi_hpc.data.simulate_multi import simulate_multi
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.multi.independent import independent_route, joint_from_independent
from dyncdi_hpc.multi.sets import build_reflections, sample_truth_dataset, simulated_multi_inputs
from dyncdi_hpc.multi.stage import run_multi_reflection
from dyncdi_hpc.physics.frames import SampleGrid
from dyncdi_hpc.physics.geometry import Geometry
from dyncdi_hpc.physics.resample import Reflection
from dyncdi_hpc.recon.joint import (
    JointConfig,
    JointParams,
    joint_models,
    joint_objective,
    joint_problem,
    reconstruct_joint,
)
from dyncdi_hpc.recon.optimise import Hyper
from dyncdi_hpc.recon.projections import gaussian_blur
from tests.conftest import GEOMETRY_32, REPO
from tests.recon.test_gradients import _assert_matches_central_differences

HKLS = [(1, 1, 1), (-1, 1, 1), (0, 0, 2)]
GRID = SampleGrid((40, 40, 40), 40.0)


def _reflections(hkls, **update):
    return tuple(
        Reflection(GEOMETRY_32.model_copy(update={"hkl": h, **update}).build()) for h in hkls
    )


def _blurred(support):
    return np.asarray(gaussian_blur(jnp.asarray(support, jnp.float32), jnp.asarray(1.0)))


@pytest.fixture(scope="module")
def simulated():
    return simulate_multi(_reflections(HKLS), GRID)


@pytest.fixture(scope="module")
def joint(simulated):
    """Joint AD from the truth's support blurred and u = 0 (kinematical, noiseless)."""
    t0 = time.perf_counter()
    start = _blurred(simulated.truth.support)
    result = reconstruct_joint(simulated.intensities, simulated.reflections, GRID, start)
    return result, time.perf_counter() - t0


def _errors(u, shape, truth):
    """u errors (3,) / the largest component range, and the strain error, after removing the
    crystal's translation and a constant u."""
    _, u, _ = remove_translation(shape, u, truth.amplitude)
    region = truth.support & (shape > 0.5)
    rms, span = displacement_errors(u, truth.displacement_nm, region)
    return rms / span.max(), strain_errors(u, truth.displacement_nm, region, GRID.voxel_nm)


@pytest.mark.slow
def test_joint_reconstruction_recovers_every_component_of_u_and_the_tensor(simulated, joint):
    result, seconds = joint
    truth = simulated.truth
    u_err, strain_err = _errors(result.displacement_nm, result.shape, truth)
    print(f"joint: u RMS / range {np.round(u_err, 4)}, strain {strain_err:.3f}, {seconds:.1f} s")
    assert np.all(u_err < 0.05)
    assert strain_err < 0.1  # measured 0.057: finite differences of a 40 nm grid
    assert result.loss[-1] < 0.05 * result.loss[0]
    ds = strain_dataset(
        result.displacement_nm,
        result.support,
        GRID,
        np.stack([r.h_nm for r in simulated.reflections]),
        HKLS,
    )
    assert ds["strain"].dims == ("i", "j", "x", "y", "z")
    assert int(ds["support"].sum()) > 0.9 * truth.support.sum()


def test_independent_route_is_compared_with_the_joint_one(simulated, joint):
    result, joint_seconds = joint
    truth = simulated.truth
    t0 = time.perf_counter()
    classic = independent_route(
        simulated.intensities,
        simulated.reflections,
        GRID,
        ReconParams(),
        key=jax.random.key(0),
        reference=truth.amplitude,
    )
    seconds = time.perf_counter() - t0
    amplitude = np.abs(classic.objects).min(axis=0)
    amplitude = amplitude / np.quantile(amplitude[classic.support], 0.9)
    u = np.where(classic.support, classic.displacement_nm, 0.0)
    u_ind, strain_ind = _errors(u, np.where(classic.support, amplitude, 0.0), truth)
    u_joint, strain_joint = _errors(result.displacement_nm, result.shape, truth)
    print(
        f"\nindependent: u RMS / range {np.round(u_ind, 4)}, strain {strain_ind:.3f}, "
        f"{seconds:.1f} s\njoint:       u RMS / range {np.round(u_joint, 4)}, "
        f"strain {strain_joint:.3f}, {joint_seconds:.1f} s"
    )
    assert np.all(u_ind < 0.05)
    assert strain_ind < 0.1


@pytest.mark.slow
@pytest.mark.parametrize("model", ["kinematical", "dynamical"])
def test_gradient_of_the_joint_loss_through_the_resampling_matches_central_differences(model):
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        shape = (8, 8, 8)
        reflections = _reflections(HKLS, shape=shape)
        grid = SampleGrid((9, 9, 9), 160.0)
        support = np.zeros(grid.shape, bool)
        support[2:7, 2:7, 3:7] = True
        models = joint_models(model, reflections, grid, support)
        cfg = JointConfig(reflections, grid, models=models)
        intensities = tuple(rng.poisson(50 * rng.random(shape)).astype(float) for _ in HKLS)
        masks = tuple(rng.random(shape) < 0.1 for _ in HKLS)
        problem = joint_problem(intensities, masks, cfg, support, dtype=jnp.float64)
        params = JointParams(
            logits=jnp.asarray(rng.normal(size=grid.shape)),
            displacement=jnp.asarray(0.05 * rng.normal(size=(3, *grid.shape))),
            log_scale=jnp.asarray([0.2, -0.1, 0.3]),
            rocking_offset=jnp.asarray([0.3, -0.2, 0.1]),
        )
        hyper = Hyper((jnp.asarray(0.5),))

        def f(p):
            return joint_objective(p, problem, cfg, hyper)[0]

        n = int(np.prod(grid.shape))
        inside = int(np.ravel_multi_index((4, 4, 4), grid.shape))
        # a logit, each u component inside the support, two scales, and with the dynamical
        # model two rocking offsets (the kinematical model does not use them: zero gradient)
        components = [inside, n + inside, 2 * n + inside, 3 * n + inside, 4 * n, 4 * n + 2]
        if model == "dynamical":
            components += [4 * n + 3, 4 * n + 5]
        _assert_matches_central_differences(
            f, params, range(30, 33), lambda size: components, nonzero=True
        )


def _bad(reflections, grid=GRID, **kw):
    intensities = tuple(np.ones(r.geometry.shape) for r in reflections)
    start = np.zeros(grid.shape)
    return reconstruct_joint(
        intensities, reflections, grid, start, options=JointADConfig.model_construct(steps=1, **kw)
    )


def test_two_or_coplanar_reflections_do_not_give_a_tensor():
    for hkls in ([(1, 1, 1), (0, 0, 2)], [(1, 1, 1), (-1, 1, 1), (0, 2, 2)]):
        with pytest.raises(DyncdiError) as err:
            _bad(_reflections(hkls))
        assert err.value.field == "reflections"
        assert "underdetermined" in err.value.problem and err.value.fix
    with pytest.raises(DyncdiError) as err:
        independent_route(
            (np.ones((32, 32, 32)),) * 2,
            _reflections([(1, 1, 1), (0, 0, 2)]),
            GRID,
            ReconParams(),
            key=jax.random.key(0),
        )
    assert err.value.field == "reflections"


def test_inconsistent_reflections_are_refused_before_anything_runs():
    au = _reflections(HKLS)
    pt = _reflections([(0, 0, 2)], material="Pt")
    with pytest.raises(DyncdiError) as err:
        _bad((*au[:2], *pt))
    assert err.value.field == "reflections[2].material"
    other_energy = _reflections([(0, 0, 2)], energy_kev=10.0)
    with pytest.raises(DyncdiError) as err:
        _bad((*au[:2], *other_energy))
    assert err.value.field == "reflections[2].energy_kev"
    g = au[0].geometry
    forbidden = Geometry(
        g.energy_kev, "Au", (2, 1, 0), g.shape, g.rocking_step_rad, g.pixel_size_m, 1.0
    )
    with pytest.raises(DyncdiError) as err:
        _bad((*au, Reflection(forbidden)))
    assert err.value.field == "reflections[3].hkl" and "forbidden" in err.value.problem
    with pytest.raises(DyncdiError) as err:
        _bad(au, model="multislice")
    assert err.value.field == "model"


@pytest.mark.slow
def test_dynamical_model_is_selectable_and_its_joint_fit_descends():
    base = GEOMETRY_32.model_copy(
        update={"shape": (16, 16, 16), "rocking_step_deg": 0.01, "pixel_size_um": 110.0}
    )
    reflections = tuple(Reflection(base.model_copy(update={"hkl": h}).build()) for h in HKLS)
    grid = SampleGrid((16, 16, 16), 50.0)
    sim = simulate_multi(reflections, grid, crystal=CrystalConfig(size_nm=450.0), model="dynamical")
    start = _blurred(sim.truth.support)
    result = reconstruct_joint(
        sim.intensities,
        reflections,
        grid,
        start,
        options=JointADConfig(model="dynamical", steps=10, log_every=5),
    )
    assert np.all(np.isfinite(result.loss))
    assert result.loss[-1] < 0.7 * result.loss[0]
    assert np.isfinite(result.displacement_nm).all()


@pytest.mark.slow
def test_chained_route_on_noisy_data_reports_both_errors():
    """Poisson noise (peak 1e5 counts): independent + least squares, then the joint AD from
    it (independent_route, then joint_from_independent), no truth used but for the final
    ambiguity removal (reference)."""
    reflections = _reflections([(1, 1, 1), (-1, 1, 1), (1, -1, 1), (0, 0, 2)])
    sim = simulate_multi(reflections, GRID, noise=True)
    truth = sim.truth
    classic = independent_route(
        sim.intensities,
        reflections,
        GRID,
        ReconParams(),
        key=jax.random.key(0),
        reference=truth.amplitude,
    )
    joint = joint_from_independent(classic, sim.intensities, reflections)
    amplitude = np.abs(classic.objects).min(axis=0)
    amplitude = np.where(
        classic.support, amplitude / np.quantile(amplitude[classic.support], 0.9), 0.0
    )
    u = np.where(classic.support, classic.displacement_nm, 0.0)
    u_ind, strain_ind = _errors(u, amplitude, truth)
    u_joint, strain_joint = _errors(joint.displacement_nm, joint.shape, truth)
    print(
        f"\nnoisy independent: u RMS / range {np.round(u_ind, 4)}, strain {strain_ind:.3f}"
        f"\nnoisy joint:       u RMS / range {np.round(u_joint, 4)}, strain {strain_joint:.3f}"
    )
    assert np.all(u_ind < 0.05) and np.all(u_joint < 0.05)
    assert strain_joint < 0.1


# ------------------------------------------------------------ configuration and the workflow


def test_the_workflow_file_validates_and_builds_its_reflections():
    spec = load_sweep(REPO / "workflows" / "multi-reflection.yaml")
    sets = spec.multi
    cfg = sets["au4"]
    assert [r.dataset for r in cfg.reflections] == list(spec.datasets)
    reflections = build_reflections(cfg, {})
    assert [r.geometry.hkl for r in reflections] == [(1, 1, 1), (-1, 1, 1), (1, -1, 1), (0, 0, 2)]
    assert cfg.grid.shape == (40, 40, 40) and cfg.joint.smooth_weight == 30.0


def _multi_cfg(hkls, **update):
    geometry = GEOMETRY_32.model_dump()
    entries = [
        {"dataset": f"d{j}", "geometry": {**geometry, "hkl": list(h)}} for j, h in enumerate(hkls)
    ]
    data = {"reflections": entries, "grid": {"shape": [40, 40, 40], "voxel_nm": 40.0}, **update}
    return MultiReflectionConfig.model_validate(data)


def test_multi_config_refuses_bad_sets_naming_the_field(tmp_path):
    with pytest.raises(ValidationError, match="own dataset"):
        MultiReflectionConfig.model_validate(
            {
                "reflections": [{"dataset": "a"}, {"dataset": "a"}],
                "grid": {"shape": [8] * 3, "voxel_nm": 1},
            }
        )
    with pytest.raises(ValidationError, match="geometry for every reflection"):
        MultiReflectionConfig.model_validate(
            {
                "reflections": [{"dataset": "a"}],
                "grid": {"shape": [8] * 3, "voxel_nm": 1},
                "simulate": {},
            }
        )
    with pytest.raises(DyncdiError) as err:
        build_reflections(_multi_cfg([(1, 1, 1), (0, 0, 2)]), {})
    assert err.value.field == "multi.reflections" and "underdetermined" in err.value.problem
    assert len(build_reflections(_multi_cfg([(1, 1, 1), (0, 0, 2)], tensor=False), {})) == 2
    with pytest.raises(DyncdiError) as err:
        build_reflections(_multi_cfg([(1, 1, 1), (1, 1, 0), (0, 0, 2)]), {})
    assert err.value.field == "multi.reflections[1].geometry.hkl"
    text = (REPO / "workflows" / "multi-reflection.yaml").read_text()
    bad = tmp_path / "bad.yaml"
    # au111 given as a file instead of from_store, though multi.au4 simulates it
    geometry = GEOMETRY_32.model_dump(mode="json")
    bad.write_text(
        text.replace(
            "  au111: {from_store: true}", f"  au111: {{path: x.npy, geometry: {geometry}}}"
        )
    )
    with pytest.raises(DyncdiError) as err:
        load_sweep(bad)
    assert err.value.field == "multi.au4.reflections[0].dataset" and "from_store" in err.value.fix


def test_run_multi_reflection_from_merged_objects_writes_u_and_the_tensor():
    cfg = _multi_cfg(
        HKLS,
        simulate={"noise": False},
        joint={"steps": 100},
    )
    inputs = simulated_multi_inputs(cfg)
    assert len({ds.attrs["fingerprint"] for ds in inputs.values()}) == 3
    # the truths stand in for merged single-reflection results (amplitude, phase)
    merged = {
        name: ds[["truth_amplitude", "truth_phase"]].rename(
            truth_amplitude="amplitude", truth_phase="phase"
        )
        for name, ds in inputs.items()
    }
    ds = run_multi_reflection(cfg, inputs, merged)
    assert ds.attrs["kind"] == "dyncdi-multi" and ds.attrs["from_merged"] == [True] * 3
    assert ds["strain"].dims == ("i", "j", "x", "y", "z")
    assert list(ds["reflection"].values) == ["d0", "d1", "d2"]
    truth = sample_truth_dataset(cfg)
    for name in ("displacement", "displacement_independent"):
        u = ds[name].values.astype(float)
        region = truth["support"].values & np.all(np.isfinite(u), axis=0)
        assert region.sum() > 0.9 * truth["support"].values.sum()
        u = np.nan_to_num(u)
        rms, span = displacement_errors(u, truth["displacement"].values.astype(float), region)
        assert np.all(rms / span.max() < 0.05), name


@pytest.mark.slow
def test_joint_dynamical_reconstruction_of_dynamical_data():
    """Dynamical data (800 nm Au, 32^3): the joint fit through the dynamical model, rocking
    offsets held at the refraction shift the scans are centred on."""
    reflections = _reflections(HKLS)
    sim = simulate_multi(reflections, GRID, model="dynamical")
    result = reconstruct_joint(
        sim.intensities,
        reflections,
        GRID,
        _blurred(sim.truth.support),
        # 150 steps at 3x the default u rate: u within 0.030 of its range, strain 0.078 (the
        # default rate needs 400 steps for 0.039 and 0.075; 120 steps: 0.033 and 0.082)
        options=JointADConfig(model="dynamical", steps=150, lr_displacement=1.2e-3),
    )
    u_err, strain_err = _errors(result.displacement_nm, result.shape, sim.truth)
    print(f"\ndynamical joint: u RMS / range {np.round(u_err, 4)}, strain {strain_err:.3f}")
    assert np.all(u_err < 0.05)
    assert strain_err < 0.1
