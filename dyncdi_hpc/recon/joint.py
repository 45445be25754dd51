"""The joint model of several reflections of one crystal: one shape and one displacement
vector field fitted through every reflection's forward model by AD (optimise.refine).

Frames and the orientation R_j of each reflection: physics/resample.py. The joint model lives
on a common orthogonal sample grid (physics.frames.SampleGrid): shape logits (nx, ny, nz) and
u (3, nx, ny, nz) in nm. For reflection j the shape S and the projected phase -h_j.u are
resampled trilinearly onto its conjugate grid inside the jitted, differentiable model, and its
forward model (physics.models, kinematical or dynamical) gives its intensity; the loss is the
sum of the reflections' losses, each with its own global scale.

Ambiguities of the joint problem: a constant u (rigid translation; each h_j.u moves by a
constant, which no intensity sees), a translation of the whole crystal, and the joint twin
(S(-r), -u(-r)). Compare with a truth after removing them (analysis.registration).
The route from independent reconstructions to this fit lives in the multi package.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..config import JointADConfig
from ..errors import ParameterError
from ..physics.dynamical import DynamicalOptions, support_box
from ..physics.frames import SampleGrid
from ..physics.models import ForwardModel, Kinematical, Nuisance, forward_model
from ..physics.objects import CrystalParams, support_of
from ..physics.resample import (
    Reflection,
    ResamplePlan,
    check_reflection_set,
    resample,
    sample_to_conjugate_plan,
)
from .losses import LOSSES
from .optimise import Hyper, refine
from .projections import gaussian_blur
from .regularisers import regularised
from .stages import refraction_offset_steps, to_fft_order

# S is clipped below 1 before its logit is taken for the forward models' (logits, phase)
# interface: sigmoid(logit(S)) = S, and the clip keeps the logit finite for a float32 S = 1.
_S_MAX = 1.0 - 1e-6


class JointParams(NamedTuple):
    """Everything the joint AD fits: shape logits (nx, ny, nz), displacement (3, nx, ny, nz) nm
    (sample-frame components), log global amplitude scale per reflection (J,), and the
    absolute rocking offset per reflection (J,) in rocking steps (dynamical model only)."""

    logits: jax.Array
    displacement: jax.Array
    log_scale: jax.Array
    rocking_offset: jax.Array


class JointProblem(NamedTuple):
    """What the joint AD fits against: per reflection the counts and measured mask (FFT order,
    that reflection's (N0, N1, N2)) and the sample-grid -> conjugate-grid plan; the loose
    support (nx, ny, nz) bool on the sample grid that confines the shape."""

    data: tuple[jax.Array, ...]
    measured: tuple[jax.Array, ...]
    plans: tuple[ResamplePlan, ...]
    support: jax.Array


@dataclass(frozen=True)
class DisplacementRoughness:
    """Mean squared discrete Laplacian of h_max u (rad^2 per voxel, summed over the 3
    components) over the support voxels whose six neighbours are in support.

    It penalises the curvature of u, not a uniform strain: without it the fit absorbs the
    model's small resampling error (trilinear S and phase) into voxel-scale wiggles of u
    (measured on the 800 nm test crystal, 32^3 scans, 40 nm sample grid: largest u RMS error
    0.12 of the range at weight 0, 0.014 at 10, 0.012 at 30, 0.014 at 100, 0.029 at 300)."""

    h_max: float

    def __call__(self, params: JointParams, problem: JointProblem) -> jax.Array:
        """The roughness of params.displacement inside problem.support (rad^2 per voxel)."""
        return displacement_roughness(params.displacement, problem.support, self.h_max)


def displacement_roughness(displacement: jax.Array, support: jax.Array, h_max: float) -> jax.Array:
    """DisplacementRoughness of u (3, nx, ny, nz) nm inside support (nx, ny, nz) bool."""
    phase = h_max * displacement
    lap = sum(
        jnp.roll(phase, 1, axis=a) + jnp.roll(phase, -1, axis=a) - 2 * phase for a in (1, 2, 3)
    )
    inner = support
    for a in range(3):
        inner = inner & jnp.roll(support, 1, axis=a) & jnp.roll(support, -1, axis=a)
    count = jnp.maximum(jnp.sum(inner), 1).astype(phase.dtype)
    return jnp.sum(jnp.where(inner, jnp.sum(lap**2, axis=0), 0.0)) / count


@dataclass(frozen=True)
class JointConfig:
    """Static configuration of the joint AD (hashable: a change recompiles).

    models: per reflection its forward model (physics.models, a dynamical one with its march
    box; empty: kinematical for every reflection); loss: a LOSSES name; learning rates per
    group (lr_displacement in nm: |h| ~ 27 nm^-1 makes 4e-4 nm ~ 1e-2 rad of phase).
    fit_offset: fit the dynamical model's absolute rocking offsets (default: held at their
    start, the refraction shift, i.e. each scan centred on its refracted peak). A free offset
    per reflection trades against the homogeneous strain along that h (both move the rocking
    curve): measured on dynamical 32^3 data, the u error is then almost all linear in r (0.08-0.13
    of the range; 0.01-0.02 after removing a linear u), against 0.015-0.030 with held offsets.
    The regulariser is DisplacementRoughness, weighted by Hyper.weights[0].
    """

    reflections: tuple[Reflection, ...]
    grid: SampleGrid
    models: tuple[ForwardModel, ...] = ()
    loss: str = "poisson"
    lr_shape: float = 5e-2
    lr_displacement: float = 4e-4
    lr_scale: float = 1e-2
    lr_offset: float = 5e-2
    fit_offset: bool = False
    regularisers: tuple = field(init=False, repr=False)

    def __post_init__(self) -> None:
        h_max = max(float(np.linalg.norm(r.h_nm)) for r in self.reflections)
        object.__setattr__(self, "regularisers", (DisplacementRoughness(h_max),))

    def model(self, j: int) -> ForwardModel:
        """Reflection j's forward model."""
        return self.models[j] if self.models else Kinematical()

    def optimizer(self) -> optax.GradientTransformation:
        """Adam with one learning rate per group (shape, displacement, scales, rocking offsets)."""
        labels = JointParams("shape", "displacement", "scale", "offset")
        return optax.multi_transform(
            {
                "shape": optax.adam(self.lr_shape),
                "displacement": optax.adam(self.lr_displacement),
                "scale": optax.adam(self.lr_scale),
                "offset": optax.adam(self.lr_offset) if self.fit_offset else optax.set_to_zero(),
            },
            labels,
        )

    def objective(
        self, params: JointParams, problem: JointProblem, hyper: Hyper
    ) -> tuple[jax.Array, jax.Array]:
        """The total loss, logged as it is."""
        total, _ = joint_objective(params, problem, self, hyper)
        return total, total


def _safe_logit(s: jax.Array) -> jax.Array:
    """logit(S) with -inf where S = 0 (vacuum), finite gradients everywhere."""
    inside = s > 0
    safe = jnp.where(inside, jnp.minimum(s, _S_MAX), 0.5)
    return jnp.where(inside, jnp.log(safe) - jnp.log1p(-safe), -jnp.inf)


def sample_shape(params: JointParams, support: jax.Array) -> jax.Array:
    """Shape S = sigmoid(logits) confined to support, (nx, ny, nz) in [0, 1]."""
    return jnp.where(support, jax.nn.sigmoid(params.logits), 0.0)


def conjugate_crystal(
    params: JointParams, problem: JointProblem, cfg: JointConfig, j: int
) -> CrystalParams:
    """Reflection j's crystal on its conjugate grid (N0, N1, N2): logits of the resampled S and
    the phase -h_j.u (rad) resampled from the sample grid (u projected first: one resample)."""
    plan = problem.plans[j]
    s = resample(sample_shape(params, problem.support), plan)
    h = jnp.asarray(cfg.reflections[j].h_nm, params.displacement.dtype)
    phase = resample(-jnp.tensordot(h, params.displacement, axes=1), plan)
    return CrystalParams(_safe_logit(s), phase)


def reflection_intensity(
    params: JointParams, problem: JointProblem, cfg: JointConfig, j: int
) -> jax.Array:
    """Scaled modelled intensity of reflection j (FFT order), shape of its geometry."""
    crystal = conjugate_crystal(params, problem, cfg, j)
    geometry = cfg.reflections[j].geometry
    offset = params.rocking_offset[j] * geometry.rocking_step_rad
    intensity = cfg.model(j)(crystal, geometry, Nuisance(offset))
    return intensity * jnp.exp(2.0 * params.log_scale[j])


def joint_objective(
    params: JointParams, problem: JointProblem, cfg: JointConfig, hyper: Hyper | None = None
) -> tuple[jax.Array, jax.Array]:
    """Sum over reflections of the data loss (plus, with hyper, the weighted regularisers),
    and the per-reflection data losses (J,)."""
    losses = jnp.stack(
        [
            LOSSES[cfg.loss](
                reflection_intensity(params, problem, cfg, j), problem.data[j], problem.measured[j]
            )
            for j in range(len(cfg.reflections))
        ]
    )
    total = jnp.sum(losses)
    if hyper is not None:
        total = regularised(total, cfg.regularisers, hyper.weights, params, problem)
    return total, losses


# ------------------------------------------------------------------------------------ set-up


def joint_problem(
    intensities: tuple[np.ndarray, ...],
    masks: tuple[np.ndarray | None, ...] | None,
    cfg: JointConfig,
    support: np.ndarray,
    dtype: jnp.dtype = jnp.float32,
) -> JointProblem:
    """Problem from peak-centred intensities (one (N0, N1, N2) per reflection; mask True =
    ignored) and the loose sample-grid support (nx, ny, nz)."""
    masks = masks or (None,) * len(intensities)
    data, measured, plans = [], [], []
    for j, (reflection, intensity, mask) in enumerate(
        zip(cfg.reflections, intensities, masks, strict=True)
    ):
        geometry = reflection.geometry
        if intensity.shape != geometry.shape:
            raise ParameterError(
                f"reflections[{j}].intensity",
                f"shape {intensity.shape} differs from the geometry's {geometry.shape}",
                "give each reflection's intensity on its own detector grid",
            )
        data.append(jnp.asarray(to_fft_order(np.asarray(intensity)), dtype))
        ok = np.ones(intensity.shape, bool) if mask is None else ~np.asarray(mask, bool)
        measured.append(jnp.asarray(to_fft_order(ok)))
        plan = sample_to_conjugate_plan(geometry, cfg.grid, reflection.rotation)
        plans.append(ResamplePlan(plan.index, plan.weight.astype(dtype)))
    return JointProblem(tuple(data), tuple(measured), tuple(plans), jnp.asarray(support, bool))


def joint_models(
    name: str,
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    support: np.ndarray,
    margin: int = 2,
) -> tuple[ForwardModel, ...]:
    """Every reflection's forward model `name`; a dynamical one marches the box of the loose
    support's image on that reflection's conjugate grid, grown by margin voxels."""
    models = []
    for reflection in reflections:
        options = {}
        if name == "dynamical":
            plan = sample_to_conjugate_plan(reflection.geometry, grid, reflection.rotation)
            image = np.asarray(resample(jnp.asarray(support, jnp.float32), plan)) > 0
            options = {"options": DynamicalOptions(box=support_box(image, margin))}
        models.append(forward_model(name, **options))
    return tuple(models)


def joint_start(
    shape: np.ndarray, displacement_nm: np.ndarray, problem: JointProblem, cfg: JointConfig
) -> JointParams:
    """Start from a shape (nx, ny, nz) in [0, 1] and u (3, nx, ny, nz) nm: least-squares scale
    per reflection; rocking offsets at the refraction shift (dynamical) or 0."""
    dtype = problem.data[0].dtype
    frac = np.clip(np.asarray(shape, float), 0.02, 0.98)
    j_count = len(cfg.reflections)
    offsets = [
        refraction_offset_steps(r.geometry) if cfg.model(j).name == "dynamical" else 0.0
        for j, r in enumerate(cfg.reflections)
    ]
    params = JointParams(
        logits=jnp.asarray(np.log(frac / (1 - frac)), dtype),
        displacement=jnp.asarray(np.nan_to_num(displacement_nm), dtype),
        log_scale=jnp.zeros(j_count, dtype),
        rocking_offset=jnp.asarray(offsets, dtype),
    )
    scales = []
    for j in range(j_count):
        model = reflection_intensity(params, problem, cfg, j)
        w = problem.measured[j]
        ratio = jnp.sum(jnp.where(w, problem.data[j], 0.0)) / jnp.sum(jnp.where(w, model, 0.0))
        scales.append(0.5 * jnp.log(ratio))
    return params._replace(log_scale=jnp.asarray(scales, dtype))


def loose_support(shape: np.ndarray, sigma: float = 1.0, threshold: float = 0.1) -> np.ndarray:
    """The support AD confines the shape to: the blurred shape (nx, ny, nz) above threshold."""
    blurred = gaussian_blur(jnp.asarray(shape, jnp.float32), jnp.asarray(sigma))
    return np.asarray(blurred) > threshold * float(np.max(np.asarray(blurred)))


# --------------------------------------------------------------------------------- the fit


@dataclass(frozen=True)
class JointResult:
    """A joint reconstruction on the sample grid: shape (nx, ny, nz) in [0, 1], support (bool),
    displacement (3, nx, ny, nz) nm with zero mean inside the support, loss history (steps,),
    metrics (final total loss and per-reflection losses, scales)."""

    grid: SampleGrid
    shape: np.ndarray
    support: np.ndarray
    displacement_nm: np.ndarray
    loss: np.ndarray
    metrics: dict[str, float]


def reconstruct_joint(
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    shape: np.ndarray,
    *,
    options: JointADConfig = JointADConfig(),
    displacement_nm: np.ndarray | None = None,
    masks: tuple[np.ndarray | None, ...] | None = None,
    want_tensor: bool = True,
    progress: Callable[[int, float], None] | None = None,
) -> JointResult:
    """Joint AD reconstruction from each reflection's peak-centred intensity (N0, N1, N2).

    shape: a starting shape on grid (nx, ny, nz) in [0, 1] (e.g. a blurred support of an
    independent reconstruction in the sample frame); its loose support confines the fit.
    options: the fit's model, loss, steps and learning rates, as a sweep spec's
    multi.<set>.joint block gives them. displacement_nm: starting u (3, nx, ny, nz) nm (None:
    0). want_tensor: refuse a set of reflections that cannot determine the strain tensor
    (ParameterError), before anything runs.
    """
    check_reflection_set(reflections, want_tensor)
    forward_model(options.model)
    if options.loss not in LOSSES:
        raise ParameterError("loss", f"unknown loss {options.loss!r}", f"use {', '.join(LOSSES)}")
    if np.shape(shape) != grid.shape:
        raise ParameterError(
            "shape", f"{np.shape(shape)} != grid {grid.shape}", "start on the grid"
        )
    support = loose_support(shape)
    cfg = JointConfig(
        reflections=tuple(reflections),
        grid=grid,
        models=joint_models(options.model, tuple(reflections), grid, support),
        loss=options.loss,
        lr_shape=options.lr_shape,
        lr_displacement=options.lr_displacement,
        fit_offset=options.fit_rocking_offset,
    )
    problem = joint_problem(tuple(intensities), masks, cfg, support)
    u0 = np.zeros((3, *grid.shape)) if displacement_nm is None else displacement_nm
    start = joint_start(shape, u0, problem, cfg)
    history: list[np.ndarray] = []

    def on_chunk(step: int, _params, _state, losses: np.ndarray) -> None:
        history.append(losses)
        if progress is not None:
            progress(step, float(losses[-1]))

    hyper = Hyper((jnp.asarray(options.smooth_weight, problem.data[0].dtype),))
    fitted, _ = refine(
        start,
        problem,
        hyper,
        cfg,
        options.steps,
        options.log_every,
        on_chunk=on_chunk,
        what="joint AD loss",
    )
    return _joint_result(fitted, problem, cfg, history, options.steps)


def _joint_result(
    fitted: JointParams,
    problem: JointProblem,
    cfg: JointConfig,
    history: list[np.ndarray],
    steps: int,
) -> JointResult:
    total, per = joint_objective(fitted, problem, cfg)
    s = np.asarray(sample_shape(fitted, problem.support), float)
    final_support = support_of(s) & np.asarray(problem.support)
    u = np.asarray(fitted.displacement, float)
    u = u - u[:, final_support].mean(axis=1)[:, None, None, None]  # the rigid translation
    metrics = {"loss": float(total), "steps": float(steps)}
    for j, r in enumerate(cfg.reflections):
        name = "".join(str(i) for i in r.geometry.hkl)
        metrics[f"loss_{name}"] = float(per[j])
        metrics[f"scale_{name}"] = float(jnp.exp(fitted.log_scale[j]))
    loss = np.concatenate(history) if history else np.zeros(0)
    return JointResult(cfg.grid, s, final_support, u, loss, metrics)
