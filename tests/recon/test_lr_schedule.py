"""Learning-rate schedules and optimisers of the AD fit (base.lr_schedule, base.optimiser)."""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from dyncdi_hpc.config import ReconParams
from dyncdi_hpc.data.simulate import simulate
from dyncdi_hpc.physics.objects import CrystalParams
from dyncdi_hpc.recon.optimise import ADParams
from dyncdi_hpc.recon.pipeline import reconstruct
from dyncdi_hpc.recon.stages import step_config
from tests.conftest import sim_config


def _step_sizes(cfg, n: int) -> list[float]:
    """|phase update| per step under a constant gradient (Adam: about the learning rate)."""
    params = ADParams(CrystalParams(jnp.zeros(4), jnp.zeros(4)), jnp.zeros(()))
    grads = jax.tree.map(jnp.ones_like, params)
    optimizer = cfg.optimizer()
    state = optimizer.init(params)
    sizes = []
    for _ in range(n):
        with jax.numpy_dtype_promotion("standard"):  # as compiled_chunk runs optax
            updates, state = optimizer.update(grads, state, params)
        sizes.append(float(jnp.abs(updates.crystal.phase[0])))
        params = optax.apply_updates(params, updates)
    return sizes


def test_cosine_decays_every_rate_to_a_tenth_over_the_stage(geometry32):
    cosine = step_config(geometry32, ReconParams(ad_steps=50, lr_schedule="cosine"))
    sizes = _step_sizes(cosine, 50)
    assert sizes[0] == pytest.approx(1e-2, rel=1e-3)  # lr_phase's default
    assert sizes[-1] == pytest.approx(1e-3, rel=0.05)
    assert all(a >= b for a, b in itertools.pairwise(sizes))
    constant = step_config(geometry32, ReconParams(ad_steps=50))
    assert _step_sizes(constant, 50)[-1] == pytest.approx(1e-2, rel=1e-3)


def test_a_constant_rate_compiles_once_for_any_step_count(geometry32):
    a = step_config(geometry32, ReconParams(ad_steps=50))
    b = step_config(geometry32, ReconParams(ad_steps=500))
    assert a == b and hash(a) == hash(b)
    c = step_config(geometry32, ReconParams(ad_steps=500, lr_schedule="cosine"))
    assert c != b


def test_a_cosine_fit_reconstructs_and_differs_from_a_constant_one(
    noiseless32, geometry32, fast_params
):
    key = jax.random.key(5)
    plain = reconstruct(noiseless32.intensity, None, geometry32, fast_params, key=key)
    cosine = fast_params.model_copy(update={"lr_schedule": "cosine"})
    decayed = reconstruct(noiseless32.intensity, None, geometry32, cosine, key=key)
    assert np.isfinite(decayed.metrics["error"]) and decayed.metrics["error"] < 0.05
    assert not np.allclose(decayed.obj, plain.obj)


def test_lbfgs_descends_at_every_step(geometry32, fast_params):
    """optax's L-BFGS with its zoom line search: every accepted step lowers the objective."""
    noisy = simulate(sim_config(noise=True), geometry32)
    params = fast_params.model_copy(update={"optimiser": "lbfgs", "ad_steps": 30})
    rec = reconstruct(noisy.intensity, None, geometry32, params, key=jax.random.key(1))
    losses = rec.ad_loss
    assert len(losses) == 30 and losses[-1] < 0.9 * losses[0]
    assert np.all(np.diff(losses) <= 1e-6 * losses[0]), losses
