"""One reconstruction from measured intensities: recipe of ER/HIO/RAAR, then AD refinement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..config import ADStage, ReconParams
from ..errors import TaskFailed
from ..merge.align import support_of
from ..physics import dynamical3d
from ..physics.geometry import Geometry
from ..physics.kinematic import CrystalParams, shape_of
from .coherence import CoherenceFit, blur
from .losses import LOSSES
from .optimise import (
    ADParams,
    Hyper,
    Problem,
    StepConfig,
    confined,
    init_state,
    model_intensity,
    objective,
    refine,
)
from .projections import (
    PRState,
    ShrinkWrapParams,
    fourier_error,
    gaussian_blur,
    random_start,
    run_block,
    shrink_wrap,
)
from .recipe import ALGORITHMS, parse_recipe

Progress = Callable[[str, int, float], None]


@dataclass(frozen=True)
class Checkpoint:
    """Resumable state of a reconstruction after `step` iterations of `stage`: "pr", or "ad"
    for the first AD stage and "ad<k>" for stage k of ReconParams.schedule().

    arrays holds host copies: for "pr" psi, support, pr_error (and coherence_widths with
    partial coherence); for "ad" also the AD parameter and optimiser-state leaves (ad_leaf_<i>)
    and ad_loss.
    """

    stage: str
    step: int
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Checkpointing:
    """Where a reconstruction resumes from, and how often (iterations) it saves its state."""

    every: int = 0
    resume: Checkpoint | None = None
    save: Callable[[Checkpoint], None] | None = None

    def due(self, before: int, after: int) -> bool:
        """True when a multiple of `every` lies in (before, after]."""
        if self.every <= 0 or self.save is None:
            return False
        return after // self.every > before // self.every


@dataclass(frozen=True)
class Reconstruction:
    """A finished reconstruction, centred on the array, on the conjugate grid (N0, N1, N2).

    metrics: error, loss, scale, support_voxels, pr_iterations, ad_steps, and with partial
    coherence the fitted widths coherence_width_0..2 (pixels along rocking, row, column).
    """

    obj: np.ndarray
    support: np.ndarray
    pr_error: np.ndarray
    ad_loss: np.ndarray
    metrics: dict[str, float]


def to_fft_order(x: np.ndarray) -> np.ndarray:
    """Peak-centred detector array -> FFT order (zero frequency at index 0)."""
    return np.fft.ifftshift(x)


def state_dtype(amplitude: jax.Array) -> jnp.dtype:
    """Complex dtype of the phase-retrieval object for amplitudes of amplitude.dtype."""
    return jnp.result_type(amplitude.dtype, jnp.complex64)


def centre_roll(support: np.ndarray) -> tuple[int, ...]:
    """Integer roll that moves the (periodic) centre of mass of support to the array centre."""
    shifts = []
    for axis, n in enumerate(support.shape):
        profile = support.sum(axis=tuple(a for a in range(support.ndim) if a != axis))
        angle = np.angle(np.sum(profile * np.exp(2j * np.pi * np.arange(n) / n)))
        shifts.append(int(n // 2 - np.round(angle * n / (2 * np.pi))) % n)
    return tuple(shifts)


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
    sw = params.shrinkwrap
    shrinkwrap = ShrinkWrapParams(sw.every, sw.threshold, sw.sigma_start, sw.sigma_end, sw.start)
    coherence = (
        None
        if params.coherence is None
        else CoherenceFit(params.coherence_every, params.coherence_start)
    )
    resume = checkpointing.resume
    if resume is not None and resume.stage == "pr":
        done = resume.step
        state = PRState(
            jnp.asarray(resume.arrays["psi"]),
            jnp.asarray(resume.arrays["support"]),
            jnp.asarray(done, jnp.int32),
            None if coherence is None else jnp.asarray(resume.arrays["coherence_widths"]),
        )
        errors = list(resume.arrays["pr_error"])
    elif start is not None:
        psi = jnp.asarray(to_fft_order(np.asarray(start)), state_dtype(amplitude))
        support = shrink_wrap(psi, jnp.asarray(sw.sigma_start), sw.threshold)
        state = PRState(psi * support, support, jnp.asarray(0, jnp.int32))
        errors, done = [], 0
    else:
        state, errors, done = random_start(key, amplitude, measured), [], 0
    if done == 0 and coherence is not None:
        state = state._replace(widths=jnp.asarray(params.coherence, amplitude.dtype))
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
            err = float(fourier_error(state.psi * state.support, amplitude, measured, state.widths))
            if not np.isfinite(err):
                raise TaskFailed(f"phase retrieval error became non-finite at iteration {done}")
            if not bool(jnp.any(state.support)):
                raise TaskFailed(
                    f"the support vanished at iteration {done}: lower shrinkwrap.threshold"
                )
            errors.append(err)
            if progress is not None:
                progress(name, done, err)
            if checkpointing.due(before, done) and done < total:
                arrays = {
                    "psi": np.asarray(state.psi),
                    "support": np.asarray(state.support),
                    "pr_error": np.asarray(errors),
                }
                if state.widths is not None:
                    arrays["coherence_widths"] = np.asarray(state.widths)
                checkpointing.save(Checkpoint("pr", done, arrays))
    return state.psi * state.support, state.support, np.asarray(errors), state.widths


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
    model = jnp.abs(jnp.fft.fftn(shape_of(crystal) * jnp.exp(1j * crystal.phase), norm="ortho"))
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
    options = None
    if dynamical and support is not None:
        box = dynamical3d.support_box(np.asarray(support), params.dynamical_box_margin)
        options = dynamical3d.DynamicalOptions(box=box)
    return StepConfig(
        geometry=geometry,
        model=params.model,
        loss=params.loss,
        lr_shape=params.lr_shape,
        lr_phase=params.lr_phase,
        lr_scale=params.lr_scale,
        regularisers=("tv",) if params.tv_weight > 0 else (),
        coherence=params.coherence is not None,
        lr_coherence=params.lr_coherence,
        background=params.background is not None,
        lr_background=params.lr_background,
        rocking_offset=dynamical and params.fit_rocking_offset,
        lr_offset=params.lr_offset,
        dynamical=options,
    )


def refraction_offset_steps(geometry: Geometry) -> float:
    """Refraction shift of the dynamical rocking curve, -Re chi0 / sin 2thetaB, in rocking steps."""
    case = dynamical3d.bragg_case_of(geometry)
    shift = -complex(case.chi.chi0).real / np.sin(2 * case.bragg_angle_rad)
    return float(shift / geometry.rocking_step_rad)


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
    hyper = Hyper(tv_weight=jnp.asarray(params.tv_weight, data.dtype))
    return start, problem, hyper


def reconstruct(
    intensity: np.ndarray,
    mask: np.ndarray | None,
    geometry: Geometry,
    params: ReconParams,
    *,
    key: jax.Array,
    progress: Progress | None = None,
    checkpointing: Checkpointing = Checkpointing(),
    start: np.ndarray | None = None,
) -> Reconstruction:
    """Reconstruct a crystal from peak-centred intensities (N0, N1, N2); mask True = ignored.

    start: an object (complex, (N0, N1, N2), centred like Reconstruction.obj) to begin phase
    retrieval from instead of random phases (e.g. a bred child of a previous generation).
    """
    if intensity.shape != geometry.shape:
        raise ValueError(f"intensity shape {intensity.shape} != geometry shape {geometry.shape}")
    data = jnp.asarray(to_fft_order(intensity))
    ignored = np.zeros(intensity.shape, bool) if mask is None else np.asarray(mask, bool)
    if params.saturation is not None:
        ignored = ignored | (np.asarray(intensity) >= params.saturation)
    measured = jnp.asarray(to_fft_order(~ignored))
    amplitude = jnp.sqrt(data)
    resume = checkpointing.resume
    if resume is not None and resume.stage == "ad":
        psi = jnp.asarray(resume.arrays["psi"])
        support = jnp.asarray(resume.arrays["support"])
        pr_error = resume.arrays["pr_error"]
        widths = None  # the AD leaves of the checkpoint hold the fitted widths
    else:
        pr_key, _ = jax.random.split(key)
        psi, support, pr_error, widths = phase_retrieval(
            pr_key, amplitude, measured, params, progress, checkpointing, start=start
        )
    if params.uses_dynamical():
        # the march is not periodic: the crystal must not wrap around the grid's faces (an
        # integer roll of the object changes no intensity)
        shifts = centre_roll(np.asarray(support))
        psi = jnp.roll(psi, shifts, axis=(0, 1, 2))
        support = jnp.roll(support, shifts, axis=(0, 1, 2))
    first, problem, _ = ad_problem(psi, support, data, measured, params, widths)
    centre2 = None
    if params.uses_dynamical():
        # the kinematical model cannot tell the object from its twin, the dynamical one can:
        # a support that holds both lets the dynamical stage choose (stage_start)
        centre2 = mirror_centre(np.asarray(problem.support))
        problem = problem._replace(support=problem.support | mirror(problem.support, centre2))
    loose_support = problem.support
    schedule = params.schedule()
    resume_stage = -1 if resume is None or resume.stage == "pr" else _stage_index(resume.stage)
    fitted, cfg, history = first, step_config(geometry, params, loose_support), []
    for k, stage in enumerate(schedule):
        stage_params = stage_parameters(params, stage)
        previous, cfg = cfg, step_config(geometry, stage_params, loose_support)
        hyper = Hyper(tv_weight=jnp.asarray(stage_params.tv_weight, data.dtype))
        if k < resume_stage:
            continue
        initial = stage_start(fitted if k > 0 else None, first, stage_params, geometry)
        first_dynamical = stage.model != "kinematical" and (k == 0 or previous.model != stage.model)
        if first_dynamical and k != resume_stage:  # a resumed stage's state is the checkpoint's
            initial = restarted(initial, params.dynamical_start, problem.support)
            candidates = [initial, twin_of(initial, centre2)]
            candidates = [rescaled(c, problem, cfg) for c in candidates]
            losses = [float(objective(c, problem, hyper, cfg)[0]) for c in candidates]
            initial = candidates[int(np.argmin(losses))]
        opt_state = init_state(initial, cfg)
        start_step = 0
        if k == resume_stage:
            initial, opt_state = _unflatten((initial, opt_state), resume.arrays)
            start_step, history = resume.step, [resume.arrays["ad_loss"]]
        label = "AD" if len(schedule) == 1 else f"AD{k + 1}/{len(schedule)} {stage.model}"
        fitted, _ = refine(
            initial,
            problem,
            hyper,
            cfg,
            stage.ad_steps,
            params.log_every,
            opt_state=opt_state,
            start_step=start_step,
            on_chunk=partial(
                _on_chunk,
                history=history,
                label=label,
                stage=_stage_name(k),
                stage_steps=stage.ad_steps,
                progress=progress,
                checkpointing=checkpointing,
                fixed={
                    "psi": np.asarray(psi),
                    "support": np.asarray(support),
                    "pr_error": np.asarray(pr_error),
                },
            ),
        )
    ad_loss = np.concatenate(history) if history else np.zeros(0, np.float32)
    model = model_intensity(fitted, loose_support, cfg)
    scale = float(jnp.exp(fitted.log_scale))
    widths = None if fitted.log_widths is None else jnp.exp(fitted.log_widths)
    if schedule:
        crystal = confined(fitted.crystal, loose_support)
        obj = np.asarray(shape_of(crystal) * jnp.exp(1j * crystal.phase))
        final_support = support_of(obj)
    else:
        obj = np.asarray(psi)
        final_support = support_of(obj)
        model = jnp.abs(jnp.fft.fftn(psi, norm="ortho")) ** 2
        model = model if widths is None else blur(model, widths)
        scale = 1.0
    error = float(jnp.sum(jnp.where(measured, (jnp.sqrt(model) - amplitude) ** 2, 0.0)))
    error /= float(jnp.sum(jnp.where(measured, data, 0.0)))
    loss = float(LOSSES[params.loss](model, data, measured))
    if not (np.isfinite(error) and np.isfinite(loss)):
        raise TaskFailed("final model intensity is not finite")
    shifts = centre_roll(final_support)
    obj = np.roll(obj, shifts, axis=(0, 1, 2))
    final_support = np.roll(final_support, shifts, axis=(0, 1, 2))
    return Reconstruction(
        obj=obj,
        support=final_support,
        pr_error=np.asarray(pr_error),
        ad_loss=ad_loss,
        metrics={
            "error": error,
            "loss": loss,
            "scale": scale,
            "support_voxels": int(final_support.sum()),
            "pr_iterations": int(sum(n for _, n in parse_recipe(params.recipe))),
            "ad_steps": int(sum(stage.ad_steps for stage in schedule)),
            **(
                {}
                if fitted.log_background is None
                else {"background": float(jnp.exp(fitted.log_background))}
            ),
            **(
                {}
                if fitted.rocking_offset is None
                else {
                    "rocking_offset_rad": float(fitted.rocking_offset)
                    * float(geometry.rocking_step_rad)
                }
            ),
            **(
                {}
                if widths is None
                else {f"coherence_width_{j}": float(w) for j, w in enumerate(np.asarray(widths))}
            ),
        },
    )


def mirror_centre(support: np.ndarray) -> tuple[int, int, int]:
    """2c per axis, c the centre of support's bounding box: mirror() maps that box onto itself."""
    box = dynamical3d.support_box(support, 0)
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


def restarted(start: ADParams, how: str, loose_support: jax.Array) -> ADParams:
    """start as ReconParams.dynamical_start asks: "previous" unchanged, "flat_phase" with a
    zero phase, "flat" also with S = 0.98 where start's shape exceeds 0.5 inside
    loose_support (bool, FFT order) and 0.02 elsewhere."""
    if how == "previous":
        return start
    crystal = start.crystal
    logits = crystal.logits
    if how == "flat":
        inside = loose_support & (logits > 0)
        logits = jnp.where(inside, FLAT_LOGIT, -FLAT_LOGIT).astype(logits.dtype)
    flat = CrystalParams(logits=logits, phase=jnp.zeros_like(crystal.phase))
    return start._replace(crystal=flat)


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


def _stage_name(k: int) -> str:
    # "ad" for the first stage keeps checkpoints of single-stage runs readable
    return "ad" if k == 0 else f"ad{k}"


def _stage_index(name: str) -> int:
    return 0 if name == "ad" else int(name.removeprefix("ad"))


def _on_chunk(
    step: int,
    fitted: ADParams,
    state,
    losses: np.ndarray,
    *,
    history: list[np.ndarray],
    label: str,
    stage: str,
    stage_steps: int,
    progress: Progress | None,
    checkpointing: Checkpointing,
    fixed: dict[str, np.ndarray],
) -> None:
    history.append(losses)
    if progress is not None:
        progress(label, step, float(losses[-1]))
    if checkpointing.due(step - len(losses), step) and step < stage_steps:
        arrays = {**fixed, "ad_loss": np.concatenate(history), **_flatten((fitted, state))}
        checkpointing.save(Checkpoint(stage, step, arrays))


def _flatten(tree) -> dict[str, np.ndarray]:
    return {f"ad_leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def _unflatten(template, arrays: dict[str, np.ndarray]):
    leaves, treedef = jax.tree_util.tree_flatten(template)
    loaded = [jnp.asarray(arrays[f"ad_leaf_{i}"], dtype=x.dtype) for i, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, loaded)
