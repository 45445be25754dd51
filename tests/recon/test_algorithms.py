"""ER, HIO and RAAR: their update rules, and each one reconstructing the spine's crystal."""

from dataclasses import replace

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dyncdi_hpc.config import ALGORITHMS, ReconParams
from dyncdi_hpc.merge.align import align, phase_rms
from dyncdi_hpc.recon.pipeline import reconstruct
from dyncdi_hpc.recon.projections import (
    PRState,
    ShrinkWrapParams,
    modulus_projection,
    run_block,
)

NEVER = ShrinkWrapParams(every=10**6, threshold=0.15, sigma_start=2.0, sigma_end=1.0)


def _small_problem(shape=(8, 8, 8)):
    rng = np.random.default_rng(0)
    amplitude = jnp.asarray(rng.random(shape) + 0.1, jnp.float32)
    measured = jnp.asarray(rng.random(shape) > 0.2)
    psi = jnp.asarray(rng.normal(size=shape) + 1j * rng.normal(size=shape), jnp.complex64)
    support = np.zeros(shape, bool)
    support[2:6, 1:5, 3:7] = True
    return amplitude, measured, PRState(psi, jnp.asarray(support), jnp.asarray(0, jnp.int32))


@pytest.mark.parametrize("name", ALGORITHMS)
def test_one_iteration_follows_the_update_rule(name):
    amplitude, measured, state = _small_problem()
    beta, raar_beta = 0.8, 0.7
    out = run_block(
        state,
        amplitude,
        measured,
        jnp.asarray(ALGORITHMS.index(name)),
        jnp.asarray(1),
        jnp.asarray(beta, jnp.float32),
        jnp.asarray(100),
        NEVER,
        jnp.asarray(raar_beta, jnp.float32),
    )
    psi = np.asarray(state.psi)
    p = np.asarray(modulus_projection(state.psi, amplitude, measured))
    outside = {
        "ER": np.zeros_like(psi),
        "HIO": psi - beta * p,
        # RAAR: [beta/2 (R_S R_M + I) + (1 - beta) P_M] psi outside the support
        "RAAR": raar_beta * psi + (1 - 2 * raar_beta) * p,
    }[name]
    expected = np.where(np.asarray(state.support), p, outside)
    np.testing.assert_allclose(np.asarray(out.psi), expected, rtol=1e-4, atol=1e-5)


def test_shrinkwrap_waits_for_its_start_iteration():
    amplitude, measured, state = _small_problem()
    args = (amplitude, measured, jnp.asarray(0), jnp.asarray(10), jnp.asarray(0.9), 100)
    late = replace(NEVER, every=5, start=20)
    assert bool(jnp.all(run_block(state, *args, late).support == state.support))
    early = replace(NEVER, every=5, start=0)
    assert not bool(jnp.all(run_block(state, *args, early).support == state.support))


@pytest.mark.parametrize(
    ("recipe", "starts"),
    [
        ("1000*ER", 8),
        ("2*(30*ER+170*HIO)+100*ER", 4),
        ("2*(30*ER+170*RAAR)+100*ER", 4),
    ],
)
@pytest.mark.slow
def test_each_algorithm_reconstructs_the_crystal(recipe, starts, noiseless32, geometry32):
    """Phase retrieval alone (no AD), best of several random starts by Fourier error.

    Measured success rates (phase RMS < 0.2 rad) of single starts: ER alone about 1 in 3
    (it stagnates near the twin-mixed state, the best by error is a success), HIO 6/6,
    RAAR 6/8; so the test picks the best start by error, as sweeps do.
    """
    truth = noiseless32.truth.amplitude * np.exp(1j * noiseless32.truth.phase)
    params = ReconParams(recipe=recipe, ad_steps=0)
    recs = [
        reconstruct(noiseless32.intensity, None, geometry32, params, key=jax.random.key(s))
        for s in range(starts)
    ]
    best = min(recs, key=lambda r: r.metrics["error"])
    rms = phase_rms(align(best.obj, truth).obj, truth, noiseless32.truth.support)
    assert rms < 0.2, (recipe, rms, [r.metrics["error"] for r in recs])
