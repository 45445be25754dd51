"""AD refinement: optax Adam on shape logits, phase, a global scale and (optionally) the
log-widths of a Gaussian coherence function.

The step is one jitted function; a run is a host loop over jitted chunks of log_every steps,
so values reach the host only at logging intervals.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import TaskFailed
from ..physics.geometry import Geometry
from ..physics.kinematic import CrystalParams
from ..physics.models import FORWARD_MODELS
from .coherence import blur
from .losses import LOSSES
from .regularisers import REGULARISERS


class ADParams(NamedTuple):
    """Everything AD fits: the crystal, the log of the global amplitude scale and, with partial
    coherence, the log of the coherence function's widths (3,) in pixels (else None)."""

    crystal: CrystalParams
    log_scale: jax.Array
    log_widths: jax.Array | None = None


class Problem(NamedTuple):
    """What AD fits against (FFT order, (N0, N1, N2)): counts, measured-voxel mask, support mask.

    The shape is confined to `support` (a loose support from phase retrieval): without it the
    free voxels outside the crystal fit any intensity and the oversampling constraint is lost.
    """

    data: jax.Array
    measured: jax.Array
    support: jax.Array


def confined(crystal: CrystalParams, support: jax.Array) -> CrystalParams:
    """Crystal whose shape is zero outside support (logits pushed to -inf there)."""
    return CrystalParams(jnp.where(support, crystal.logits, -jnp.inf), crystal.phase)


class Hyper(NamedTuple):
    """Traced hyper-parameters: changing them does not recompile."""

    tv_weight: jax.Array


class StepConfig(NamedTuple):
    """Static configuration of the AD step (hashable: a change recompiles).

    regularisers names the terms in the objective; their weights are traced (Hyper), so a
    sweep over weights compiles once, and a term with weight 0 is left out, not computed.
    coherence switches the partially coherent model on (ADParams.log_widths fitted); off, the
    compiled step is the coherent one.
    """

    geometry: Geometry
    model: str
    loss: str
    lr_shape: float
    lr_phase: float
    lr_scale: float
    regularisers: tuple[str, ...] = ()
    coherence: bool = False
    lr_coherence: float = 1e-2


def make_optimizer(cfg: StepConfig) -> optax.GradientTransformation:
    """Adam with one learning rate per parameter group (shape logits, phase, scale, widths)."""
    labels = ADParams(
        CrystalParams("shape", "phase"), "scale", "coherence" if cfg.coherence else None
    )
    transforms = {
        "shape": optax.adam(cfg.lr_shape),
        "phase": optax.adam(cfg.lr_phase),
        "scale": optax.adam(cfg.lr_scale),
    }
    if cfg.coherence:
        transforms["coherence"] = optax.adam(cfg.lr_coherence)
    return optax.multi_transform(transforms, labels)


def model_intensity(params: ADParams, support: jax.Array, cfg: StepConfig) -> jax.Array:
    """Scaled modelled intensity (FFT order), shape geometry.shape; blurred by the coherence
    function when cfg.coherence."""
    forward = FORWARD_MODELS[cfg.model]
    crystal = confined(params.crystal, support)
    intensity = forward(crystal, cfg.geometry) * jnp.exp(2.0 * params.log_scale)
    if cfg.coherence:
        intensity = blur(intensity, jnp.exp(params.log_widths))
    return intensity


def objective(
    params: ADParams, problem: Problem, hyper: Hyper, cfg: StepConfig
) -> tuple[jax.Array, jax.Array]:
    """Total objective (data loss + weighted regularisers) and the data loss alone."""
    model = model_intensity(params, problem.support, cfg)
    data_loss = LOSSES[cfg.loss](model, problem.data, problem.measured)
    crystal = confined(params.crystal, problem.support)
    total = data_loss
    for name in cfg.regularisers:
        total = total + getattr(hyper, f"{name}_weight") * REGULARISERS[name](crystal)
    return total, data_loss


@lru_cache(maxsize=32)
def compiled_chunk(cfg: StepConfig, length: int) -> Callable:
    """A jitted function running `length` Adam steps; returns (params, opt_state, losses)."""
    optimizer = make_optimizer(cfg)
    grad_fn = jax.value_and_grad(objective, has_aux=True)

    def step(carry, _, problem, hyper):
        params, opt_state = carry
        (_, data_loss), grads = grad_fn(params, problem, hyper, cfg)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), data_loss

    @jax.jit
    def run(params, opt_state, problem, hyper):
        (params, opt_state), losses = jax.lax.scan(
            lambda c, x: step(c, x, problem, hyper), (params, opt_state), None, length
        )
        return params, opt_state, losses

    return run


def init_state(params: ADParams, cfg: StepConfig) -> optax.OptState:
    """Fresh optimiser state for params."""
    return make_optimizer(cfg).init(params)


def refine(
    params: ADParams,
    problem: Problem,
    hyper: Hyper,
    cfg: StepConfig,
    n_steps: int,
    log_every: int,
    *,
    opt_state: optax.OptState | None = None,
    start_step: int = 0,
    on_chunk: Callable[[int, ADParams, optax.OptState, np.ndarray], None] | None = None,
) -> tuple[ADParams, optax.OptState]:
    """Run AD steps start_step..n_steps; on_chunk(step, params, state, losses) sees each chunk."""
    state = init_state(params, cfg) if opt_state is None else opt_state
    step = start_step
    while step < n_steps:
        length = min(log_every, n_steps - step)
        params, state, losses = compiled_chunk(cfg, length)(params, state, problem, hyper)
        losses = np.asarray(losses)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise TaskFailed(f"AD loss became non-finite at step {step + int(bad[0]) + 1}")
        step += length
        if on_chunk is not None:
            on_chunk(step, params, state, losses)
    return params, state
