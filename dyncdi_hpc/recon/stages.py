"""The stages of one reconstruction: the projection recipe (ER/HIO/RAAR with shrink-wrap),
then AD stages, each from the previous one's result, with the nuisances its model fits.

Arrays are in FFT order here (zero frequency at index 0; `to_fft_order` of a peak-centred
array); pipeline.py strings the stages together and checkpoints them (checkpoint.py).
"""

from __future__ import annotations

from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..config import ADStage, ReconParams
from ..config.recipe import ALGORITHMS, parse_recipe
from ..errors import TaskFailed
from ..physics.dynamical import DynamicalOptions, refraction_shift_rad, support_box
from ..physics.geometry import Geometry
from ..physics.models import forward_model
from ..physics.objects import CrystalParams, complex_dtype, logits_of, object_of
from .checkpoint import Checkpoint, Checkpointing
from .coherence import CoherenceFit
from .optimise import ADParams, Hyper, Problem, StepConfig, model_intensity, objective
from .projections import (
    PRState,
    ShrinkWrapParams,
    fourier_error,
    gaussian_blur,
    masked,
    random_start,
    run_block,
    shrink_wrap,
)
from .regularisers import REGULARISERS, Regulariser

Progress = Callable[[str, int, float], None]


def to_fft_order(x: np.ndarray) -> np.ndarray:
    """Peak-centred detector array -> FFT order (zero frequency at index 0)."""
    return np.fft.ifftshift(x)


def state_dtype(amplitude: jax.Array) -> jnp.dtype:
    """Complex dtype of the phase-retrieval object for amplitudes of amplitude.dtype."""
    return complex_dtype(amplitude.dtype)


# ------------------------------------------------------------------- projection phase retrieval


def _pr_start(
    key: jax.Array,
    amplitude: jax.Array,
    measured: jax.Array,
    params: ReconParams,
    resume: Checkpoint | None,
    start: np.ndarray | None,
    coherent: bool,
) -> tuple[PRState, list[float], int]:
    """The state phase retrieval begins from: a checkpoint, a start object or random phases."""
    sw = params.shrinkwrap
    if resume is not None and resume.stage == "pr":
        state = PRState(
            jnp.asarray(resume.arrays["psi"]),
            jnp.asarray(resume.arrays["support"]),
            jnp.asarray(resume.step, jnp.int32),
            None if coherent else jnp.asarray(resume.arrays["coherence_widths"]),
        )
        return state, list(resume.arrays["pr_error"]), resume.step
    if start is not None:
        psi = jnp.asarray(to_fft_order(np.asarray(start)), state_dtype(amplitude))
        support = shrink_wrap(psi, jnp.asarray(sw.sigma_start), sw.threshold)
        state = PRState(masked(psi, support), support, jnp.asarray(0, jnp.int32))
    else:
        state = random_start(key, amplitude, measured)
    if not coherent:
        state = state._replace(widths=jnp.asarray(params.coherence, amplitude.dtype))
    return state, [], 0


def phase_retrieval(
    key: jax.Array,
    amplitude: jax.Array,
    measured: jax.Array,
    params: ReconParams,
    progress: Progress | None = None,
    checkpointing: Checkpointing = Checkpointing(),
    *,
    start: np.ndarray | None = None,
) -> tuple[jax.Array, jax.Array, np.ndarray, jax.Array | None]:
    """Run the recipe from a random start, a given start object, or a checkpoint.

    start: complex (N0, N1, N2) on the conjugate grid, centred like Reconstruction.obj (any
    scale); its shrink-wrap support (sigma_start, threshold) is the first support.
    Returns object, support, errors and the fitted coherence widths (3,) px (None if coherent).
    """
    blocks = parse_recipe(params.recipe)
    total = sum(n for _, n in blocks)
    shrinkwrap = ShrinkWrapParams(**params.shrinkwrap.model_dump())
    coherence = (
        None
        if params.coherence is None
        else CoherenceFit(params.coherence_every, params.coherence_start)
    )
    state, errors, done = _pr_start(
        key, amplitude, measured, params, checkpointing.resume, start, coherence is None
    )
    skip = done
    for name, n in blocks:
        # skip what a checkpoint already did; chunk boundaries stay where an unbroken run has them
        remaining = n - min(n, skip)
        skip = max(0, skip - n)
        while remaining > 0:
            chunk = min(params.log_every, remaining)
            state = run_block(
                state,
                amplitude,
                measured,
                jnp.asarray(ALGORITHMS.index(name)),
                jnp.asarray(chunk),
                jnp.asarray(params.hio_beta, amplitude.dtype),
                jnp.asarray(total),
                shrinkwrap,
                jnp.asarray(params.raar_beta, amplitude.dtype),
                coherence,
            )
            remaining -= chunk
            before, done = done, done + chunk
            errors.append(_checked_error(state, amplitude, measured, done))
            if progress is not None:
                progress(name, done, errors[-1])
            if checkpointing.due(before, done) and done < total:
                checkpointing.save(Checkpoint("pr", done, _pr_arrays(state, errors)))
    return masked(state.psi, state.support), state.support, np.asarray(errors), state.widths


def _checked_error(state: PRState, amplitude: jax.Array, measured: jax.Array, done: int) -> float:
    err = float(fourier_error(masked(state.psi, state.support), amplitude, measured, state.widths))
    if not np.isfinite(err):
        raise TaskFailed(f"phase retrieval error became non-finite at iteration {done}")
    if not bool(jnp.any(state.support)):
        raise TaskFailed(f"the support vanished at iteration {done}: lower shrinkwrap.threshold")
    return err


def _pr_arrays(state: PRState, errors: list[float]) -> dict[str, np.ndarray]:
    arrays = {
        "psi": np.asarray(state.psi),
        "support": np.asarray(state.support),
        "pr_error": np.asarray(errors),
    }
    if state.widths is not None:
        arrays["coherence_widths"] = np.asarray(state.widths)
    return arrays


# ----------------------------------------------------------------------------------- AD stages


def ad_start(
    psi: jax.Array,
    support: jax.Array,
    data: jax.Array,
    measured: jax.Array,
    widths: jax.Array | None = None,
) -> ADParams:
    """AD start from a projection result: logits from |psi|, its phase, least-squares scale,
    and the log of the coherence widths (3,) px when given (the blur keeps the total, so the
    scale is the same)."""
    mag = jnp.abs(psi)
    level = jnp.quantile(jnp.where(support, mag, 0.0), 0.97)
    level = jnp.where(level > 0, level, jnp.max(mag))
    frac = jnp.clip(mag / level, 0.02, 0.98)
    crystal = CrystalParams(logits=jnp.log(frac / (1 - frac)), phase=jnp.angle(psi))
    model = jnp.abs(jnp.fft.fftn(object_of(crystal), norm="ortho"))
    ratio = jnp.sum(jnp.where(measured, data, 0.0)) / jnp.sum(jnp.where(measured, model**2, 0.0))
    log_scale = 0.5 * jnp.log(ratio)
    log_widths = None if widths is None else jnp.log(widths).astype(data.dtype)
    return ADParams(crystal=crystal, log_scale=log_scale.astype(data.dtype), log_widths=log_widths)


def step_config(
    geometry: Geometry, params: ReconParams, support: np.ndarray | jax.Array | None = None
) -> StepConfig:
    """Static AD configuration of a reconstruction (regularisers with zero weight left out).

    support: the loose support AD confines the shape to (FFT order); with the dynamical model
    the march covers its bounding box grown by params.dynamical_box_margin (None: the whole
    grid, ~10x slower on a typical oversampled grid).
    """
    dynamical = params.model == "dynamical"
    options = {"devices": params.devices} if dynamical and params.devices > 1 else {}
    if dynamical and support is not None:
        box = support_box(np.asarray(support), params.dynamical_box_margin)
        options["options"] = DynamicalOptions(box=box)
    return StepConfig(
        geometry=geometry,
        model=forward_model(params.model, **options),
        loss=params.loss,
        lr_shape=params.lr_shape,
        lr_phase=params.lr_phase,
        lr_scale=params.lr_scale,
        regularisers=tuple(term for _, term in regulariser_terms(params)),
        coherence=params.coherence is not None,
        lr_coherence=params.lr_coherence,
        background=params.background is not None,
        lr_background=params.lr_background,
        rocking_offset=dynamical and params.fit_rocking_offset,
        lr_offset=params.lr_offset,
        lr_schedule=params.lr_schedule,
        # a constant rate does not depend on the steps: one compiled step for any count
        steps=params.ad_steps if params.lr_schedule != "constant" else 0,
        optimiser=params.optimiser,
    )


def regulariser_terms(params: ReconParams) -> tuple[tuple[float, Regulariser], ...]:
    """(weight, function) of every regulariser whose weight in params is above 0."""
    pairs = ((float(getattr(params, field)), term) for field, term in REGULARISERS.items())
    return tuple((weight, term) for weight, term in pairs if weight > 0)


def hyper_of(params: ReconParams, dtype: jnp.dtype) -> Hyper:
    """The traced weights of step_config(params)'s regularisers, in their order."""
    return Hyper(tuple(jnp.asarray(weight, dtype) for weight, _ in regulariser_terms(params)))


def refraction_offset_steps(geometry: Geometry) -> float:
    """Refraction shift of the dynamical rocking curve, -Re chi0 / sin 2thetaB, in rocking steps."""
    return refraction_shift_rad(geometry) / geometry.rocking_step_rad


def with_nuisances(start: ADParams, params: ReconParams, geometry: Geometry) -> ADParams:
    """start with the initial background and rocking offset of params where they are fitted."""
    dtype = start.log_scale.dtype
    if params.background is not None:
        start = start._replace(log_background=jnp.asarray(np.log(params.background), dtype))
    if params.model == "dynamical" and params.fit_rocking_offset:
        offset = params.rocking_offset_steps
        offset = refraction_offset_steps(geometry) if offset is None else offset
        start = start._replace(rocking_offset=jnp.asarray(offset, dtype))
    return start


def rescaled(start: ADParams, problem: Problem, cfg: StepConfig) -> ADParams:
    """start with the least-squares global scale of cfg's model (ad_start's is kinematical;
    extinction makes the dynamical intensity weaker)."""
    model = model_intensity(
        start._replace(log_scale=jnp.zeros_like(start.log_scale)), problem.support, cfg
    )
    if cfg.background:
        model = model - jnp.exp(start.log_background)
    w = problem.measured
    ratio = jnp.sum(jnp.where(w, problem.data, 0.0)) / jnp.sum(jnp.where(w, model, 0.0))
    return start._replace(log_scale=(0.5 * jnp.log(ratio)).astype(start.log_scale.dtype))


def ad_problem(
    psi: jax.Array,
    support: jax.Array,
    data: jax.Array,
    measured: jax.Array,
    params: ReconParams,
    widths: jax.Array | None = None,
) -> tuple[ADParams, Problem, Hyper]:
    """AD start, problem (data, measured, loose support) and traced weights from a PR result.

    widths: coherence widths (3,) px from phase retrieval; with partial coherence and none
    given, the initial ones of params.
    """
    if widths is None and params.coherence is not None:
        widths = jnp.asarray(params.coherence, data.dtype)
    start = ad_start(psi, support, data, measured, widths)
    loose_support = gaussian_blur(support.astype(data.dtype), jnp.asarray(1.0)) > 0.1
    problem = Problem(data=data, measured=measured, support=loose_support)
    return start, problem, hyper_of(params, data.dtype)


def mirror_centre(support: np.ndarray) -> tuple[int, int, int]:
    """2c per axis, c the centre of support's bounding box: mirror() maps that box onto itself."""
    box = support_box(support, 0)
    return tuple(lo + hi - 1 for lo, hi in box)


def mirror(x: jax.Array, centre2: tuple[int, int, int]) -> jax.Array:
    """x(2c - m) (periodic indices) for an array (N0, N1, N2): the point reflection about c."""
    for axis, c2 in enumerate(centre2):
        x = jnp.roll(jnp.flip(x, axis), c2 + 1, axis)
    return x


def twin_of(params: ADParams, centre2: tuple[int, int, int]) -> ADParams:
    """The twin object conj(psi(2c - r)): the same kinematical intensity, another dynamical one."""
    crystal = CrystalParams(
        logits=mirror(params.crystal.logits, centre2), phase=-mirror(params.crystal.phase, centre2)
    )
    return params._replace(crystal=crystal)


FLAT_LOGIT = float(np.log(0.98 / 0.02))  # S = 0.98 inside, 0.02 outside, as ad_start clips


def restarted(
    start: ADParams, how: str, loose_support: jax.Array, threshold: float = 0.5
) -> ADParams:
    """start as ReconParams.dynamical_start asks: "previous" unchanged, "flat_phase" with a
    zero phase, "flat" also with S = 0.98 where start's shape exceeds threshold inside
    loose_support (bool, FFT order) and 0.02 elsewhere."""
    if how == "previous":
        return start
    crystal = start.crystal
    logits = crystal.logits
    if how == "flat":
        inside = loose_support & (logits > float(logits_of(threshold)))
        logits = jnp.where(inside, FLAT_LOGIT, -FLAT_LOGIT).astype(logits.dtype)
    flat = CrystalParams(logits=logits, phase=jnp.zeros_like(crystal.phase))
    return start._replace(crystal=flat)


def object_or_twin(
    start: ADParams,
    problem: Problem,
    hyper: Hyper,
    cfg: StepConfig,
    centre2: tuple[int, int, int],
) -> ADParams:
    """The start of a first dynamical stage, or its twin, whichever the stage's model fits
    better after rescaling: the kinematical model cannot tell them apart, the dynamical one
    can."""
    candidates = [rescaled(c, problem, cfg) for c in (start, twin_of(start, centre2))]
    losses = [float(objective(c, problem, hyper, cfg)[0]) for c in candidates]
    return candidates[int(np.argmin(losses))]


def stage_parameters(params: ReconParams, stage: ADStage) -> ReconParams:
    """params as one AD stage runs them: its model and steps, its learning rates and weight."""
    update = {"model": stage.model, "ad_steps": stage.ad_steps}
    for name in ("lr_phase", "lr_shape", "tv_weight"):
        if getattr(stage, name) is not None:
            update[name] = getattr(stage, name)
    return params.model_copy(update=update)


def stage_start(
    previous: ADParams | None, first: ADParams, params: ReconParams, geometry: Geometry
) -> ADParams:
    """Start of an AD stage: the previous stage's result (or the projection result first),
    with the nuisance parameters this stage's model fits and no others."""
    if previous is None:
        return with_nuisances(first, params, geometry)
    start = previous._replace(rocking_offset=None)
    start = with_nuisances(start, params, geometry)
    if previous.log_background is not None:
        start = start._replace(log_background=previous.log_background)
    if start.rocking_offset is not None and previous.rocking_offset is not None:
        start = start._replace(rocking_offset=previous.rocking_offset)
    return start
