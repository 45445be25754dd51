"""AD refinement with the dynamical model: nuisance parameters and recovery of h.u."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from dyncdi_hpc.config import CrystalConfig, GeometryConfig, ReconParams, SimulateConfig
from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical, truth_params
from dyncdi_hpc.merge.align import align, phase_rms
from dyncdi_hpc.physics.objects import CrystalParams, object_of
from dyncdi_hpc.recon.optimise import ADParams, Hyper, Problem, confined, objective, refine
from dyncdi_hpc.recon.projections import gaussian_blur
from dyncdi_hpc.recon.stages import rescaled, stage_start, step_config, with_nuisances

# 16^3, voxels ~(88, 82, 78) nm: a 450 nm crystal is ~2.2 extinction depths (208 nm) thick
GEOMETRY_16 = GeometryConfig(
    energy_kev=9.0,
    material="Au",
    hkl=(1, 1, 1),
    shape=(16, 16, 16),
    rocking_step_deg=0.01,
    pixel_size_um=55.0,
    detector_distance_m=0.5,
)


def _setup(model: str, data, *, phase, dtype=jnp.float32, background: float | None = None):
    geometry = data.geometry
    truth = data.truth
    counts = jnp.asarray(np.fft.ifftshift(data.intensity), dtype)  # detector frame, FFT order
    loose = gaussian_blur(jnp.asarray(truth.amplitude > 0, dtype), jnp.asarray(1.0)) > 0.1
    tp = truth_params(data, dtype)
    logits = jnp.clip(jnp.nan_to_num(tp.logits, posinf=4.0, neginf=-4.0), -4, 4)
    params = ReconParams(model=model, lr_phase=3e-2, background=background)
    cfg = step_config(geometry, params, loose)
    start = ADParams(CrystalParams(logits, jnp.asarray(phase, dtype)), jnp.asarray(0.0, dtype))
    start = with_nuisances(start, params, geometry)
    problem = Problem(counts, jnp.ones(counts.shape, bool), loose)
    return rescaled(start, problem, cfg), problem, Hyper(), cfg


@pytest.mark.slow
def test_nuisance_gradients_match_central_differences() -> None:
    """d objective / d (log background, rocking offset) of the dynamical model, float64."""
    geometry = GEOMETRY_16.model_copy(update={"shape": (8, 8, 8), "detector_distance_m": 1.0})
    cfg = SimulateConfig(
        geometry=geometry, crystal=CrystalConfig(size_nm=600.0), noise=False, peak_counts=1e3
    )
    with jax.enable_x64(True):
        data = simulate_dynamical(cfg, geometry.build(), background=0.5).data
        phase = np.where(data.truth.support, data.truth.phase + 0.3, 0.0)
        start, problem, hyper, step = _setup(
            "dynamical", data, phase=phase, dtype=jnp.float64, background=0.2
        )
        start = start._replace(rocking_offset=start.rocking_offset + 0.3)

        def f(p):
            return objective(p, problem, hyper, step)[0]

        grads = jax.grad(f)(start)
        for field in ("log_background", "rocking_offset"):
            eps = 1e-5
            plus = f(start._replace(**{field: getattr(start, field) + eps}))
            minus = f(start._replace(**{field: getattr(start, field) - eps}))
            numeric = float(plus - minus) / (2 * eps)
            analytic = float(getattr(grads, field))
            assert abs(numeric) > 1e-6, field  # the check can fail
            assert analytic == pytest.approx(numeric, rel=1e-5), field


def _score(fit: ADParams, problem: Problem, data) -> tuple[float, float, tuple]:
    truth = data.truth.amplitude * np.exp(1j * data.truth.phase)
    crystal = fit.crystal
    obj = np.asarray(object_of(confined(crystal, problem.support)))
    a = align(obj, truth)
    interior = binary_erosion(data.truth.support)
    return phase_rms(a.obj, truth, data.truth.support), phase_rms(a.obj, truth, interior), a


# 32^3, voxels ~(98, 106, 102) nm: a 1.3 um crystal is ~2 Pendelloesung distances (0.65 um)
GEOMETRY_THICK = GEOMETRY_16.model_copy(
    update={"shape": (32, 32, 32), "rocking_step_deg": 0.0045, "detector_distance_m": 1.3}
)


@pytest.mark.slow
def test_dynamical_ad_recovers_the_phase_and_rocking_offset() -> None:
    """Noiseless dynamical data of a crystal ~2 Pendelloesung distances thick (t ~ 2 Lambda0,
    ~6 extinction depths), start from the true shape with zero phase: the dynamical AD recovers
    h.u to < 0.1 rad and the absolute rocking offset to < 1 rocking step; the kinematical AD on
    the same data is at least 3x worse.

    A phase ramp along m0 is a rocking offset in both models (two-beam TT absorbs a linear
    phase into the deviation parameter), so the offset is compared after adding back the ramp
    that alignment removes: offset - ramp0 N0 / 2 pi (rocking steps).
    """
    geometry = GEOMETRY_THICK.build()
    cfg = SimulateConfig(
        geometry=GEOMETRY_THICK, crystal=CrystalConfig(size_nm=1300.0), noise=False
    )
    sim = simulate_dynamical(cfg, geometry)
    data = sim.data
    true_offset = sim.rocking_offset_rad / geometry.rocking_step_rad
    zero = np.zeros(geometry.shape)
    results = {}
    for model in ("dynamical", "kinematical"):
        start, problem, hyper, step = _setup(model, data, phase=zero)
        if model == "dynamical":
            assert step.model.options.box is not None
            assert step.model.options.box != ((0, 32), (0, 32), (0, 32))
        # the dynamical fit is within 0.050 rad by step 120 (0.086 at 80, 0.035 at 200, 0.023
        # at 600, 150 s more on 2 cores); the kinematical one, cheap (0.44 rad), gets 600
        steps = 120 if model == "dynamical" else 600
        fit, _ = refine(start, problem, hyper, step, steps, steps)
        results[model] = (fit, *_score(fit, problem, data))
    fit, rms, rms_inner, a = results["dynamical"]
    offset = float(fit.rocking_offset) - a.ramp[0] * geometry.shape[0] / (2 * np.pi)
    assert not a.twin
    assert rms < 0.1 and rms_inner < 0.1, (rms, rms_inner)
    assert abs(offset - true_offset) < 1.0, (offset, true_offset)
    kin_rms = results["kinematical"][2]
    assert kin_rms > 3 * rms, (kin_rms, rms)


@pytest.mark.slow
def test_thin_crystal_dynamical_and_kinematical_reconstructions_agree() -> None:
    """t ~ 0.15 Lambda0 (100 nm, voxels ~10 nm): multiple scattering is a small correction, so
    the kinematical AD and the dynamical AD continued from it recover the same h.u from the
    same dynamical data, and the truth; the dynamical loss ends lower (it is the right model).
    """
    geometry_cfg = GEOMETRY_16.model_copy(
        update={"shape": (32, 32, 32), "rocking_step_deg": 0.02, "detector_distance_m": 0.125}
    )
    geometry = geometry_cfg.build()
    cfg = SimulateConfig(geometry=geometry_cfg, crystal=CrystalConfig(size_nm=100.0), noise=False)
    data = simulate_dynamical(cfg, geometry).data
    start, problem, hyper, step = _setup("kinematical", data, phase=np.zeros(geometry.shape))
    kinematical, _ = refine(start, problem, hyper, step, 600, 600)
    params = ReconParams(model="dynamical", lr_phase=1e-2)
    dynamical_step = step_config(geometry, params, problem.support)
    start = stage_start(kinematical, kinematical, params, geometry)
    dynamical, _ = refine(
        rescaled(start, problem, dynamical_step), problem, hyper, dynamical_step, 300, 300
    )
    objs, losses = {}, {}
    for model, fit, cfg_ in (
        ("kinematical", kinematical, step),
        ("dynamical", dynamical, dynamical_step),
    ):
        rms, _, a = _score(fit, problem, data)
        assert rms < 0.1, (model, rms)
        objs[model] = a.obj
        losses[model] = float(objective(fit, problem, hyper, cfg_)[0])
    assert losses["dynamical"] < losses["kinematical"], losses
    between = align(objs["kinematical"], objs["dynamical"])
    rms_between = phase_rms(between.obj, objs["dynamical"], data.truth.support)
    assert rms_between < 0.06, rms_between
