"""AD refinement: one chunked optax loop for every fit, and the single-crystal fit it runs.

A fit is a frozen, hashable configuration (static under jit) with two methods:
`objective(params, problem, hyper) -> (total, logged)`, the differentiated scalar and the
scalar recorded per step, and `optimizer()`. `refine` runs a fit's Adam steps in jitted chunks
of log_every steps (one `lax.scan` each), so values reach the host only at logging intervals;
the single-crystal fit here and the joint multi-reflection fit (joint.py) share it.

The single-crystal fit adjusts shape logits, phase, a global scale and (optionally) the
log-widths of a Gaussian coherence function, a constant background and (dynamical model) the
absolute rocking offset.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import NamedTuple, Protocol

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..errors import TaskFailed
from ..physics.geometry import Geometry
from ..physics.models import ForwardModel, Kinematical, Nuisance
from ..physics.objects import CrystalParams
from .coherence import blur
from .losses import LOSSES
from .regularisers import Regulariser, regularised


class Hyper(NamedTuple):
    """Traced weights of a fit's regularisers, in the order of its terms: changing them does
    not recompile."""

    weights: tuple[jax.Array, ...] = ()


class Fit(Protocol):
    """What `refine` runs: a hashable static configuration with an objective and an optimiser."""

    def objective(self, params, problem, hyper: Hyper) -> tuple[jax.Array, jax.Array]: ...

    def optimizer(self) -> optax.GradientTransformation: ...


@lru_cache(maxsize=32)
def compiled_chunk(fit: Fit, length: int) -> Callable:
    """A jitted function running `length` Adam steps; returns (params, opt_state, logged)."""
    optimizer = fit.optimizer()
    grad_fn = jax.value_and_grad(fit.objective, has_aux=True)

    def step(carry, _, problem, hyper):
        params, opt_state = carry
        (total, logged), grads = grad_fn(params, problem, hyper)
        # L-BFGS's line search evaluates the objective itself
        extra = {}
        if isinstance(optimizer, optax.GradientTransformationExtraArgs):
            extra = {
                "value": total,
                "grad": grads,
                "value_fn": lambda p: fit.objective(p, problem, hyper)[0],
            }
        # optax 0.2.8's bias correction (1 - decay**count, an int32 count) needs JAX's standard
        # promotion: a user (or the tests) running under strict promotion checks our code only
        with jax.numpy_dtype_promotion("standard"):
            updates, opt_state = optimizer.update(grads, opt_state, params, **extra)
        return (optax.apply_updates(params, updates), opt_state), logged

    @jax.jit
    def run(params, opt_state, problem, hyper):
        (params, opt_state), logged = jax.lax.scan(
            lambda c, x: step(c, x, problem, hyper), (params, opt_state), None, length
        )
        return params, opt_state, logged

    return run


def init_state(params, fit: Fit) -> optax.OptState:
    """Fresh optimiser state for params."""
    return fit.optimizer().init(params)


def refine(
    params,
    problem,
    hyper: Hyper,
    fit: Fit,
    n_steps: int,
    log_every: int,
    *,
    opt_state: optax.OptState | None = None,
    start_step: int = 0,
    on_chunk: Callable[[int, object, optax.OptState, np.ndarray], None] | None = None,
    what: str = "AD loss",
):
    """Run a fit's steps start_step..n_steps; on_chunk(step, params, state, logged) sees each
    chunk. Returns (params, opt_state); TaskFailed names the first non-finite step."""
    state = init_state(params, fit) if opt_state is None else opt_state
    step = start_step
    while step < n_steps:
        length = min(log_every, n_steps - step)
        params, state, logged = compiled_chunk(fit, length)(params, state, problem, hyper)
        logged = np.asarray(logged)
        bad = np.flatnonzero(~np.isfinite(logged))
        if bad.size:
            raise TaskFailed(f"{what} became non-finite at step {step + int(bad[0]) + 1}")
        step += length
        if on_chunk is not None:
            on_chunk(step, params, state, logged)
    return params, state


# ------------------------------------------------------------------- the single-crystal fit


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


@dataclass(frozen=True)
class StepConfig:
    """Static configuration of the single-crystal AD fit (hashable: a change recompiles).

    model: the forward model (physics.models, its static options included); regularisers: the
    terms of the objective, functions of the confined crystal, weighted by Hyper.weights in
    the same order. coherence switches the partially coherent model on (ADParams.log_widths
    fitted); off, the compiled step is the coherent one. background fits
    ADParams.log_background, rocking_offset ADParams.rocking_offset (dynamical model only: for
    the kinematical model an offset is a phase ramp).
    """

    geometry: Geometry
    model: ForwardModel = Kinematical()
    loss: str = "poisson"
    lr_shape: float = 5e-2
    lr_phase: float = 1e-2
    lr_scale: float = 1e-2
    regularisers: tuple[Regulariser, ...] = ()
    coherence: bool = False
    lr_coherence: float = 1e-2
    background: bool = False
    lr_background: float = 5e-2
    rocking_offset: bool = False
    lr_offset: float = 5e-2
    lr_schedule: str = "constant"
    steps: int = 0  # the stage's steps, which a decaying schedule spans (0 when constant)
    optimiser: str = "adam"

    def rate(self, lr: float) -> float | optax.Schedule:
        """A learning rate as this fit's schedule gives it: constant, or cosine to 0.1 lr."""
        if self.lr_schedule == "cosine":
            return optax.cosine_decay_schedule(lr, max(self.steps, 1), alpha=0.1)
        return lr

    def optimizer(self) -> optax.GradientTransformation:
        """Adam with one learning rate per parameter group (shape logits, phase, scale,
        widths, background, rocking offset), each on the fit's schedule; or L-BFGS over all
        of them with its zoom line search (no learning rates)."""
        if self.optimiser == "lbfgs":
            return optax.lbfgs()
        labels = ADParams(
            CrystalParams("shape", "phase"),
            "scale",
            "coherence" if self.coherence else None,
            "background" if self.background else None,
            "offset" if self.rocking_offset else None,
        )
        rates = {"shape": self.lr_shape, "phase": self.lr_phase, "scale": self.lr_scale}
        if self.coherence:
            rates["coherence"] = self.lr_coherence
        if self.background:
            rates["background"] = self.lr_background
        if self.rocking_offset:
            rates["offset"] = self.lr_offset
        transforms = {name: optax.adam(self.rate(lr)) for name, lr in rates.items()}
        return optax.multi_transform(transforms, labels)

    def objective(
        self, params: ADParams, problem: Problem, hyper: Hyper
    ) -> tuple[jax.Array, jax.Array]:
        """Total objective (data loss + weighted regularisers) and the data loss alone."""
        return objective(params, problem, hyper, self)


def model_intensity(params: ADParams, support: jax.Array, cfg: StepConfig) -> jax.Array:
    """Scaled modelled intensity (FFT order), shape geometry.shape; blurred by the coherence
    function when cfg.coherence, plus the constant background when cfg.background. The
    rocking angles are shifted by the fitted offset when cfg.rocking_offset."""
    crystal = confined(params.crystal, support)
    nuisance = Nuisance()
    if cfg.rocking_offset:
        nuisance = Nuisance(params.rocking_offset * float(cfg.geometry.rocking_step_rad))
    intensity = cfg.model(crystal, cfg.geometry, nuisance)
    intensity = intensity * jnp.exp(2.0 * params.log_scale)
    if cfg.coherence:
        intensity = blur(intensity, jnp.exp(params.log_widths))
    if cfg.background:
        intensity = intensity + jnp.exp(params.log_background)
    return intensity


def objective(
    params: ADParams, problem: Problem, hyper: Hyper, cfg: StepConfig
) -> tuple[jax.Array, jax.Array]:
    """Total objective (data loss + weighted regularisers) and the data loss alone."""
    model = model_intensity(params, problem.support, cfg)
    data_loss = LOSSES[cfg.loss](model, problem.data, problem.measured)
    crystal = confined(params.crystal, problem.support)
    return regularised(data_loss, cfg.regularisers, hyper.weights, crystal), data_loss
