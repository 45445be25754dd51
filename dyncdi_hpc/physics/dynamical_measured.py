"""The 3D dynamical model on a measured (non-symmetric) conjugate grid: march and far field.

dynamical.py marches a grid aligned as (uh, z, y), where the detector rows are the exit-plane
direction e1 in the scattering plane and the rocking step is along x. A measured scan
(geometry.frame, diffractometer.py) has the same crystal frame (z along the measured Q, x
along the part of k_i normal to it, y = z cross x, so k_i = k (cos tB, 0, -sin tB) and k_f =
k uh, uh = (cos tB, 0, sin tB)), but q steps b0, b1, b2 of any orientation. Write e1 = (-sin
tB, 0, cos tB), e2 = y, and g = (g0, g1, g2) the (uh, e1, e2) components of b0.

What stays. b1 and b2 are normal to k_f (a pixel step turns k_f at constant |k_f|), so a0,
normal to both, is along uh: every voxel column (m1, m2) of the conjugate grid is one
diffracted ray, and mu1, mu2 (fractional conjugate indices) are constant along any ray. The
crystal is still a batch of independent 2D Takagi-Taupin problems in the planes y = const,
marched by sheared_march on the lattice r = O + n D uh - 2 i D sin tB z + y_l e2 (column n,
ray i, slice l; the D0 ray through (n, i) comes from (n - 1, i - 1)).

The rocking axis. Frame t (t = n0 plus the rocking offset in steps) turns k_i by t times the
rocking step; to first order only the part of the turn about the scattering-plane normal
detunes the Bragg condition: alpha = (|k_i' + h|^2 - k^2) / k^2 = -2 t g0 / k, which is the
symmetric model's alpha = -2 sin 2tB dtheta at dtheta = t g0 / (|h| cos tB). The components
g1, g2 tilt the incident beam by ~1e-4 rad: dropped inside the crystal (a lateral shift of
1e-4 of the path), kept in the far field, where they are a phase ramp over the exit plane.

The detector and its centre channel. The far field of frame t at pixel (n1, n2) is the sum
over the march's exit rays (i, l) of the exit field Dh' (referred to the ray's point r_i0 =
O + i D u0 + y_l e2 at sh = 0) times exp(-i q.r_i0), q = t b0 + n1 b1 + n2 b2. In conjugate
coordinates q.r = 2 pi (t mu0 / N0 + n1 mu1 / N1 + n2 mu2 / N2), so the frame's factor is
exp(-2 pi i t mu0(r_i0) / N0) (which holds g1 and g2) and what is left is
  F(n1, n2) = sum_{i, l} E[i, l] exp(-2 pi i (n1 mu1[i, l] / N1 + n2 mu2[i, l] / N2)),
mu1, mu2 affine in (i, l): the detector's orientation about k_f (rotated ~69 deg on scan 54)
and pixel steps (from the centre channel and distance) make (n1, n2) a sheared lattice of
exit-plane frequencies, computed by a type-2 NUFFT (nufft.py, ~1e-7) from the rectangular
(ray, slice) grid. The march phase exp(-i q_h j D), q_h = t g0, comes from alpha as in the
symmetric model, so in the weak limit each crystal point enters with exp(-i q.r).

Object. S = sigmoid(logits) and psi = S exp(i phase) live on the oblique conjugate lattice;
each march point takes them by tricubic B-spline interpolation in (mu0, mu1, mu2): in (mu1,
mu2) once per ray, then in mu0 along it. The interpolant's transform is the samples' DFT
times prod_j sinc^4(n_j / N_j) at the detector pixels, so psi is divided by that product in
Fourier space first (a periodic prefilter: the crystal must not touch the grid's faces; a
static box keeps PREFILTER_MARGIN voxels for its tails); S is not prefiltered and stays in
[0, 1]. The march's sum over its points stands for the interpolant's integral: its error is
the aliasing of the interpolant's spectrum by the march lattice (rays, slices and p0 points
per voxel along a0), sinc^4(nu + k p) / sinc^4(nu) at sampling p per voxel, 1e-2 at the band
edge for p = 2. A linear interpolant (sinc^2) aliases 0.2 there: on an oblique lattice the
march cannot sit on the voxel columns, as the aligned path's does, and that measured 1e-2
against the kinematical model on the 16^3 test crystal at chi x 1e-2, the cubic 8e-4 (what
chi x 1e-2 leaves, as on the aligned path). With p0 = |a0| / D points
per voxel along a ray and rho = (|det A| / |a0|) / (D sin 2tB dy) exit rays per voxel column,
the far field divided by kappa C |chih| p0 rho sqrt(N0 N1 N2), kappa = pi D / lambda, equals
kinematical.forward for chi -> 0 (tests/physics/test_dynamical_measured.py measures it).

Costs and approximations. Rays are D sin 2tB apart along e1 (D from the extinction length or
|a0| / points_per_voxel), slices dy = sqrt(|det A| / |a0|) / slices_per_voxel apart along y;
the march covers the box's bounding parallelogram in every slice. In the symmetric case the
aligned path (dynamical.py) stays exact in (m1, m2); this one samples the exit plane instead.
The Bragg angle and |h| are the measured ones; the susceptibilities are the material's.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Protocol

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import ParameterError
from . import tt_march
from .geometry import Geometry
from .march_pallas import march, resolve_march_kernel
from .materials import BraggCase
from .nufft import Nufft2Plan, nufft2, nufft2_plan
from .objects import CrystalParams
from .sheared_march import ShearedCoefficients, sheared_coefficients

Box = tuple[tuple[int, int], tuple[int, int], tuple[int, int]]

# Relative misalignment below which a measured grid is (uh, z, y)-aligned and takes the exact
# path: diffractometer.symmetric_frame's central differences are aligned to ~4e-9.
ALIGNED_RTOL = 1e-6
# Voxels kept around a static box along every axis for the prefilter's tails (as
# dynamical.BOX_PREFILTER_MARGIN along m0).
PREFILTER_MARGIN = 3
# Zero voxels padded around the box for the interpolation (a cubic B-spline reaches 2 voxels).
PAD = 3


class MarchOptions(Protocol):
    """The fields of dynamical.DynamicalOptions that the measured march reads."""

    points_per_extinction: float
    points_per_voxel: float
    slices_per_voxel: float
    drop_chihbar: bool
    checkpoint_block: int
    march_kernel: str


def crystal_axes(bragg_angle_rad: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """uh (exit beam), e1 (exit-plane direction in the scattering plane), e2 = y; (3,) each."""
    s, c = math.sin(bragg_angle_rad), math.cos(bragg_angle_rad)
    return np.array([c, 0.0, s]), np.array([-s, 0.0, c]), np.array([0.0, 1.0, 0.0])


def aligned(geometry: Geometry, rtol: float = ALIGNED_RTOL) -> bool:
    """True when the conjugate grid is (uh, z, y)-aligned to rtol (always without a frame)."""
    if geometry.frame is None:
        return True
    uh, _, _ = crystal_axes(geometry.bragg_angle_rad)
    a = geometry.real_basis / np.linalg.norm(geometry.real_basis, axis=0)
    return bool(
        np.allclose(a[:, 0], uh, rtol=0, atol=rtol)
        and np.allclose(a[:, 1], [0.0, 0.0, 1.0], rtol=0, atol=rtol)
        and np.allclose(a[[0, 2], 2], 0.0, rtol=0, atol=rtol)
    )


def rocking_efficiency(geometry: Geometry) -> float:
    """Bragg-angle change per radian of the rocking motor, b0.uh / (|h| cos tB step) (1 ideal)."""
    uh, _, _ = crystal_axes(geometry.bragg_angle_rad)
    g0 = float(geometry.q_basis[:, 0] @ uh)
    return g0 / (geometry.h_nm * math.cos(geometry.bragg_angle_rad) * geometry.rocking_step_rad)


@dataclass(frozen=True, eq=False)
class MeasuredPlan:
    """Everything static that maps a measured geometry onto the march (numpy; lengths in nm).

    The march covers box (voxel ranges [lo, hi) of the conjugate grid) with (nx, nrays) points
    in each of nslices y-slices. Ray tables are (nrays, nslices) in the box's coordinates
    padded by PAD voxels: the cubic B-spline's first index and weights along m1 and m2, and
    mu0 of the ray's column 0 (the march point n sits at ray_mu0 + n / p0).
    """

    case: BraggCase
    setup: tt_march.MarchSetup
    march_kernel: str  # "xla" or "pallas": options.march_kernel resolved on this backend
    shape: tuple[int, int, int]
    object_box: Box
    box: Box
    p0: float
    nx: int
    nrays: int
    nslices: int
    ray_lo: tuple[np.ndarray, np.ndarray]  # (nrays, nslices) int: first of 4 along m1, m2
    ray_w: tuple[np.ndarray, np.ndarray]  # (4, nrays, nslices): their B-spline weights
    ray_mu0: np.ndarray
    dtheta: np.ndarray  # (N0,) rocking-motor angles from the peak, FFT order (rad)
    beta_per_rad: float  # march phase per step per rad of the rocking motor
    ramp_per_rad: np.ndarray  # (nrays, nslices): 2 pi mu0(r_i0) / (N0 step) (per rad)
    nufft: Nufft2Plan  # (nrays, nslices) exit grid -> (N1 N2) pixels, FFT order
    prefilter: tuple[np.ndarray, np.ndarray, np.ndarray]  # 1 / sinc^4(n_j / N_j), FFT order
    norm: float  # kappa C |chih| p0 rho sqrt(N0 N1 N2)

    @property
    def points(self) -> int:
        """March point updates of one forward call."""
        return self.nx * self.nrays * self.nslices * self.shape[0]


def _grown(box: Box, shape: tuple[int, int, int]) -> Box:
    """box and PREFILTER_MARGIN voxels on every side, clipped to the grid (the full grid stays)."""
    grown = [
        (max(0, lo - PREFILTER_MARGIN), min(n, hi + PREFILTER_MARGIN))
        for (lo, hi), n in zip(box, shape, strict=True)
    ]
    return (grown[0], grown[1], grown[2])


@dataclass(frozen=True)
class _Region:
    """The march lattice of a box: point (n, i, l) at s uh + xi e1 + y e2 (nm, crystal frame),
    s = s0 + n D - 2 i D sin^2 tB, xi = xi0 - i D sin 2tB, y = y0 + l dy."""

    s0: float
    xi0: float
    y0: float
    dy: float
    nx: int
    nrays: int
    nslices: int


def _region(geometry: Geometry, box: Box, step: float, dy: float) -> _Region:
    """The smallest march lattice whose every slice covers the box's interpolant's support."""
    tb = geometry.bragg_angle_rad
    uh, e1, e2 = crystal_axes(tb)
    half = np.array([n // 2 for n in geometry.shape], float)
    # the interpolant of the samples in [lo, hi) vanishes outside (lo - 2, hi + 1)
    corners = np.array(list(itertools.product(*[(lo - 2, hi + 1) for lo, hi in box])), float)
    r = (corners - half) @ geometry.real_basis.T
    s, xi, y = r @ uh, r @ e1, r @ e2
    dxi = step * math.sin(2 * tb)
    xi0 = float(xi.max())
    ray = (xi0 - xi) / dxi
    col = (s + 2 * ray * step * math.sin(tb) ** 2) / step
    nslices = math.ceil(float(np.ptp(y)) / dy - 1e-9) + 1
    return _Region(
        s0=float(col.min()) * step,
        xi0=xi0,
        y0=0.5 * float(y.max() + y.min()) - 0.5 * (nslices - 1) * dy,
        dy=dy,
        nx=math.ceil(float(np.ptp(col)) - 1e-9) + 1,
        nrays=math.ceil(float(ray.max()) - 1e-9) + 1,
        nslices=nslices,
    )


def bspline_weights(x, n: int, xp=np):
    """(first index (...), weights (4, ...)) of cubic B-spline interpolation at x (any shape)
    in an axis of n samples padded by PAD each side (x in padded coordinates, numpy or
    jax.numpy as xp); where the interpolant vanishes every weight is 0 at index 0."""
    lo = xp.floor(x)
    t = x - lo
    inside = (x > PAD - 2) & (x < PAD + n + 1)
    u = 1 - t
    w = [u**3 / 6, (3 * t**3 - 6 * t**2 + 4) / 6, (3 * u**3 - 6 * u**2 + 4) / 6, t**3 / 6]
    first = xp.where(inside, lo - 1, 0).astype(xp.int32)
    return first, xp.stack([xp.where(inside, wj, 0) for wj in w])


def _ray_mu(geometry: Geometry, region: _Region, step: float) -> np.ndarray:
    """Conjugate coordinates mu (array index units) of every ray's column 0: (nrays, nslices, 3)."""
    tb = geometry.bragg_angle_rad
    uh, e1, e2 = crystal_axes(tb)
    i = np.arange(region.nrays)[:, None, None]
    l_ = np.arange(region.nslices)[None, :, None]
    r = (
        (region.s0 - 2 * i * step * math.sin(tb) ** 2) * uh
        + (region.xi0 - i * step * math.sin(2 * tb)) * e1
        + (region.y0 + l_ * region.dy) * e2
    )
    half = np.array([n // 2 for n in geometry.shape], float)
    return r @ np.linalg.inv(geometry.real_basis).T + half


def _far_field_plan(geometry: Geometry, mu: np.ndarray) -> Nufft2Plan:
    """NUFFT from the (ray, slice) exit grid to the pixels (n1, n2) in FFT order."""
    _, n1, n2 = geometry.shape
    d_ray = mu[1, 0, 1:] - mu[0, 0, 1:] if mu.shape[0] > 1 else np.zeros(2)
    d_slice = mu[0, 1, 1:] - mu[0, 0, 1:] if mu.shape[1] > 1 else np.zeros(2)
    k1, k2 = np.meshgrid(np.fft.fftfreq(n1) * n1, np.fft.fftfreq(n2) * n2, indexing="ij")
    nu = np.stack([k1.ravel() / n1, k2.ravel() / n2], axis=1)  # cycles per voxel
    omega = 2 * np.pi * np.stack([nu @ d_ray, nu @ d_slice], axis=1)
    return nufft2_plan(mu.shape[:2], omega)


def measured_plan(
    geometry: Geometry, case: BraggCase, options: MarchOptions, object_box: Box
) -> MeasuredPlan:
    """The static march plan of a measured geometry (object vacuum outside object_box)."""
    tb = geometry.bragg_angle_rad
    uh, _, _ = crystal_axes(tb)
    basis = geometry.real_basis
    len0 = float(np.linalg.norm(basis[:, 0]))
    if np.abs(basis[:, 0] / len0 - uh).max() > 1e-6:  # b1, b2 normal to k_f guarantee it
        raise ParameterError("geometry", "the rocking-step voxel axis a0 is not along k_f")
    step = min(case.extinction_length_ray_nm / options.points_per_extinction,
               len0 / options.points_per_voxel)  # fmt: skip
    setup = tt_march.march_setup(
        case,
        step,
        drop_chihbar=options.drop_chihbar,
        checkpoint_block=options.checkpoint_block,
        parameter="dynamical.points_per_extinction",
    )
    full = tuple((0, n) for n in geometry.shape)
    box = _grown(object_box, geometry.shape) if object_box != full else object_box
    cell = abs(float(np.linalg.det(basis))) / len0  # exit-plane area of one voxel column
    region = _region(geometry, box, step, math.sqrt(cell) / options.slices_per_voxel)
    mu = _ray_mu(geometry, region, step)
    lo = np.array([b[0] for b in box], float)
    size = [hi - lo_ for lo_, hi in box]
    x = mu - lo + PAD  # padded box coordinates
    lo1, w1 = bspline_weights(x[..., 1], size[1])
    lo2, w2 = bspline_weights(x[..., 2], size[2])
    p0 = len0 / step
    n0, n1, n2 = geometry.shape
    kappa = math.pi * step / case.wavelength_nm
    efficiency = rocking_efficiency(geometry)
    rho = cell / (step * math.sin(2 * tb) * region.dy)
    mu0_ref = mu[..., 0] + np.arange(region.nrays)[:, None] / p0  # at sh = 0 (n = i)
    return MeasuredPlan(
        case=case,
        setup=setup,
        march_kernel=resolve_march_kernel(options.march_kernel),
        shape=geometry.shape,
        object_box=object_box,
        box=box,
        p0=p0,
        nx=region.nx,
        nrays=region.nrays,
        nslices=region.nslices,
        ray_lo=(lo1, lo2),
        ray_w=(w1, w2),
        ray_mu0=x[..., 0],
        dtheta=np.fft.ifftshift(geometry.rocking_angles_rad),
        beta_per_rad=kappa * float(tt_march.alpha_from_dtheta(1.0, tb)) * efficiency,
        ramp_per_rad=2 * np.pi * mu0_ref / (n0 * geometry.rocking_step_rad),
        nufft=_far_field_plan(geometry, mu),
        prefilter=tuple(1.0 / np.sinc(np.fft.fftfreq(n)) ** 4 for n in geometry.shape),
        norm=kappa * case.polarisation_factor * abs(complex(case.chi.chih)) * p0 * rho
        * math.sqrt(n0 * n1 * n2),
    )  # fmt: skip


def _along_rays(x: jax.Array, plan: MeasuredPlan) -> jax.Array:
    """Tricubic B-spline interpolation of x (box shape, padded by PAD) at every march point:
    (nx, nrays, nslices)."""
    rdtype = jnp.real(x).dtype
    (lo1, lo2), (w1, w2) = plan.ray_lo, plan.ray_w
    rays = 0
    for a in range(4):
        for b in range(4):  # the profile along each ray, per m0: (B0 + 2 PAD, nrays, nslices)
            w = jnp.asarray(w1[a] * w2[b], x.dtype)
            rays = rays + w * x[:, lo1 + a, lo2 + b]
    mu0 = jnp.asarray(plan.ray_mu0, rdtype)[None] + (
        jnp.arange(plan.nx, dtype=rdtype)[:, None, None] / plan.p0
    )
    first, w0 = bspline_weights(mu0, x.shape[0] - 2 * PAD, jnp)
    w0 = w0.astype(x.dtype)
    return sum(w0[a] * jnp.take_along_axis(rays, first + a, axis=0) for a in range(4))


def march_fields(params: CrystalParams, plan: MeasuredPlan) -> tuple[jax.Array, jax.Array]:
    """S (real, in [0, 1]: B-spline weights are positive) and prefiltered psi = S exp(i phase)
    (complex) at the march points, each (nx, nrays, nslices)."""
    rdtype = params.logits.dtype
    s = jax.nn.sigmoid(params.logits)
    if plan.object_box != tuple((0, n) for n in plan.shape):
        inside = np.zeros(plan.shape, bool)
        inside[tuple(slice(lo, hi) for lo, hi in plan.object_box)] = True
        s = jnp.where(inside, s, 0)
    cdtype = jnp.complex128 if rdtype == jnp.float64 else jnp.complex64
    psi = s.astype(cdtype) * lax.complex(jnp.cos(params.phase), jnp.sin(params.phase))
    p0, p1, p2 = (jnp.asarray(p, cdtype) for p in plan.prefilter)
    psi = jnp.fft.ifftn(jnp.fft.fftn(psi) * (p0[:, None, None] * p1[None, :, None] * p2))
    window = tuple(slice(lo, hi) for lo, hi in plan.box)
    return (
        _along_rays(jnp.pad(s[window], PAD), plan),
        _along_rays(jnp.pad(psi[window], PAD), plan),
    )


def march_coefficients(params: CrystalParams, plan: MeasuredPlan) -> ShearedCoefficients:
    """The sheared march's per-point update, each (nx, nrays, nslices) complex."""
    s_grid, w_grid = march_fields(params, plan)
    return sheared_coefficients(s_grid, w_grid, plan.case.chi, plan.setup)


def frames(k: ShearedCoefficients, dtheta: jax.Array, plan: MeasuredPlan) -> jax.Array:
    """Far-field intensity of rocking-motor angles dtheta (A,) (rad): shape (A, N1, N2)."""
    rdtype = dtheta.dtype
    beta = plan.beta_per_rad * dtheta
    phase_step = lax.complex(jnp.cos(beta), -jnp.sin(beta))
    out = march(k, phase_step, plan.setup.checkpoint_block, plan.march_kernel)
    field = jnp.moveaxis(out, 2, 0)  # (A, nrays, nslices)
    # Dh' = out exp(-i beta i) up to a constant, times the frame's exp(-2 pi i t mu0(r_i0) / N0)
    rays = jnp.arange(plan.nrays, dtype=rdtype)[None, :, None]
    per_rad = jnp.asarray(plan.ramp_per_rad, rdtype)[None]
    ramp = -(beta[:, None, None] * rays + dtheta[:, None, None] * per_rad)
    field = field * lax.complex(jnp.cos(ramp), jnp.sin(ramp))
    amp = nufft2(field, plan.nufft) * (1.0 / plan.norm)  # up to a phase per pixel
    _, n1, n2 = plan.shape
    return (amp.real**2 + amp.imag**2).reshape(-1, n1, n2)
