"""AD gradients of the objective against central finite differences (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from dyncdi_hpc.config import GeometryConfig
from dyncdi_hpc.physics.models import Kinematical
from dyncdi_hpc.physics.objects import CrystalParams
from dyncdi_hpc.recon.optimise import ADParams, Hyper, Problem, StepConfig, objective
from dyncdi_hpc.recon.regularisers import shape_tv

SHAPE = (8, 8, 8)


def _problem(rng):
    geometry = GeometryConfig(
        energy_kev=9.0, shape=SHAPE, rocking_step_deg=0.02, pixel_size_um=55, detector_distance_m=1
    ).build()
    data = rng.poisson(50 * rng.random(SHAPE)).astype(float)
    measured = rng.random(SHAPE) > 0.1
    support = np.zeros(SHAPE, bool)
    support[1:6, 2:7, 1:7] = True
    params = ADParams(
        CrystalParams(jnp.asarray(rng.normal(size=SHAPE)), jnp.asarray(rng.normal(size=SHAPE))),
        jnp.asarray(0.3),
    )
    problem = Problem(jnp.asarray(data), jnp.asarray(measured), jnp.asarray(support))
    return geometry, params, problem


def _assert_matches_central_differences(f, params, seeds, components, nonzero=False):
    """Compare jax.grad(f) with central differences along random directions (step 1e-5) and
    along single components (step 1e-6): relative error < 1e-4 each."""
    grad = jax.grad(f)(params)
    flat, unravel = ravel_pytree(params)
    gflat, _ = ravel_pytree(grad)
    assert flat.dtype == jnp.float64
    for seed in seeds:
        direction = jnp.asarray(np.random.default_rng(seed).normal(size=flat.shape))
        direction = direction / jnp.linalg.norm(direction)
        h = 1e-5
        fd = (f(unravel(flat + h * direction)) - f(unravel(flat - h * direction))) / (2 * h)
        assert abs(float(jnp.vdot(gflat, direction) - fd)) / abs(float(fd)) < 1e-4
    for index in components(flat.size):
        e = jnp.zeros_like(flat).at[index].set(1.0)
        fd = (f(unravel(flat + 1e-6 * e)) - f(unravel(flat - 1e-6 * e))) / 2e-6
        if nonzero:
            assert abs(fd) > 1e-8
        assert abs(float(gflat[index] - fd)) / abs(float(fd)) < 1e-4


@pytest.mark.parametrize("loss", ["poisson", "amplitude"])
@pytest.mark.parametrize("tv_weight", [0.0, 0.5])
def test_objective_gradient_matches_central_differences(loss, tv_weight):
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        geometry, params, problem = _problem(rng)
        cfg = StepConfig(geometry, Kinematical(), loss, 0.1, 0.1, 0.1, (shape_tv,))
        hyper = Hyper((jnp.asarray(tv_weight),))

        def f(p):
            return objective(p, problem, hyper, cfg)[0]

        # random directions exercise every parameter at once; then single components inside
        # the support (shape, phase) and the scale
        inside = np.ravel_multi_index((3, 4, 3), SHAPE)
        n = int(np.prod(SHAPE))
        _assert_matches_central_differences(
            f, params, range(10, 13), lambda size: (inside, n + inside, 2 * n)
        )


def test_gradient_outside_the_support_is_zero():
    with jax.enable_x64(True):
        geometry, params, problem = _problem(np.random.default_rng(2))
        cfg = StepConfig(geometry, Kinematical(), "poisson", 0.1, 0.1, 0.1, (shape_tv,))
        hyper = Hyper((jnp.asarray(0.1),))
        grad = jax.grad(lambda p: objective(p, problem, hyper, cfg)[0])(params)
        outside = ~np.asarray(problem.support)
        assert np.all(np.asarray(grad.crystal.logits)[outside] == 0)
        assert np.all(np.isfinite(np.asarray(grad.crystal.logits)))


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["poisson", "amplitude"])
def test_coherence_width_gradient_matches_central_differences(loss):
    """The log-widths of the coherence function, and every other parameter through the blur."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(4)
        geometry, params, problem = _problem(rng)
        params = params._replace(log_widths=jnp.log(jnp.asarray([0.6, 1.1, 0.8])))
        cfg = StepConfig(geometry, Kinematical(), loss, 0.1, 0.1, 0.1, (), coherence=True)
        hyper = Hyper()

        def f(p):
            return objective(p, problem, hyper, cfg)[0]

        # random directions, then the three log-widths (the last leaves)
        _assert_matches_central_differences(
            f, params, range(20, 22), lambda size: range(size - 3, size), nonzero=True
        )
