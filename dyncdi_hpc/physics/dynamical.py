"""3D dynamical (two-beam Takagi-Taupin) forward model on geometry.py's conjugate grid.

Same output as kinematical.forward: forward(params, geometry) -> intensity of shape
geometry.shape in FFT order, so a reconstruction switches model by its name in FORWARD_MODELS.

How the conjugate grid meets the march (geometry.py, tt_march.py, sheared_march.py). The
conjugate-grid steps are a0 = |a0| uh (along the exit beam), a1 = |a1| z and a2 = |a2| y,
because b0 is along x, b1 along (-sin tB, 0, cos tB) and b2 along y. So every y-slice (index
m2) is one independent 2D march, and in the march lattice r = O + i D u0 + j D uh the
fractional conjugate indices are mu0 = -1 + (i + j) / p0 (the march column n = i + j) and mu1 =
M - i / r, with p0 = |a0| / D and r = c / D an integer, c = |a1| / (2 sin tB). The integer r
puts every r-th exit ray exactly on a column of voxels (mu1 = m1): the exit-plane spacing of
those rays, r D sin 2tB, is the detector-conjugate spacing 2 pi / (N1 |b1|), and the rays in
between carry the field between voxel columns through the march. The step D = c / r is the
largest that keeps at least points_per_extinction points per coupling length lambda / (pi C
|sqrt(chih chihbar)|) and points_per_voxel points per voxel along a0.

Per rocking angle dtheta (one march each, alpha = -2 sin 2tB dtheta), the far field at the
detector pixel (n1, n2), whose q = n0 b0 + n1 b1 + n2 b2, is the 2D DFT over (m1, m2) of the
exit field on the column rays times exp(-i |h| cos tB D dtheta i): in the weak-scattering
limit the march's alpha phase supplies exp(-i q.uh j D) and this factor exp(-i q.u0 i D), so
that each crystal point enters with exp(-i q.r), the kinematical kernel.

Object and twin. The shape S = sigmoid(logits) and psi = S exp(i phase) are interpolated
bilinearly (psi as a complex number, so 2 pi jumps of the phase change nothing, as in the
kinematical model) onto the march points; chi0 couples through S, chih through psi and chihbar
through conj(psi). physics.md's chih(r) = chih S exp(-i h.u) then reads h.u = -phase: the
kinematical |DFT(S exp(+i phase))|^2 with the exp(-i q.r) kernel is the Born limit of the
physical crystal with displacement u = -phase / |h| along h, and only this reading gives both
models the same intensity on the same detector frame (mirroring q instead would flip the sign
of the rocking angle, which a dynamical rocking curve, asymmetric by refraction, does not
allow). A uniform expansion e along h is phase = -|h| e z, and moves the rocking curve by
-tan(tB) e in both models.

Sampling. In the weak limit the exit field on a column ray is the march's sum over its points,
p0 per voxel along a0, of the interpolated psi times exp(-i q.r); the far field over column
rays is a plain DFT over m1. A linear interpolant along a0 is the samples convolved with a
triangle, whose transform sinc^2(pi n0 / N0) would damp the high rocking angles, so psi is
first divided by it along m0 in Fourier space (a periodic prefilter, like the kinematical DFT;
the crystal must not touch the m0 faces). The shape S stays linear and in [0, 1].

Normalisation. The far field is divided by kappa C |chih| p0 sqrt(N0 N1 N2), kappa = pi D /
lambda, so that for chi -> 0 the intensity equals kinematical.forward's with the same parameters
(to ~1e-3 at points_per_voxel = 2, less at finer steps). Dynamical effects (extinction,
refraction, absorption) appear as departures from it; a reconstruction fits one global scale.

Measured geometries. A grid that is not (uh, z, y)-aligned (a measured scan's LabFrame whose
rocking axis, detector orientation or centre channel turn the q steps) takes
dynamical_measured.py: the same march on slices of the crystal frame, the object interpolated
from the oblique grid, the far field by a NUFFT on the detector's lattice. An aligned frame
(diffractometer.symmetric_frame) keeps this path; DynamicalOptions.general_path forces the
other one for checks. march_plan returns a MarchPlan or a MeasuredPlan, forward takes either.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, PartitionSpec

from ..errors import ParameterError, field_path
from . import dynamical_measured, tt_march
from .dynamical_measured import Box, MeasuredPlan
from .geometry import Geometry
from .march_pallas import MARCH_KERNELS, march, resolve_march_kernel
from .materials import BraggCase, Susceptibility, bragg_case
from .objects import CrystalParams
from .sheared_march import ShearedCoefficients, sheared_coefficients

# Voxels added on each side of a user box along m0: the prefilter (1 / sinc^2 along m0) spreads
# psi beyond the crystal with tails ~ 0.26, 0.10, 0.05, 0.03 of an edge voxel at 1, 2, 3, 4
# voxels; cutting them at the box changes the intensities (measured on the test crystal).
BOX_PREFILTER_MARGIN = 3


@dataclass(frozen=True)
class DynamicalOptions:
    """Static settings of the 3D dynamical model (hashable, static under jit).

    points_per_extinction: march points per coupling length along a ray (tt_march.py's
    accuracy knob, >= 6); points_per_voxel: march points per conjugate voxel along a0 (the
    sampling of the object along the exit beam, >= 1); drop_chihbar: single scattering with
    refraction and absorption (no Dh -> D0 back-coupling); checkpoint_block: under reverse
    mode keep the march state every that many columns and recompute the columns in between
    (0: keep every column); angle_chunk: march that many rocking angles at a time, each chunk
    recomputed under reverse mode, so that memory holds one chunk's march states (0: all
    angles at once); chi: susceptibilities replacing the database values of the geometry's
    reflection (None: xraydb through materials.py); box: a static bounding box of the crystal,
    ((lo0, hi0), (lo1, hi1), (lo2, hi2)) voxel index ranges [lo, hi) of the conjugate grid
    (support_box computes one): the object is vacuum outside it (its logits and phase there
    are ignored), and only the box is marched (None: the whole grid); march_kernel: "auto"
    takes the fused Pallas march (march_pallas.py) on a GPU and the XLA scan elsewhere, "xla"
    the XLA scan (sheared_march.py), "pallas" the fused march (in interpret mode on CPU: slow,
    for tests; it ignores checkpoint_block: it keeps no march history). Measured geometries
    only (dynamical_measured.py): slices_per_voxel: y-slices per voxel column width (the
    exit-plane sampling across the scattering plane, > 0; 2 halves the weak-limit sampling
    error, ~4e-4 at 1, for twice the march); general_path: take that path even on an aligned
    grid (a check of it against this one).
    """

    points_per_extinction: float = tt_march.POINTS_PER_EXTINCTION
    points_per_voxel: float = 2.0
    drop_chihbar: bool = False
    checkpoint_block: int = 0
    angle_chunk: int = 0
    chi: Susceptibility | None = None
    box: Box | None = None
    slices_per_voxel: float = 1.0
    general_path: bool = False
    march_kernel: str = "auto"


DEFAULT_OPTIONS = DynamicalOptions()


def support_box(mask: np.ndarray, margin: int = 1) -> Box:
    """Bounding box of a boolean support mask (N0, N1, N2), grown by margin voxels, clipped.

    For DynamicalOptions.box; e.g. support_box(sigmoid(logits) > 0.01) of an initial guess or
    of a kinematical reconstruction's support, with margin for the support to grow.
    """
    mask = np.asarray(mask, bool)
    if not mask.any():
        raise ParameterError("support", "the support mask is empty", "give a mask with a crystal")
    box = []
    for axis, n in enumerate(mask.shape):
        hit = np.nonzero(mask.any(axis=tuple(a for a in range(3) if a != axis)))[0]
        box.append((max(0, int(hit[0]) - margin), min(n, int(hit[-1]) + 1 + margin)))
    return (box[0], box[1], box[2])


@functools.lru_cache(maxsize=64)
def bragg_case_of(geometry: Geometry, chi: Susceptibility | None = None) -> BraggCase:
    """The reflection of a geometry (material, hkl, energy, polarisation), cached per geometry."""
    with field_path("geometry"):
        return bragg_case(
            geometry.material,
            geometry.hkl,
            geometry.energy_kev,
            polarisation=geometry.polarisation,
            chi=chi,
        )


def refraction_shift_rad(geometry: Geometry) -> float:
    """Shift of the dynamical rocking curve by refraction, -Re chi0 / sin 2thetaB (rad), in the
    rocking motor's angle: divided by dynamical_measured.rocking_efficiency on a measured grid."""
    shift = bragg_case_of(geometry).refraction_shift_rad
    if dynamical_measured.aligned(geometry):
        return shift
    return shift / dynamical_measured.rocking_efficiency(geometry)


@dataclass(frozen=True, eq=False)
class MarchPlan:
    """Everything static that maps one geometry onto the march (numpy; lengths in nm).

    The march covers box (voxel ranges [lo, hi) of the conjugate grid) in the sheared layout
    of sheared_march.sheared_march: (nx, nrays) per y-slice of the box. Column n sits at
    mu0 = lo0 - 1 + n / p0 and ray i at mu1 = hi1 - (i + 1) / r; col_rays[m1 - lo1] =
    r (hi1 - m1) - 1 are the exit rays through voxel column m1 of the box.
    """

    case: BraggCase
    setup: tt_march.MarchSetup
    march_kernel: str  # "xla" or "pallas": options.march_kernel resolved on this backend
    shape: tuple[int, int, int]
    object_box: Box  # the object is vacuum outside it
    box: Box  # the marched box: object_box and room for the prefilter's tails along m0
    p0: float
    rays_per_column: int
    nx: int
    nrays: int
    lo0: np.ndarray  # (nx,) index into the box's m0 axis zero-padded by one
    f0: np.ndarray  # (nx,) weight of lo0 + 1
    lo1: np.ndarray  # (nrays,) index into the box's m1 axis zero-padded by one
    f1: np.ndarray  # (nrays,) weight of lo1 + 1
    col_rays: np.ndarray  # (hi1 - lo1,) int
    dtheta: np.ndarray  # (N0,) rocking angles in FFT order (rad)
    beta_per_rad: float  # pi D alpha / lambda per rad of rocking: the march phase per step
    shear: float  # |h| cos tB D: exit-ray phase per ray per rad of rocking
    triangle_transform: np.ndarray  # (N0,) sinc^2(pi n0 / N0), FFT order
    norm: float  # kappa C |chih| p0 sqrt(N0 N1 N2)

    @property
    def points(self) -> int:
        """March point updates of one forward call."""
        n0 = self.shape[0]
        b2 = self.box[2][1] - self.box[2][0]
        return self.nx * self.nrays * n0 * b2


def _bilinear_axis(mu: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Linear-interpolation (lo, frac) into an axis of n samples zero-padded by one each side.

    Outside (-1, n) both corners point at the zero pad, so the weight is exactly 0 there.
    """
    lo = np.floor(mu)
    frac = mu - lo
    idx = lo.astype(np.int32) + 1
    outside = (mu <= -1) | (mu >= n)
    idx = np.where(outside, 0, idx)
    frac = np.where(outside, 0.0, frac)
    return idx, frac


def _check_box(box: Box | None, shape: tuple[int, int, int]) -> Box:
    if box is None:
        return ((0, shape[0]), (0, shape[1]), (0, shape[2]))
    ok = len(box) == 3 and all(
        0 <= int(lo) < int(hi) <= n for (lo, hi), n in zip(box, shape, strict=True)
    )
    if not ok:
        raise ParameterError(
            "dynamical.box", f"{box}", f"give three [lo, hi) index ranges inside {shape}"
        )
    (a, b), (c, d), (e, f) = box
    return ((int(a), int(b)), (int(c), int(d)), (int(e), int(f)))


def _check_options(options: DynamicalOptions) -> None:
    if not options.points_per_voxel >= 1:
        raise ParameterError(
            "dynamical.points_per_voxel", f"{options.points_per_voxel}", "give a value >= 1"
        )
    if options.angle_chunk < 0 or options.checkpoint_block < 0:
        raise ParameterError(
            "dynamical.angle_chunk",
            f"angle_chunk {options.angle_chunk}, checkpoint_block {options.checkpoint_block}",
            "give 0 (off) or a positive count",
        )
    if not options.slices_per_voxel > 0:
        raise ParameterError(
            "dynamical.slices_per_voxel", f"{options.slices_per_voxel}", "give a value > 0"
        )
    if options.march_kernel not in MARCH_KERNELS:
        raise ParameterError(
            "dynamical.march_kernel", f"{options.march_kernel}", "give auto, xla or pallas"
        )
    if not options.points_per_extinction >= tt_march.MIN_POINTS_PER_EXTINCTION:
        raise ParameterError(
            "dynamical.points_per_extinction",
            f"{options.points_per_extinction}",
            f"give at least {tt_march.MIN_POINTS_PER_EXTINCTION}",
        )


def _frame_lengths(geometry: Geometry, case: BraggCase) -> tuple[float, float]:
    """|a0|, |a1| (nm) of a conjugate grid checked to be (uh, z, y)-aligned."""
    tb = geometry.bragg_angle_rad
    # a measured |Q| sets its own Bragg angle (the lattice strain); the material sets chi
    if geometry.frame is None and abs(case.bragg_angle_rad - tb) > 1e-9:
        raise ParameterError("geometry", "materials and geometry disagree on the Bragg angle")
    basis = geometry.real_basis
    len0, len1 = (float(np.linalg.norm(basis[:, j])) for j in range(2))
    # geometry.py's frame guarantees it; a changed frame must not pass silently
    if not dynamical_measured.aligned(geometry):
        raise ParameterError("geometry", "the conjugate grid is not (uh, z, y)-aligned")
    return len0, len1


@functools.lru_cache(maxsize=64)
def march_plan(
    geometry: Geometry, options: DynamicalOptions = DEFAULT_OPTIONS
) -> MarchPlan | MeasuredPlan:
    """The static march plan of a geometry and options (cached): a MeasuredPlan for a grid
    that is not (uh, z, y)-aligned or with options.general_path, else a MarchPlan."""
    _check_options(options)
    object_box = box = _check_box(options.box, geometry.shape)
    case = bragg_case_of(geometry, options.chi)
    if options.general_path or not dynamical_measured.aligned(geometry):
        return dynamical_measured.measured_plan(geometry, case, options, object_box)
    len0, len1 = _frame_lengths(geometry, case)
    tb = geometry.bragg_angle_rad
    ell = case.extinction_length_ray_nm
    c = len1 / (2.0 * math.sin(tb))
    rays = max(
        1,
        math.ceil(c * options.points_per_extinction / ell - 1e-9),
        math.ceil(c * options.points_per_voxel / len0 - 1e-9),
    )
    step = c / rays
    setup = tt_march.march_setup(
        case,
        step,
        drop_chihbar=options.drop_chihbar,
        checkpoint_block=options.checkpoint_block,
        parameter="dynamical.points_per_extinction",
    )
    p0 = len0 / step
    n0, n1, n2 = geometry.shape
    if options.box is not None:  # room for the prefilter's tails along m0
        (lo, hi), b1, b2 = box
        box = ((max(0, lo - BOX_PREFILTER_MARGIN), min(n0, hi + BOX_PREFILTER_MARGIN)), b1, b2)
    b0 = box[0][1] - box[0][0]
    b1 = box[1][1] - box[1][0]
    nx = math.floor(p0 * (b0 + 1) - 1e-9) + 1
    nrays = rays * (b1 + 1) - 1
    lo0, f0 = _bilinear_axis(-1.0 + np.arange(nx) / p0, b0)
    lo1, f1 = _bilinear_axis(b1 - (np.arange(nrays) + 1) / rays, b1)
    col_rays = (rays * (b1 - np.arange(b1)) - 1).astype(np.int32)
    kappa = math.pi * step / case.wavelength_nm
    chih = case.polarisation_factor * abs(complex(case.chi.chih))
    return MarchPlan(
        case=case,
        setup=setup,
        march_kernel=resolve_march_kernel(options.march_kernel),
        shape=geometry.shape,
        object_box=object_box,
        box=box,
        p0=p0,
        rays_per_column=rays,
        nx=nx,
        nrays=nrays,
        lo0=lo0,
        f0=f0,
        lo1=lo1,
        f1=f1,
        col_rays=col_rays,
        dtheta=np.fft.ifftshift(geometry.rocking_angles_rad),
        beta_per_rad=kappa * float(tt_march.alpha_from_dtheta(1.0, tb)),
        shear=geometry.h_nm * math.cos(tb) * step,
        triangle_transform=np.sinc(np.fft.fftfreq(n0)) ** 2,
        norm=kappa * chih * p0 * math.sqrt(n0 * n1 * n2),
    )


def march_fields(params: CrystalParams, plan: MarchPlan) -> tuple[jax.Array, jax.Array]:
    """S (real) and psi = S exp(i phase) (complex) on the march grid, each (nx, nrays, B2).

    B2 = hi2 - lo2, the y-slices of the box.
    """
    rdtype = params.logits.dtype
    s = jax.nn.sigmoid(params.logits)
    if plan.object_box != ((0, plan.shape[0]), (0, plan.shape[1]), (0, plan.shape[2])):
        inside = np.zeros(plan.shape, bool)
        inside[tuple(slice(lo, hi) for lo, hi in plan.object_box)] = True
        s = jnp.where(inside, s, 0)
    psi = s.astype(jnp.complex128 if rdtype == jnp.float64 else jnp.complex64) * lax.complex(
        jnp.cos(params.phase), jnp.sin(params.phase)
    )
    # Linear interpolation along a0 multiplies the transform by the triangle's sinc^2(omega/2):
    # dividing psi's DFT along m0 by it first makes the interpolated coupling reproduce the
    # samples' DFT (the kinematical model) in the weak limit and keeps a linear phase linear
    # (a uniform strain moves the rocking curve rigidly) instead of damping it between voxels.
    prefilter = jnp.asarray(1.0 / plan.triangle_transform, psi.dtype)[:, None, None]
    psi = jnp.fft.ifft(jnp.fft.fft(psi, axis=0) * prefilter, axis=0)
    (lo0, hi0), (lo1, hi1), (lo2, hi2) = plan.box

    def resample(x: jax.Array) -> jax.Array:
        x = jnp.pad(x[lo0:hi0, lo1:hi1, lo2:hi2], ((1, 1), (1, 1), (0, 0)))
        f0 = jnp.asarray(plan.f0, x.dtype)[:, None, None]
        cols = (1 - f0) * x[plan.lo0] + f0 * x[plan.lo0 + 1]  # (nx, B1 + 2, B2)
        f1 = jnp.asarray(plan.f1, x.dtype)[None, :, None]
        return (1 - f1) * cols[:, plan.lo1] + f1 * cols[:, plan.lo1 + 1]

    return resample(s), resample(psi)


def march_coefficients(params: CrystalParams, plan: MarchPlan) -> ShearedCoefficients:
    """The sheared march's per-point update of a crystal, each (nx, nrays, B2) complex.

    Independent of the rocking angle: computed once per forward call, shared by every angle.
    """
    s_grid, w_grid = march_fields(params, plan)
    return sheared_coefficients(s_grid, w_grid, plan.case.chi, plan.setup)


def _frames(k: ShearedCoefficients, dtheta: jax.Array, plan: MarchPlan) -> jax.Array:
    """Far-field intensity of rocking angles dtheta (A,) (rad): shape (A, N1, N2)."""
    rdtype = dtheta.dtype
    beta = plan.beta_per_rad * dtheta
    phase_step = lax.complex(jnp.cos(beta), -jnp.sin(beta))
    out = march(k, phase_step, plan.setup.checkpoint_block, plan.march_kernel)
    field = jnp.moveaxis(out[plan.col_rays], 2, 0)  # (A, B1, B2): column m1, y-slice m2
    # Dh' = out exp(i beta (nx - 1 - i)) and exp(-i q.u0 i D) = exp(-i shear dtheta i), both
    # referred to the box's first column ray
    rel = jnp.asarray(plan.col_rays - plan.col_rays[0], rdtype)[None, :]
    ramp = -(beta + plan.shear * dtheta)[:, None] * rel  # (A, B1)
    field = field * lax.complex(jnp.cos(ramp), jnp.sin(ramp))[:, :, None]
    (_, _), (lo1, hi1), (lo2, hi2) = plan.box
    _, n1, n2 = plan.shape
    field = jnp.pad(field, ((0, 0), (lo1, n1 - hi1), (lo2, n2 - hi2)))
    far = jnp.fft.fft2(field)  # (A, N1, N2): column m1 -> detector row n1
    amp = far * (1.0 / plan.norm)
    return amp.real**2 + amp.imag**2


def _coefficients(params: CrystalParams, plan: MarchPlan | MeasuredPlan) -> ShearedCoefficients:
    """march_coefficients of either plan, each (nx, nrays, nslices) complex."""
    if isinstance(plan, MeasuredPlan):
        return dynamical_measured.march_coefficients(params, plan)
    return march_coefficients(params, plan)


def _chunked_frames(
    k: ShearedCoefficients, dtheta: jax.Array, plan: MarchPlan | MeasuredPlan, chunk: int
) -> jax.Array:
    """The frames of either plan over the angles, chunk at a time (recomputed under reverse
    mode) when chunk > 0."""
    frames = dynamical_measured.frames if isinstance(plan, MeasuredPlan) else _frames
    n = dtheta.shape[0]
    if chunk <= 0 or chunk >= n:
        return frames(k, dtheta, plan)
    nchunks = -(-n // chunk)
    padded = jnp.pad(dtheta, (0, nchunks * chunk - n))

    @jax.checkpoint
    def body(d: jax.Array) -> jax.Array:
        return frames(k, d, plan)

    frames = lax.map(body, padded.reshape(nchunks, chunk))
    return frames.reshape(nchunks * chunk, *frames.shape[2:])[:n]


@partial(jax.jit, static_argnames=("geometry", "options"))
def forward(
    params: CrystalParams,
    geometry: Geometry,
    options: DynamicalOptions = DEFAULT_OPTIONS,
    dtheta_offset: jax.Array | float = 0.0,
) -> jax.Array:
    """Dynamical intensity (kinematical scale, FFT order) of a crystal, shape geometry.shape.

    params: logits and phase, each (N0, N1, N2) on the conjugate grid (float32 -> complex64
    march, float64 -> complex128). Equals kinematical.forward for chi -> 0. dtheta_offset
    (rad, traced, differentiable): absolute rocking offset added to every rocking angle of the
    geometry, so frame n0 is the crystal at dtheta_n0 + dtheta_offset from the kinematical
    Bragg angle (a dynamical curve sits at the refraction shift -Re chi0 / sin 2tB). On a
    measured grid the angles are the rocking motor's (refraction_shift_rad gives the shift).
    """
    plan = march_plan(geometry, options)
    k = _coefficients(params, plan)
    dtype = params.logits.dtype
    dtheta = jnp.asarray(plan.dtheta, dtype) + jnp.asarray(dtheta_offset, dtype)
    return _chunked_frames(k, dtheta, plan, options.angle_chunk)


def angle_mesh(devices: list | None = None) -> Mesh:
    """A 1D device mesh with axis 'angle' over devices (default: every device)."""
    return Mesh(np.asarray(devices if devices is not None else jax.devices()), ("angle",))


@partial(jax.jit, static_argnames=("geometry", "options", "mesh"))
def forward_sharded(
    params: CrystalParams,
    geometry: Geometry,
    options: DynamicalOptions = DEFAULT_OPTIONS,
    mesh: Mesh | None = None,
    dtheta_offset: jax.Array | float = 0.0,
) -> jax.Array:
    """forward with the rocking angles sharded over mesh's 'angle' axis (default all devices).

    The crystal is replicated, each device marches its own angles; the result is sharded along
    axis 0 (angles padded up to a multiple of the device count, then cut). Under reverse mode
    the replicated crystal's cotangents are summed over the devices (shard_map's transpose).
    dtheta_offset: as forward's.
    """
    mesh = mesh if mesh is not None else angle_mesh()
    plan = march_plan(geometry, options)
    k = _coefficients(params, plan)
    ndev = mesh.shape["angle"]
    n = plan.dtheta.shape[0]
    total = -(-n // ndev) * ndev
    dtype = params.logits.dtype
    dtheta = jnp.asarray(np.pad(plan.dtheta, (0, total - n)), dtype)
    dtheta = dtheta + jnp.asarray(dtheta_offset, dtype)

    def local(k: ShearedCoefficients, d: jax.Array) -> jax.Array:
        return _chunked_frames(k, d, plan, options.angle_chunk)

    sharded = jax.shard_map(
        local,
        mesh=mesh,
        in_specs=(PartitionSpec(), PartitionSpec("angle")),
        out_specs=PartitionSpec("angle"),
        check_vma=False,  # the march's scan starts from replicated boundary fields
    )
    return sharded(k, dtheta)[:n]
