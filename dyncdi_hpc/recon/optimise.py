"""AD refinement: optax Adam on shape logits, phase, a global scale and (optionally) the
log-widths of a Gaussian coherence function, a constant background and (dynamical model) the
absolute rocking offset.

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
from ..physics import dynamical3d
from ..physics.geometry import Geometry
from ..physics.kinematic import CrystalParams
from ..physics.models import FORWARD_MODELS
from .coherence import blur
from .losses import LOSSES
from .regularisers import REGULARISERS


class ADParams(NamedTuple):
    """Everything AD fits: the crystal, the log of the global amplitude scale and, with partial
    coherence, the log of the coherence function's widths (3,) in pixels (else None); with a
    background, the log of a constant background (counts per voxel, else None); with the
    dynamical model's rocking offset, that offset in rocking steps (else None)."""

    crystal: CrystalParams
    log_scale: jax.Array
    log_widths: jax.Array | None = None
    log_background: jax.Array | None = None
    rocking_offset: jax.Array | None = None


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
    compiled step is the coherent one. background fits ADParams.log_background, rocking_offset
    ADParams.rocking_offset (dynamical model only: for the kinematical model an offset is a
    phase ramp). dynamical: the dynamical model's static options (its march box), None for the
    defaults.
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
    background: bool = False
    lr_background: float = 5e-2
    rocking_offset: bool = False
    lr_offset: float = 5e-2
    dynamical: dynamical3d.DynamicalOptions | None = None


def make_optimizer(cfg: StepConfig) -> optax.GradientTransformation:
    """Adam with one learning rate per parameter group (shape logits, phase, scale, widths,
    background, rocking offset)."""
    labels = ADParams(
        CrystalParams("shape", "phase"),
        "scale",
        "coherence" if cfg.coherence else None,
        "background" if cfg.background else None,
        "offset" if cfg.rocking_offset else None,
    )
    transforms = {
        "shape": optax.adam(cfg.lr_shape),
        "phase": optax.adam(cfg.lr_phase),
        "scale": optax.adam(cfg.lr_scale),
    }
    if cfg.coherence:
        transforms["coherence"] = optax.adam(cfg.lr_coherence)
    if cfg.background:
        transforms["background"] = optax.adam(cfg.lr_background)
    if cfg.rocking_offset:
        transforms["offset"] = optax.adam(cfg.lr_offset)
    return optax.multi_transform(transforms, labels)


def model_intensity(params: ADParams, support: jax.Array, cfg: StepConfig) -> jax.Array:
    """Scaled modelled intensity (FFT order), shape geometry.shape; blurred by the coherence
    function when cfg.coherence, plus the constant background when cfg.background. The
    dynamical model runs with cfg.dynamical's options at the rocking angles shifted by the
    fitted offset (cfg.rocking_offset)."""
    crystal = confined(params.crystal, support)
    if cfg.model == "dynamical":
        options = cfg.dynamical if cfg.dynamical is not None else dynamical3d.DEFAULT_OPTIONS
        offset = 0.0
        if cfg.rocking_offset:
            offset = params.rocking_offset * rocking_step_rad(cfg.geometry)
        intensity = dynamical3d.forward(crystal, cfg.geometry, options, offset)
    else:
        intensity = FORWARD_MODELS[cfg.model](crystal, cfg.geometry)
    intensity = intensity * jnp.exp(2.0 * params.log_scale)
    if cfg.coherence:
        intensity = blur(intensity, jnp.exp(params.log_widths))
    if cfg.background:
        intensity = intensity + jnp.exp(params.log_background)
    return intensity


def rocking_step_rad(geometry: Geometry) -> float:
    """The rocking step of a geometry (rad): the unit of ADParams.rocking_offset."""
    return float(geometry.rocking_step_rad)


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
