"""One reconstruction from measured intensities: the recipe of ER/HIO/RAAR, then every AD
stage of ReconParams.schedule() (stages.py), checkpointed (checkpoint.py), then the final
object, centred, with its error and loss against the data."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from ..config import ReconParams
from ..config.recipe import parse_recipe
from ..errors import TaskFailed
from ..physics.geometry import Geometry
from ..physics.kinematical import far_field
from ..physics.objects import object_of, support_of
from .checkpoint import Checkpoint, Checkpointing, flatten, stage_index, stage_name, unflatten
from .coarse import central_crop, coarse_geometry, coarse_object, upsampled
from .coherence import blur
from .free_pixels import free_mask
from .losses import LOSSES, poisson_deviance
from .optimise import (
    ADParams,
    Problem,
    StepConfig,
    confined,
    init_state,
    model_intensity,
    refine,
)
from .stages import (
    Progress,
    ad_problem,
    hyper_of,
    mirror,
    mirror_centre,
    object_or_twin,
    phase_retrieval,
    restarted,
    stage_parameters,
    stage_start,
    step_config,
    to_fft_order,
)


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


def centre_roll(support: np.ndarray) -> tuple[int, ...]:
    """Integer roll that moves the (periodic) centre of mass of support to the array centre."""
    shifts = []
    for axis, n in enumerate(support.shape):
        profile = support.sum(axis=tuple(a for a in range(support.ndim) if a != axis))
        angle = np.angle(np.sum(profile * np.exp(2j * np.pi * np.arange(n) / n)))
        shifts.append(int(n // 2 - np.round(angle * n / (2 * np.pi))) % n)
    return tuple(shifts)


@dataclass(frozen=True)
class _Data:
    """The measured side of a reconstruction, FFT order: counts, sqrt, measured voxels."""

    data: jax.Array
    amplitude: jax.Array
    measured: jax.Array  # the voxels every fit uses: neither ignored nor held out
    free: jax.Array | None  # the held-out voxels (free_pixels.py), None when none are


def _data(intensity: np.ndarray, mask: np.ndarray | None, params: ReconParams) -> _Data:
    data = jnp.asarray(to_fft_order(intensity))
    ignored = np.zeros(intensity.shape, bool) if mask is None else np.asarray(mask, bool)
    if params.saturation is not None:
        ignored = ignored | (np.asarray(intensity) >= params.saturation)
    free = free_mask(~ignored, params.free_fraction)
    fitted = jnp.asarray(to_fft_order(~ignored & ~free))
    held = jnp.asarray(to_fft_order(free)) if free.any() else None
    return _Data(data, jnp.sqrt(data), fitted, held)


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
    d = _data(intensity, mask, params)
    resume = checkpointing.resume
    coarse = None
    if params.coarse_to_fine:
        if resume is None or resume.stage != "ad":
            coarse = _coarse_run(intensity, d, geometry, params, key, progress, start)
        params = _fine_params(params, coarse, geometry)
    if resume is not None and resume.stage == "ad":
        psi = jnp.asarray(resume.arrays["psi"])
        support = jnp.asarray(resume.arrays["support"])
        pr_error = resume.arrays["pr_error"]
        widths = None  # the AD leaves of the checkpoint hold the fitted widths
    elif coarse is not None:
        psi = jnp.asarray(upsampled(coarse.obj, geometry.shape))
        support = jnp.abs(psi) > 0.5
        pr_error, widths = coarse.pr_error, _widths(coarse, d.data.dtype)
    else:
        pr_key, _ = jax.random.split(key)
        psi, support, pr_error, widths = phase_retrieval(
            pr_key, d.amplitude, d.measured, params, progress, checkpointing, start=start
        )
    if params.uses_dynamical():
        # the march is not periodic: the crystal must not wrap around the grid's faces (an
        # integer roll of the object changes no intensity)
        shifts = centre_roll(np.asarray(support))
        psi = jnp.roll(psi, shifts, axis=(0, 1, 2))
        support = jnp.roll(support, shifts, axis=(0, 1, 2))
    first, problem, _ = ad_problem(psi, support, d.data, d.measured, params, widths)
    centre2 = None
    # the coarse run chose between the object and its twin
    if params.uses_dynamical() and not params.coarse_to_fine:
        # the kinematical model cannot tell the object from its twin, the dynamical one can:
        # a support that holds both lets the dynamical stage choose (object_or_twin)
        centre2 = mirror_centre(np.asarray(problem.support))
        problem = problem._replace(support=problem.support | mirror(problem.support, centre2))
    pr_error = np.asarray(pr_error)
    fixed = {"psi": np.asarray(psi), "support": np.asarray(support), "pr_error": pr_error}
    if params.coarse_to_fine:
        fixed["coarse_ad_loss"] = (
            coarse.ad_loss if coarse is not None else resume.arrays["coarse_ad_loss"]
        )
    fitted, cfg, ad_loss = _ad_stages(
        first, problem, centre2, geometry, params, progress, checkpointing, fixed
    )
    if params.coarse_to_fine:
        ad_loss = np.concatenate([fixed["coarse_ad_loss"], ad_loss])
    return _finished(psi, pr_error, ad_loss, fitted, cfg, problem.support, d, geometry, params)


def _coarse_run(
    intensity: np.ndarray,
    d: _Data,
    geometry: Geometry,
    params: ReconParams,
    key: jax.Array,
    progress: Progress | None,
    start: np.ndarray | None,
) -> Reconstruction:
    """The whole schedule on the central half of the q range (coarse.py), not checkpointed
    (it costs a small part of the full-grid stage); the full grid's held-out voxels are
    masked there too, so that no fit sees them."""
    unused = np.fft.fftshift(np.asarray(~d.measured))  # ignored or held out, peak-centred
    coarse_progress = None
    if progress is not None:

        def coarse_progress(label: str, step: int, value: float) -> None:
            progress(f"coarse {label}", step, value)

    coarse_start = None if start is None else coarse_object(start)
    return reconstruct(
        central_crop(intensity),
        central_crop(unused),
        coarse_geometry(geometry),
        params.model_copy(update={"coarse_to_fine": False, "free_fraction": 0.0}),
        key=jax.random.fold_in(key, 1),
        progress=coarse_progress,
        start=coarse_start,
    )


def _fine_params(
    params: ReconParams, coarse: Reconstruction | None, geometry: Geometry
) -> ReconParams:
    """The full-grid run's parameters: the final stage only, from the coarse object as it is,
    at the coarse run's rocking offset (a resumed run's checkpoint holds its own)."""
    fine = params.fine_stage()
    if coarse is not None and "rocking_offset_rad" in coarse.metrics:
        offset = coarse.metrics["rocking_offset_rad"] / geometry.rocking_step_rad
        fine = fine.model_copy(update={"rocking_offset_steps": offset})
    return fine


def _widths(coarse: Reconstruction, dtype) -> jax.Array | None:
    """The coherence widths (3,) px the coarse run fitted (detector pixels: the same on both
    grids), or None when it was coherent."""
    keys = [f"coherence_width_{j}" for j in range(3)]
    if not all(k in coarse.metrics for k in keys):
        return None
    return jnp.asarray([coarse.metrics[k] for k in keys], dtype)


def _ad_stages(
    first: ADParams,
    problem: Problem,
    centre2: tuple[int, int, int] | None,
    geometry: Geometry,
    params: ReconParams,
    progress: Progress | None,
    checkpointing: Checkpointing,
    fixed: dict[str, np.ndarray],
) -> tuple[ADParams, StepConfig, np.ndarray]:
    """Run every AD stage of the schedule, each from the previous result; returns the fitted
    parameters, the last stage's configuration and the loss history of all stages."""
    resume = checkpointing.resume
    schedule = params.schedule()
    resume_stage = -1 if resume is None or resume.stage == "pr" else stage_index(resume.stage)
    fitted, cfg, history = first, step_config(geometry, params, problem.support), []
    for k, stage in enumerate(schedule):
        stage_params = stage_parameters(params, stage)
        previous, cfg = cfg, step_config(geometry, stage_params, problem.support)
        hyper = hyper_of(stage_params, problem.data.dtype)
        if k < resume_stage:
            continue
        initial = stage_start(fitted if k > 0 else None, first, stage_params, geometry)
        first_dynamical = stage.model != "kinematical" and (
            k == 0 or previous.model.name != stage.model
        )
        # a resumed stage's state is the checkpoint's; no centre2: the twin is chosen
        if first_dynamical and k != resume_stage and centre2 is not None:
            initial = restarted(
                initial, params.dynamical_start, problem.support, params.dynamical_start_threshold
            )
            initial = object_or_twin(initial, problem, hyper, cfg, centre2)
        opt_state = init_state(initial, cfg)
        start_step = 0
        if k == resume_stage:
            initial, opt_state = unflatten((initial, opt_state), resume.arrays)
            start_step, history = resume.step, [resume.arrays["ad_loss"]]
        label = "AD" if len(schedule) == 1 else f"AD{k + 1}/{len(schedule)} {stage.model}"
        on_chunk = partial(
            _on_chunk,
            history=history,
            label=label,
            stage=stage_name(k),
            stage_steps=stage.ad_steps,
            progress=progress,
            checkpointing=checkpointing,
            fixed=fixed,
        )
        fitted, _ = refine(
            initial,
            problem,
            hyper,
            cfg,
            stage.ad_steps,
            params.log_every,
            opt_state=opt_state,
            start_step=start_step,
            on_chunk=on_chunk,
        )
    ad_loss = np.concatenate(history) if history else np.zeros(0, np.float32)
    return fitted, cfg, ad_loss


def _finished(
    psi: jax.Array,
    pr_error: np.ndarray,
    ad_loss: np.ndarray,
    fitted: ADParams,
    cfg: StepConfig,
    loose_support: jax.Array,
    d: _Data,
    geometry: Geometry,
    params: ReconParams,
) -> Reconstruction:
    """The final object (the last AD stage's, else the projection result), centred, with its
    normalised Fourier error, loss and fitted nuisances."""
    schedule = params.schedule()
    widths = None if fitted.log_widths is None else jnp.exp(fitted.log_widths)
    if schedule:
        model = model_intensity(fitted, loose_support, cfg)
        scale = float(jnp.exp(fitted.log_scale))
        obj = np.asarray(object_of(confined(fitted.crystal, loose_support)))
    else:
        obj = np.asarray(psi)
        model = jnp.abs(far_field(psi)) ** 2
        model = model if widths is None else blur(model, widths)
        scale = 1.0
    final_support = support_of(obj)
    error = float(jnp.sum(jnp.where(d.measured, (jnp.sqrt(model) - d.amplitude) ** 2, 0.0)))
    error /= float(jnp.sum(jnp.where(d.measured, d.data, 0.0)))
    loss = float(LOSSES[params.loss](model, d.data, d.measured))
    if not (np.isfinite(error) and np.isfinite(loss)):
        raise TaskFailed("final model intensity is not finite")
    shifts = centre_roll(final_support)
    metrics = {
        "error": error,
        "loss": loss,
        "scale": scale,
        "support_voxels": int(final_support.sum()),
        "pr_iterations": int(sum(n for _, n in parse_recipe(params.recipe))),
        "ad_steps": int(sum(stage.ad_steps for stage in schedule)),
    }
    if d.free is not None:
        metrics["free_deviance"] = float(poisson_deviance(model, d.data, d.free))
        metrics["fit_deviance"] = float(poisson_deviance(model, d.data, d.measured))
        metrics["free_voxels"] = int(jnp.sum(d.free))
    if fitted.log_background is not None:
        metrics["background"] = float(jnp.exp(fitted.log_background))
    if fitted.rocking_offset is not None:
        step = float(geometry.rocking_step_rad)
        metrics["rocking_offset_rad"] = float(fitted.rocking_offset) * step
    if widths is not None:
        metrics.update({f"coherence_width_{j}": float(w) for j, w in enumerate(np.asarray(widths))})
    return Reconstruction(
        obj=np.roll(obj, shifts, axis=(0, 1, 2)),
        support=np.roll(final_support, shifts, axis=(0, 1, 2)),
        pr_error=pr_error,
        ad_loss=ad_loss,
        metrics=metrics,
    )


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
        arrays = {**fixed, "ad_loss": np.concatenate(history), **flatten((fitted, state))}
        checkpointing.save(Checkpoint(stage, step, arrays))
