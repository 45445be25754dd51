"""Several reflections of one crystal: a joint AD reconstruction of one shape and one
displacement vector field, and the classic route of independent reconstructions combined by
least squares.

Frames and the orientation R_j of each reflection: physics/resample.py. The joint model lives
on a common orthogonal sample grid (analysis.frames.SampleGrid): shape logits (nx, ny, nz) and
u (3, nx, ny, nz) in nm. For reflection j the shape S and the projected phase -h_j.u are
resampled trilinearly onto its conjugate grid inside the jitted, differentiable model, and its
forward model (FORWARD_MODELS' kinematical or dynamical, the same interface) gives its
intensity; the loss is the sum of the reflections' losses, each with its own global scale.

Ambiguities of the joint problem: a constant u (rigid translation; each h_j.u moves by a
constant, which no intensity sees), a translation of the whole crystal, and the joint twin
(S(-r), -u(-r)). Compare with a truth after removing them (analysis.strain_tensor).

Run `python -m dyncdi_hpc.recon.multi --demo` for the numbers of a 32^3 simulated example.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
import xarray as xr
from scipy.ndimage import distance_transform_edt

from ..analysis.frames import SampleGrid
from ..analysis.strain import displacement_along_h
from ..analysis.strain_tensor import (
    check_tensor_determined,
    displacement_dataset,
    least_squares_displacement,
    strain_dataset,
    subvoxel_shift,
)
from ..config import ReconParams
from ..data.dataset import from_xarray
from ..errors import DyncdiError, TaskFailed
from ..merge.align import flip_periodic, support_of
from ..multi_config import MultiReflectionConfig, build_reflections
from ..physics import dynamical3d
from ..physics.geometry import Geometry
from ..physics.kinematic import CrystalParams
from ..physics.models import FORWARD_MODELS
from ..physics.resample import (
    Reflection,
    ResamplePlan,
    check_reflections,
    conjugate_to_sample_plan,
    resample,
    sample_to_conjugate_plan,
)
from .losses import LOSSES
from .pipeline import reconstruct, refraction_offset_steps, to_fft_order
from .projections import gaussian_blur

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


class JointHyper(NamedTuple):
    """Traced weights (a change does not recompile): smooth_weight of the displacement
    roughness (displacement_roughness) added to the data loss."""

    smooth_weight: jax.Array


@dataclass(frozen=True)
class JointConfig:
    """Static configuration of the joint AD (hashable: a change recompiles).

    model: "kinematical" or "dynamical" (FORWARD_MODELS); loss: a LOSSES name; learning rates
    per group (lr_displacement in nm: |h| ~ 27 nm^-1 makes 4e-4 nm ~ 1e-2 rad of phase);
    dynamical: per reflection the dynamical model's options (its march box), None: defaults.
    fit_offset: fit the dynamical model's absolute rocking offsets (default: held at their
    start, the refraction shift, i.e. each scan centred on its refracted peak). A free offset
    per reflection trades against the homogeneous strain along that h (both move the rocking
    curve): measured on dynamical 32^3 data, the u error is then almost all linear in r (0.08-0.13
    of the range; 0.01-0.02 after removing a linear u), against 0.015-0.030 with held offsets.
    """

    reflections: tuple[Reflection, ...]
    grid: SampleGrid
    model: str = "kinematical"
    loss: str = "poisson"
    lr_shape: float = 5e-2
    lr_displacement: float = 4e-4
    lr_scale: float = 1e-2
    lr_offset: float = 5e-2
    fit_offset: bool = False
    dynamical: tuple[dynamical3d.DynamicalOptions, ...] | None = None


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


@dataclass(frozen=True)
class IndependentResult:
    """The classic route on the sample grid: per reflection the aligned object (J, nx, ny, nz)
    complex and the projection h_j.u / |h_j| (J, nx, ny, nz) nm (NaN outside), the common
    support, and u (3, nx, ny, nz) nm by per-voxel least squares (NaN outside)."""

    grid: SampleGrid
    objects: np.ndarray
    projections_nm: np.ndarray
    support: np.ndarray
    displacement_nm: np.ndarray
    twins: tuple[bool, ...]


def check_multi(
    reflections: tuple[Reflection, ...], want_tensor: bool, field: str = "reflections"
) -> None:
    """Validate a multi-reflection set before anything runs (resample.check_reflections, and
    >= 3 non-coplanar reflections when the strain tensor is asked for)."""
    check_reflections(reflections, field)
    if want_tensor:
        check_tensor_determined(np.stack([r.h_nm for r in reflections]), field)


# ---------------------------------------------------------------- the joint model (pure JAX)


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
    if cfg.model == "dynamical":
        options = dynamical3d.DEFAULT_OPTIONS if cfg.dynamical is None else cfg.dynamical[j]
        offset = params.rocking_offset[j] * geometry.rocking_step_rad
        intensity = dynamical3d.forward(crystal, geometry, options, offset)
    else:
        intensity = FORWARD_MODELS[cfg.model](crystal, geometry)
    return intensity * jnp.exp(2.0 * params.log_scale[j])


def displacement_roughness(displacement: jax.Array, support: jax.Array, h_max: float) -> jax.Array:
    """Mean squared discrete Laplacian of h_max u (rad^2 per voxel, summed over the 3
    components) over the support voxels whose six neighbours are in support.

    It penalises the curvature of u, not a uniform strain: without it the fit absorbs the
    model's small resampling error (trilinear S and phase) into voxel-scale wiggles of u
    (measured on the 800 nm test crystal, 32^3 scans, 40 nm sample grid: largest u RMS error
    0.12 of the range at weight 0, 0.014 at 10, 0.012 at 30, 0.014 at 100, 0.029 at 300)."""
    phase = h_max * displacement
    lap = sum(
        jnp.roll(phase, 1, axis=a) + jnp.roll(phase, -1, axis=a) - 2 * phase for a in (1, 2, 3)
    )
    inner = support
    for a in range(3):
        inner = inner & jnp.roll(support, 1, axis=a) & jnp.roll(support, -1, axis=a)
    count = jnp.maximum(jnp.sum(inner), 1)
    return jnp.sum(jnp.where(inner, jnp.sum(lap**2, axis=0), 0.0)) / count


def joint_objective(
    params: JointParams, problem: JointProblem, cfg: JointConfig, hyper: JointHyper | None = None
) -> tuple[jax.Array, jax.Array]:
    """Sum over reflections of the data loss plus the weighted displacement roughness, and the
    per-reflection data losses (J,)."""
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
        h_max = max(float(np.linalg.norm(r.h_nm)) for r in cfg.reflections)
        rough = displacement_roughness(params.displacement, problem.support, h_max)
        total = total + hyper.smooth_weight * rough
    return total, losses


def make_optimizer(cfg: JointConfig) -> optax.GradientTransformation:
    """Adam with one learning rate per group (shape, displacement, scales, rocking offsets)."""
    labels = JointParams("shape", "displacement", "scale", "offset")
    return optax.multi_transform(
        {
            "shape": optax.adam(cfg.lr_shape),
            "displacement": optax.adam(cfg.lr_displacement),
            "scale": optax.adam(cfg.lr_scale),
            "offset": optax.adam(cfg.lr_offset) if cfg.fit_offset else optax.set_to_zero(),
        },
        labels,
    )


@lru_cache(maxsize=16)
def compiled_chunk(cfg: JointConfig, length: int) -> Callable:
    """A jitted function running `length` Adam steps; returns (params, opt_state, losses)."""
    optimizer = make_optimizer(cfg)
    grad_fn = jax.value_and_grad(joint_objective, has_aux=True)

    def step(carry, _, problem, hyper):
        params, opt_state = carry
        (loss, _), grads = grad_fn(params, problem, cfg, hyper)
        updates, opt_state = optimizer.update(grads, opt_state, params)
        return (optax.apply_updates(params, updates), opt_state), loss

    @jax.jit
    def run(params, opt_state, problem, hyper):
        (params, opt_state), losses = jax.lax.scan(
            lambda c, x: step(c, x, problem, hyper), (params, opt_state), None, length
        )
        return params, opt_state, losses

    return run


def refine_joint(
    params: JointParams,
    problem: JointProblem,
    hyper: JointHyper,
    cfg: JointConfig,
    n_steps: int,
    log_every: int = 50,
    *,
    on_chunk: Callable[[int, JointParams, np.ndarray], None] | None = None,
) -> tuple[JointParams, np.ndarray]:
    """Run n_steps Adam steps in jitted chunks; returns the parameters and the loss history."""
    state = make_optimizer(cfg).init(params)
    history, step = [], 0
    while step < n_steps:
        length = min(log_every, n_steps - step)
        params, state, losses = compiled_chunk(cfg, length)(params, state, problem, hyper)
        losses = np.asarray(losses)
        bad = np.flatnonzero(~np.isfinite(losses))
        if bad.size:
            raise TaskFailed(f"joint AD loss became non-finite at step {step + int(bad[0]) + 1}")
        step += length
        history.append(losses)
        if on_chunk is not None:
            on_chunk(step, params, losses)
    return params, np.concatenate(history) if history else np.zeros(0)


# ------------------------------------------------------------------- set-up and the whole run


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
            raise DyncdiError(
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


def dynamical_options(
    cfg: JointConfig, support: np.ndarray, margin: int = 2
) -> tuple[dynamical3d.DynamicalOptions, ...]:
    """Per reflection the dynamical model's march box: the loose support's image on its
    conjugate grid, grown by margin voxels."""
    options = []
    for reflection in cfg.reflections:
        plan = sample_to_conjugate_plan(reflection.geometry, cfg.grid, reflection.rotation)
        image = np.asarray(resample(jnp.asarray(support, jnp.float32), plan)) > 0
        options.append(dynamical3d.DynamicalOptions(box=dynamical3d.support_box(image, margin)))
    return tuple(options)


def joint_start(
    shape: np.ndarray, displacement_nm: np.ndarray, problem: JointProblem, cfg: JointConfig
) -> JointParams:
    """Start from a shape (nx, ny, nz) in [0, 1] and u (3, nx, ny, nz) nm: least-squares scale
    per reflection; rocking offsets at the refraction shift (dynamical) or 0."""
    dtype = problem.data[0].dtype
    frac = np.clip(np.asarray(shape, float), 0.02, 0.98)
    j_count = len(cfg.reflections)
    offsets = [
        refraction_offset_steps(r.geometry) if cfg.model == "dynamical" else 0.0
        for r in cfg.reflections
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


def reconstruct_joint(
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    shape: np.ndarray,
    *,
    displacement_nm: np.ndarray | None = None,
    masks: tuple[np.ndarray | None, ...] | None = None,
    model: str = "kinematical",
    loss: str = "poisson",
    n_steps: int = 600,
    log_every: int = 50,
    want_tensor: bool = True,
    lr_shape: float = 5e-2,
    lr_displacement: float = 4e-4,
    smooth_weight: float = 30.0,
    fit_offset: bool = False,
    progress: Callable[[int, float], None] | None = None,
) -> JointResult:
    """Joint AD reconstruction from each reflection's peak-centred intensity (N0, N1, N2).

    shape: a starting shape on grid (nx, ny, nz) in [0, 1] (e.g. a blurred support of an
    independent reconstruction in the sample frame); its loose support confines the fit.
    displacement_nm: starting u (3, nx, ny, nz) nm (None: 0). want_tensor: refuse (DyncdiError)
    a set of reflections that cannot determine the strain tensor, before anything runs.
    fit_offset: dynamical model only, fit each reflection's absolute rocking offset (JointConfig).
    """
    check_multi(reflections, want_tensor)
    if model not in FORWARD_MODELS:
        raise DyncdiError("model", f"unknown model {model!r}", f"use {', '.join(FORWARD_MODELS)}")
    if loss not in LOSSES:
        raise DyncdiError("loss", f"unknown loss {loss!r}", f"use {', '.join(LOSSES)}")
    if np.shape(shape) != grid.shape:
        raise DyncdiError("shape", f"{np.shape(shape)} != grid {grid.shape}", "start on the grid")
    support = loose_support(shape)
    cfg = JointConfig(
        reflections=tuple(reflections),
        grid=grid,
        model=model,
        loss=loss,
        lr_shape=lr_shape,
        lr_displacement=lr_displacement,
        fit_offset=fit_offset,
    )
    if model == "dynamical":
        cfg = replace(cfg, dynamical=dynamical_options(cfg, support))
    problem = joint_problem(tuple(intensities), masks, cfg, support)
    u0 = np.zeros((3, *grid.shape)) if displacement_nm is None else displacement_nm
    start = joint_start(shape, u0, problem, cfg)

    def on_chunk(step: int, _: JointParams, losses: np.ndarray) -> None:
        if progress is not None:
            progress(step, float(losses[-1]))

    hyper = JointHyper(jnp.asarray(smooth_weight, problem.data[0].dtype))
    fitted, history = refine_joint(
        start, problem, hyper, cfg, n_steps, log_every, on_chunk=on_chunk
    )
    total, per = joint_objective(fitted, problem, cfg)
    s = np.asarray(sample_shape(fitted, problem.support), float)
    final_support = support_of(s) & np.asarray(problem.support)
    u = np.asarray(fitted.displacement, float)
    u = u - u[:, final_support].mean(axis=1)[:, None, None, None]  # the rigid translation
    metrics = {"loss": float(total), "steps": float(n_steps)}
    for j, r in enumerate(reflections):
        name = "".join(str(i) for i in r.geometry.hkl)
        metrics[f"loss_{name}"] = float(per[j])
        metrics[f"scale_{name}"] = float(jnp.exp(fitted.log_scale[j]))
    return JointResult(grid, s, final_support, u, history, metrics)


# ------------------------------------------------------------------------ the classic route


def to_common_frame(obj: np.ndarray, reflection: Reflection, grid: SampleGrid) -> np.ndarray:
    """A conjugate-grid object (N0, N1, N2) complex, centred, on the sample grid (nx, ny, nz)."""
    plan = conjugate_to_sample_plan(reflection.geometry, grid, reflection.rotation)
    obj = jnp.asarray(obj)
    return np.asarray(resample(obj.real, plan)) + 1j * np.asarray(resample(obj.imag, plan))


def fourier_shift(x: np.ndarray, shift: np.ndarray) -> np.ndarray:
    """x moved by shift (3,) voxels (periodic, sub-voxel by a Fourier phase ramp)."""
    freqs = np.meshgrid(*[np.fft.fftfreq(n) for n in x.shape], indexing="ij")
    ramp = np.exp(-2j * np.pi * sum(f * s for f, s in zip(freqs, shift, strict=True)))
    return np.fft.ifftn(np.fft.fftn(x) * ramp)


def bring_to_reference(obj: np.ndarray, reference: np.ndarray) -> tuple[np.ndarray, bool]:
    """Remove the twin and the translation of a sample-frame object (nx, ny, nz) relative to a
    reference amplitude, keeping its phase (a phase ramp or offset is data here: the projected
    displacement). Returns the moved object and whether it was the twin."""
    best, best_corr, best_twin = obj, -np.inf, False
    for is_twin in (False, True):
        candidate = np.conj(flip_periodic(obj)) if is_twin else obj
        moved = fourier_shift(candidate, subvoxel_shift(candidate, reference))
        a, b = np.abs(moved), np.abs(reference)
        corr = float(np.sum(a * b) / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-300))
        if corr > best_corr:
            best, best_corr, best_twin = moved, corr, is_twin
    return best, best_twin


def combine_projections(
    objects: np.ndarray,
    reflections: tuple[Reflection, ...],
    support: np.ndarray,
    want_tensor: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """Projections h_j.u / |h_j| (J, nx, ny, nz) nm from aligned objects' unwrapped phases (zero
    mean inside support: each reflection's phase offset is free), and u (3, nx, ny, nz) nm by
    per-voxel least squares; NaN outside support. Without want_tensor a set of rank < 3 gives
    the minimum-norm u (0 along the directions no reflection sees)."""
    projections = np.stack(
        [
            displacement_along_h(np.angle(o), support, float(np.linalg.norm(r.h_nm)))
            for o, r in zip(objects, reflections, strict=True)
        ]
    )
    h = np.stack([r.h_nm for r in reflections])
    return projections, least_squares_displacement(projections, h, full_rank=want_tensor)


def combine_reconstructions(
    objects: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    *,
    reference: np.ndarray | None = None,
    want_tensor: bool = True,
) -> IndependentResult:
    """The classic route from finished single-reflection reconstructions: each complex object
    (its conjugate grid (N0, N1, N2), centred like Reconstruction.obj or a merged group) is
    brought to the sample frame, aligned (twin, translation) to reference (a sample-grid
    amplitude; None: the first reflection's), and h_j.u = projections is solved per voxel.

    The common support is where at least half of the aligned objects' support_of holds.
    want_tensor: refuse a set of rank < 3 (else its minimum-norm u).
    """
    check_multi(reflections, want_tensor)
    aligned, twins = [], []
    for j, (r, obj) in enumerate(zip(reflections, objects, strict=True)):
        moved = to_common_frame(np.asarray(obj), r, grid)
        if reference is None and j == 0:
            reference = np.abs(moved)
        moved, twinned = bring_to_reference(moved, reference)
        aligned.append(moved)
        twins.append(twinned)
    aligned = np.stack(aligned)
    # a majority vote: the intersection loses a voxel shell wherever one reconstruction's edge
    # is a little inside (measured: a joint AD started from it is worse)
    support = np.mean([support_of(o) for o in aligned], axis=0) >= 0.5
    projections, u = combine_projections(aligned, reflections, support, want_tensor)
    return IndependentResult(grid, aligned, projections, support, u, tuple(twins))


def independent_route(
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    params: ReconParams,
    *,
    key: jax.Array,
    masks: tuple[np.ndarray | None, ...] | None = None,
    reference: np.ndarray | None = None,
) -> IndependentResult:
    """Reconstruct each reflection alone (recon.pipeline.reconstruct, one key each from key),
    then combine_reconstructions."""
    check_multi(reflections, want_tensor=True)
    masks = masks or (None,) * len(intensities)
    keys = jax.random.split(key, len(reflections))
    objects = tuple(
        reconstruct(np.asarray(intensity), mask, r.geometry, params, key=keys[j]).obj
        for j, (r, intensity, mask) in enumerate(zip(reflections, intensities, masks, strict=True))
    )
    return combine_reconstructions(objects, reflections, grid, reference=reference)


def joint_from_independent(
    classic: IndependentResult,
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    *,
    masks: tuple[np.ndarray | None, ...] | None = None,
    model: str = "kinematical",
    loss: str = "poisson",
    n_steps: int = 600,
    log_every: int = 50,
    smooth_weight: float = 30.0,
    lr_shape: float = 5e-2,
    lr_displacement: float = 4e-4,
    want_tensor: bool = True,
    fit_offset: bool = False,
) -> JointResult:
    """Joint AD started from the classic route: its common support blurred by 1 voxel as the
    shape, its least-squares u (extended outside the support by the nearest inside value, so
    that the start has no step at the support's edge) as the displacement."""
    start = np.asarray(
        gaussian_blur(jnp.asarray(classic.support, jnp.float32), jnp.asarray(1.0)), float
    )
    u = classic.displacement_nm
    defined = classic.support & np.all(np.isfinite(u), axis=0)
    nearest = distance_transform_edt(~defined, return_distances=False, return_indices=True)
    u0 = u[(slice(None), *nearest)]
    return reconstruct_joint(
        intensities,
        reflections,
        classic.grid,
        start,
        displacement_nm=u0,
        masks=masks,
        model=model,
        loss=loss,
        n_steps=n_steps,
        log_every=log_every,
        want_tensor=want_tensor,
        lr_shape=lr_shape,
        lr_displacement=lr_displacement,
        smooth_weight=smooth_weight,
        fit_offset=fit_offset,
    )


def reconstruct_multi(
    intensities: tuple[np.ndarray, ...],
    reflections: tuple[Reflection, ...],
    grid: SampleGrid,
    params: ReconParams,
    *,
    key: jax.Array,
    masks: tuple[np.ndarray | None, ...] | None = None,
    reference: np.ndarray | None = None,
    n_steps: int = 600,
    smooth_weight: float = 30.0,
) -> tuple[IndependentResult, JointResult]:
    """The whole multi-reflection route without a truth: independent reconstructions combined
    by least squares (independent_route), then the joint AD started from them
    (joint_from_independent). Both results are in the frame of reference (None: the first
    reflection's sample-frame amplitude)."""
    check_multi(reflections, want_tensor=True)
    classic = independent_route(
        intensities, reflections, grid, params, key=key, masks=masks, reference=reference
    )
    joint = joint_from_independent(
        classic,
        intensities,
        reflections,
        masks=masks,
        model=params.model,
        loss=params.loss,
        n_steps=n_steps,
        smooth_weight=smooth_weight,
    )
    return classic, joint


def run_multi_reflection(
    cfg: MultiReflectionConfig,
    inputs: dict[str, xr.Dataset],
    merged: dict[str, xr.Dataset] | None = None,
    *,
    params: ReconParams | None = None,
    field: str = "multi",
) -> xr.Dataset:
    """One multi-reflection set, from the store's groups to its result group.

    inputs: dataset name -> input group (data.dataset.to_xarray); merged: dataset name ->
    merged group (amplitude, phase on the conjugate grid) of its single-reflection sweep; a
    dataset without one is reconstructed here with params (None: ReconParams()) and cfg.seed.
    Returns the joint u (and strain tensor when cfg.tensor) on the sample grid (dims x, y, z
    in nm), the independent route's u and projections beside it, metrics in attrs.
    """
    merged = merged or {}
    geometries = {}
    for entry in cfg.reflections:
        if entry.dataset not in inputs:
            raise DyncdiError(f"{field}.reflections", f"no input {entry.dataset!r}", "add it")
        geometries[entry.dataset] = Geometry.from_attrs(inputs[entry.dataset].attrs["geometry"])
    reflections = build_reflections(cfg, geometries, field)
    grid = SampleGrid(cfg.grid.shape, cfg.grid.voxel_nm)
    measurements = [from_xarray(inputs[e.dataset], f"inputs.{e.dataset}") for e in cfg.reflections]
    keys = jax.random.split(jax.random.key(cfg.seed), len(reflections))
    objects = []
    for j, (entry, m) in enumerate(zip(cfg.reflections, measurements, strict=True)):
        if entry.dataset in merged:
            ds = merged[entry.dataset]
            objects.append(ds["amplitude"].values * np.exp(1j * ds["phase"].values))
        else:
            rec = reconstruct(m.intensity, m.mask, m.geometry, params or ReconParams(), key=keys[j])
            objects.append(rec.obj)
    classic = combine_reconstructions(tuple(objects), reflections, grid, want_tensor=cfg.tensor)
    intensities = tuple(m.intensity for m in measurements)
    masks = tuple(m.mask for m in measurements)
    j = cfg.joint
    joint = joint_from_independent(
        classic,
        intensities,
        reflections,
        masks=masks,
        model=j.model,
        loss=j.loss,
        n_steps=j.steps,
        log_every=j.log_every,
        smooth_weight=j.smooth_weight,
        lr_shape=j.lr_shape,
        lr_displacement=j.lr_displacement,
        want_tensor=cfg.tensor,
        fit_offset=j.fit_rocking_offset,
    )
    h = np.stack([r.h_nm for r in reflections])
    hkls = [r.geometry.hkl for r in reflections]
    if cfg.tensor:
        ds = strain_dataset(joint.displacement_nm, joint.support, grid, h, hkls)
    else:
        ds = displacement_dataset(joint.displacement_nm, joint.support, grid, h, hkls)
    dims = ds["support"].dims
    ds["shape"] = (dims, joint.shape.astype(np.float32), {"units": "1", "long_name": "shape S"})
    ds["displacement_independent"] = (
        ("component", *dims),
        classic.displacement_nm.astype(np.float32),
        {"units": "nm", "long_name": "u of the independent route (per-voxel least squares)"},
    )
    ds["projection_independent"] = (
        ("reflection", *dims),
        classic.projections_nm.astype(np.float32),
        {"units": "nm", "long_name": "h_j.u / |h_j| of each aligned reconstruction"},
    )
    ds = ds.assign_coords(reflection=[e.dataset for e in cfg.reflections])
    ds["joint_loss"] = (("joint_step",), joint.loss, {"long_name": "joint AD data loss"})
    ds.attrs.update(
        kind="dyncdi-multi",
        config=cfg.model_dump(mode="json"),
        datasets=[e.dataset for e in cfg.reflections],
        azimuth_deg=[e.azimuth_deg for e in cfg.reflections],
        twins=[bool(t) for t in classic.twins],
        from_merged=[e.dataset in merged for e in cfg.reflections],
        metrics=joint.metrics,
    )
    return ds


# -------------------------------------------------------------------------------- the demo


def demo(
    size: int = 32,
    n_steps: int = 600,
    noise: bool = False,
    seed: int = 0,
    data_model: str = "kinematical",
) -> dict:
    """Simulate Au 111, -111, 1-11 and 002 at size^3 (9 keV, an 800 nm crystal; data_model's
    intensities) and compare the routes: independent + least squares, joint AD (kinematical)
    from the truth's support blurred with u = 0, joint AD started from the independent result
    (reconstruct_multi's chain) and, for dynamical data, the joint AD through the dynamical
    model. Prints and returns u RMS errors per component over the largest component range, and
    the strain tensor RMS error over the largest component range, after removing the
    crystal's translation and a constant u."""
    from ..analysis.strain_tensor import displacement_errors, remove_translation, strain_errors
    from ..config import GeometryConfig
    from ..data.simulate_multi import VectorDisplacement, simulate_multi

    base = GeometryConfig(
        energy_kev=9.0,
        material="Au",
        shape=(size, size, size),
        rocking_step_deg=0.005 * 32 / size,
        pixel_size_um=55.0 * 32 / size,
        detector_distance_m=1.0,
    )
    hkls = [(1, 1, 1), (-1, 1, 1), (1, -1, 1), (0, 0, 2)]
    reflections = tuple(Reflection(base.model_copy(update={"hkl": h}).build()) for h in hkls)
    grid = SampleGrid((size * 5 // 4,) * 3, 40.0)
    sim = simulate_multi(
        reflections,
        grid,
        displacement=VectorDisplacement(seed=seed),
        noise=noise,
        model=data_model,
    )
    truth = sim.truth
    out: dict = {"noise": noise, "data": data_model, "reflections": [list(h) for h in hkls]}

    def score(name: str, shape: np.ndarray, u: np.ndarray, seconds: float) -> None:
        shape, u, _ = remove_translation(shape, u, truth.amplitude)
        region = truth.support & (shape > 0.5)
        rms, span = displacement_errors(u, truth.displacement_nm, region)
        out[name] = {
            "u_rms_nm": rms.tolist(),
            "u_range_nm": span.tolist(),
            "u_rms_over_range": (rms / span.max()).tolist(),
            "strain_rms_over_range": strain_errors(u, truth.displacement_nm, region, grid.voxel_nm),
            "voxels": int(region.sum()),
            "seconds": seconds,
        }
        print(
            f"{name:24s} u RMS/range x y z {np.round(rms / span.max(), 4)}  strain "
            f"{out[name]['strain_rms_over_range']:.3f}  ({region.sum()} voxels, {seconds:.1f} s)"
        )

    t0 = time.perf_counter()
    start = np.asarray(gaussian_blur(jnp.asarray(truth.support, jnp.float32), jnp.asarray(1.0)))
    joint = reconstruct_joint(sim.intensities, reflections, grid, start, n_steps=n_steps)
    score("joint_from_truth_support", joint.shape, joint.displacement_nm, time.perf_counter() - t0)
    t0 = time.perf_counter()
    classic = independent_route(
        sim.intensities,
        reflections,
        grid,
        ReconParams(),
        key=jax.random.key(seed),
        reference=truth.amplitude,
    )
    seconds = time.perf_counter() - t0
    amplitude = np.abs(classic.objects).min(axis=0)
    amplitude = np.where(
        classic.support, amplitude / np.quantile(amplitude[classic.support], 0.9), 0.0
    )
    u = np.where(classic.support, classic.displacement_nm, 0.0)
    score("independent", amplitude, u, seconds)
    t0 = time.perf_counter()
    chained = joint_from_independent(classic, sim.intensities, reflections, n_steps=n_steps)
    seconds = time.perf_counter() - t0
    score("joint_from_independent", chained.shape, chained.displacement_nm, seconds)
    if data_model == "dynamical":
        t0 = time.perf_counter()
        joint = reconstruct_joint(
            sim.intensities, reflections, grid, start, model="dynamical", n_steps=n_steps
        )
        seconds = time.perf_counter() - t0
        score("joint_dynamical_from_truth_support", joint.shape, joint.displacement_nm, seconds)
    return out


if __name__ == "__main__":
    if "--demo" in sys.argv[1:]:
        data_model = "dynamical" if "--dynamical" in sys.argv[1:] else "kinematical"
        demo(noise="--noise" in sys.argv[1:], data_model=data_model)
    else:
        print("usage: python -m dyncdi_hpc.recon.multi --demo [--noise] [--dynamical]")
