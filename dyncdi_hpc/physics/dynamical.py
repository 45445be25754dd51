"""Two-beam dynamical diffraction in Bragg geometry (Takagi-Taupin), in JAX.

Frame (geometry.py's sample frame, restricted to the scattering plane y = 0): z along h,
x in the scattering plane normal to h. Unit vectors along the incident and diffracted beams
are u0 = (cos tB, -sin tB) and uh = (cos tB, sin tB) in (x, z). A crystal face normal to z
is the symmetric-Bragg surface, the crystal lies below it (z < 0), gamma0 = sin tB = -gammah.

March grid. The characteristics of TT are the s0 rays (along u0) and the sh rays (along uh);
their crossings form the oblique lattice r(i, j) = i step u0 + j step uh (s0 = i step,
sh = j step). Points with equal i + j (an anti-diagonal) lie on one vertical line
x = (i + j) step cos tB; the march sweeps these anti-diagonals in order of increasing x. The
grid stores a real-space rectangle of that lattice, not an (i, j) rhombus, because a slab or a
compact particle fills a rectangle and only a third or less of a rhombus at Bragg angles
below 20 deg: array index [n, k] is column n = i + j (x = n step cos tB) and point k down that
column, m = i - j = 2 k + (n mod 2), at depth (2 k + n mod 2) step sin tB below the top row.
With n = 2 q + p: i = q + p + k, j = q - k. Odd columns sit half a row lower than even ones;
march_grid_nm gives every point's (x, z) so that a shape and a phase can be sampled there.

Boundary: D0 = 1 (the incident plane wave in its own reference, exp(i k0.r)) where each s0
ray enters the rectangle (top row and left column), Dh = 0 where each sh ray enters (bottom
row and left column). Vacuum cells (shape 0) just carry the fields.

Update: the alpha term of the Dh equation is integrated exactly with the factor
exp(-i pi alpha sh / lambda) (Dh = Dh' exp(-i pi alpha sh / lambda)). The crystal terms use
the trapezoid rule along each characteristic, so the new (D0, Dh') at a point solve a 2 x 2
linear system (Cramer's rule) built from the two predecessor points on the previous column.
Second order in the step; in the weak-scattering limit the exit field is exactly the discrete
Fourier sum along sh, and vacuum propagation is exact at every rocking angle, however large
pi alpha step / lambda gets (it is close to pi at the edge of a BCDI rocking range).

Outside the rectangle is vacuum: the march steps from every edge point to the vacuum point
beyond it, so a crystal that touches the edge of the grid is treated as if the grid were padded
with vacuum (every crystal point has its full trapezoid weight).

Exit field. Ray i (an sh ray, s0 = i step) leaves the rectangle through its top row (at
column n = 2 i) or its right column; the march returns, for each ray, Dh' = the diffracted
amplitude continued through vacuum back to sh = 0: downstream of the crystal the diffracted
field on ray i is Dh(sh) = out[i] exp(-i pi alpha sh / lambda). Ray i crosses the exit plane
(normal to uh) at xi_i = -i step sin 2tB along (-sin tB, cos tB), geometry.py's detector-row
direction b1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import DyncdiError
from .materials import BraggCase, Susceptibility

# Default grid: points per coupling length lambda / (pi C |sqrt(chih chihbar)|) along a ray.
# Measured against the closed-form slab (tests/physics/test_dynamical.py): the largest
# reflectivity error over a rocking curve is ~1e-2 at 8 points, ~3e-3 at 16, ~1e-3 at 24 and
# falls as step^2.
POINTS_PER_EXTINCTION = 24.0
# Coarser than this the errors exceed a few 1e-2 in reflectivity: refused.
MIN_POINTS_PER_EXTINCTION = 6.0


@dataclass(frozen=True)
class MarchSetup:
    """Static settings of one 2D march (hashable, static under jit); lengths in nm, angles in rad.

    drop_chihbar removes the back-coupling Dh -> D0: single scattering with refraction and
    absorption of both beams by chi0 (first-order Born in an absorbing medium).
    checkpoint_block > 0 rematerialises the march in blocks of that many column pairs during
    reverse-mode differentiation (memory ~ (ncols / block + block) columns instead of ncols).
    """

    step_nm: float
    wavelength_nm: float
    bragg_angle_rad: float
    polarisation_factor: float = 1.0
    drop_chihbar: bool = False
    checkpoint_block: int = 0


def alpha_from_dtheta(dtheta_rad: np.ndarray | float, bragg_angle_rad: float) -> np.ndarray:
    """Deviation alpha = -2 sin(2 tB) dtheta (dimensionless); dtheta (rad) from the Bragg angle."""
    return -2.0 * np.sin(2.0 * bragg_angle_rad) * np.asarray(dtheta_rad)


def march_setup(
    case: BraggCase,
    step_nm: float | None = None,
    *,
    drop_chihbar: bool = False,
    checkpoint_block: int = 0,
    field: str = "step_nm",
) -> MarchSetup:
    """A MarchSetup for a reflection: default step from the extinction length, coarse refused."""
    ell = case.extinction_length_ray_nm
    if step_nm is None:
        step_nm = ell / POINTS_PER_EXTINCTION
    elif not step_nm > 0:
        raise DyncdiError(field, f"{step_nm}", "give a positive step in nm")
    elif step_nm > ell / MIN_POINTS_PER_EXTINCTION:
        raise DyncdiError(
            field,
            f"grid step {step_nm:.4g} nm is too coarse for the extinction length {ell:.4g} nm "
            "along the beam",
            f"use a step of at most {ell / MIN_POINTS_PER_EXTINCTION:.4g} nm "
            f"(default {ell / POINTS_PER_EXTINCTION:.4g} nm when left unset)",
        )
    return MarchSetup(
        step_nm=float(step_nm),
        wavelength_nm=case.wavelength_nm,
        bragg_angle_rad=case.bragg_angle_rad,
        polarisation_factor=case.polarisation_factor,
        drop_chihbar=drop_chihbar,
        checkpoint_block=int(checkpoint_block),
    )


def march_grid_nm(setup: MarchSetup, nx: int, nz: int) -> tuple[np.ndarray, np.ndarray]:
    """Positions (x, z) of the march points [n, k], each (nx, nz) (nm, top-left point at 0)."""
    n = np.arange(nx)[:, None]
    k = np.arange(nz)[None, :]
    x = n * setup.step_nm * np.cos(setup.bragg_angle_rad) + 0.0 * k
    z = -(2 * k + n % 2) * setup.step_nm * np.sin(setup.bragg_angle_rad)
    return x, z


def exit_ray_count(nx: int, nz: int) -> int:
    """Number of sh rays leaving an (nx, nz) march grid: the length of the exit field."""
    return (nx + 1) // 2 + nz


def exit_ray_positions_nm(setup: MarchSetup, nx: int, nz: int) -> np.ndarray:
    """Exit-plane coordinate xi_i of each ray along (-sin tB, cos tB), shape (nrays,) (nm)."""
    i = np.arange(exit_ray_count(nx, nz))
    return -i * setup.step_nm * np.sin(2.0 * setup.bragg_angle_rad)


def _cis(x: jax.Array) -> jax.Array:
    """exp(i x) in the complex dtype matching x, without implicit promotion."""
    return lax.complex(jnp.cos(x), jnp.sin(x))


def _shift_down(v: jax.Array, fill: float) -> jax.Array:
    return jnp.concatenate([jnp.full((1,), fill, v.dtype), v[:-1]])


def _shift_up(v: jax.Array) -> jax.Array:
    return jnp.concatenate([v[1:], jnp.zeros((1,), v.dtype)])


def _march(
    shape: jax.Array,
    phase: jax.Array | None,
    alpha: jax.Array,
    chi: Susceptibility,
    setup: MarchSetup,
    weight: jax.Array | None = None,
) -> jax.Array:
    # Either phase (real h.u) or weight (complex S exp(-i h.u), replacing S in chih and
    # conj(weight) replacing S in chihbar; chi0 keeps S) describes the coupling.
    weighted = weight is not None
    rdtype = shape.dtype
    cdtype = jnp.complex128 if rdtype == jnp.float64 else jnp.complex64
    nx, nz = shape.shape
    nx_even = nx + nx % 2
    pairs = nx_even // 2
    block = setup.checkpoint_block if setup.checkpoint_block > 0 else pairs
    nblocks = -(-pairs // block)
    pad = 2 * nblocks * block - nx
    # Vacuum columns on the right change nothing: fields are constant through vacuum.
    shape = jnp.pad(shape, ((0, pad), (0, 0)))
    coupling = jnp.pad(weight if weighted else phase, ((0, pad), (0, 0)))

    kappa = math.pi * setup.step_nm / setup.wavelength_nm  # phase per step per unit chi
    g = jnp.asarray(0.5j * kappa, cdtype)
    c = setup.polarisation_factor
    chi0 = jnp.asarray(chi.chi0, cdtype)
    chih = jnp.asarray(chi.chih, cdtype) * c
    chihbar = jnp.asarray(chi.chihbar, cdtype) * c
    beta = kappa * alpha.astype(rdtype)  # exact alpha phase per sh step
    ramp_k = _cis(-beta * jnp.arange(nz, dtype=rdtype))

    def point(s, ph, ramp, r0, rh):
        # trapezoid: (D0, Dh') - g f(D0, Dh') = r, solved by Cramer's rule
        s = s.astype(cdtype)
        x0 = chi0 * s
        if weighted:
            e = ph * ramp  # ph is the complex weight S exp(-i h.u) here
            ch = chih * e
        else:
            e = _cis(-ph) * ramp
            ch = chih * s * e
        a = 1.0 - g * x0
        if setup.drop_chihbar:
            d0 = r0 / a
            dh = (g * ch * d0 + rh) / a
            return d0, dh, x0 * d0, ch * d0 + x0 * dh
        cb = chihbar * jnp.conj(e) if weighted else chihbar * s * jnp.conj(e)
        det = a * a - g * g * cb * ch
        d0 = (a * r0 + g * cb * rh) / det
        dh = (g * ch * r0 + a * rh) / det
        return d0, dh, x0 * d0 + cb * dh, ch * d0 + x0 * dh

    def pair_step(carry, xs):
        d0o, dho, f0o, fho = carry
        s_pair, ph_pair, q = xs
        ramp = _cis(beta * q) * ramp_k  # exp(i beta j), j = q - k
        # even column 2q: D0 from (n-1, k-1), Dh from (n-1, k)
        r0 = _shift_down(d0o, 1.0) + g * _shift_down(f0o, 0.0)
        rh = dho + g * fho
        d0e, dhe, f0e, fhe = point(s_pair[0], ph_pair[0], ramp, r0, rh)
        # odd column 2q+1: D0 from (n-1, k), Dh from (n-1, k+1)
        r0 = d0e + g * f0e
        rh = _shift_up(dhe) + g * _shift_up(fhe)
        new = point(s_pair[1], ph_pair[1], ramp, r0, rh)
        # top of an even column: ray i = q leaves the grid; the half step to the vacuum
        # point beyond gives the last crystal point its full trapezoid weight
        return new, dhe[0] + g * fhe[0]

    def block_scan(carry, xs):
        return lax.scan(pair_step, carry, xs)

    if setup.checkpoint_block > 0:
        block_scan = jax.checkpoint(block_scan)

    xs = (
        shape.reshape(nblocks, block, 2, nz),
        coupling.reshape(nblocks, block, 2, nz),
        jnp.arange(nblocks * block, dtype=rdtype).reshape(nblocks, block),
    )
    ones = jnp.ones((nz,), cdtype)
    zeros = jnp.zeros((nz,), cdtype)
    carry, tops = lax.scan(block_scan, (ones, zeros, zeros, zeros), xs)
    rays = jnp.concatenate([tops.reshape(-1), carry[1] + g * carry[3]])
    return rays[: nx_even // 2 + nz]


@partial(jax.jit, static_argnames=("setup",))
def tt_exit_field(
    shape: jax.Array,
    phase: jax.Array,
    dtheta_rad: jax.Array | float,
    chi: Susceptibility,
    setup: MarchSetup,
) -> jax.Array:
    """Diffracted exit field Dh' per sh ray, shape (exit_ray_count(nx, nz),), complex.

    shape: (nx, nz) real in [0, 1] and phase: (nx, nz) real h.u (rad), both on the march grid
    (march_grid_nm); dtheta_rad: rocking offset from the kinematical Bragg angle (rad). The
    dtype follows shape (float32 -> complex64, float64 -> complex128). Differentiable in shape,
    phase, dtheta and chi; vmap over dtheta for a rocking scan, over a leading axis of shape
    and phase for the direction normal to the scattering plane.
    """
    shape = jnp.asarray(shape)
    if not jnp.issubdtype(shape.dtype, jnp.floating):
        shape = shape.astype(jnp.result_type(float))
    phase = jnp.asarray(phase).astype(shape.dtype)
    dtheta = jnp.asarray(dtheta_rad).astype(shape.dtype)
    alpha = -2.0 * math.sin(2.0 * setup.bragg_angle_rad) * dtheta
    return _march(shape, phase, alpha, chi, setup)


@partial(jax.jit, static_argnames=("setup",))
def tt_exit_field_weighted(
    shape: jax.Array,
    weight: jax.Array,
    dtheta_rad: jax.Array | float,
    chi: Susceptibility,
    setup: MarchSetup,
) -> jax.Array:
    """tt_exit_field with the coupling given as a complex weight, shape (nrays,), complex.

    weight: (nx, nz) complex, S exp(-i h.u) on the march grid: chih(r) = chih weight,
    chihbar(r) = chihbar conj(weight), chi0(r) = chi0 shape. With weight = shape exp(-i phase)
    it is tt_exit_field; a weight interpolated as a complex number between samples keeps the
    march invariant under 2 pi jumps of the phase, as the kinematical model is.
    """
    shape = jnp.asarray(shape)
    if not jnp.issubdtype(shape.dtype, jnp.floating):
        shape = shape.astype(jnp.result_type(float))
    cdtype = jnp.complex128 if shape.dtype == jnp.float64 else jnp.complex64
    weight = jnp.asarray(weight).astype(cdtype)
    dtheta = jnp.asarray(dtheta_rad).astype(shape.dtype)
    alpha = -2.0 * math.sin(2.0 * setup.bragg_angle_rad) * dtheta
    return _march(shape, None, alpha, chi, setup, weight=weight)


@partial(jax.jit, static_argnames=("setup",))
def rocking_exit_field(
    shape: jax.Array,
    phase: jax.Array,
    dtheta_rad: jax.Array,
    chi: Susceptibility,
    setup: MarchSetup,
) -> jax.Array:
    """tt_exit_field over rocking offsets dtheta_rad (n,) (rad): shape (n, nrays), complex."""
    return jax.vmap(lambda d: tt_exit_field(shape, phase, d, chi, setup))(jnp.asarray(dtheta_rad))


# ----------------------------------------------------------------------------------------------
# Sheared layout: the 3D model's batched march with a hand-written adjoint
#
# Array index [n, i] is column n = i + j and sh ray i (fixed s0 = i step): a parallelogram of
# the lattice with sides along uh (a row, one exit ray) and along z (a column), which is the
# conjugate grid's (a0, a1) frame, so a box of voxels fills it with no vacuum corners. Every
# ray enters through column 0 and leaves through the last column. Predecessors of [n, i] are
# [n-1, i-1] (D0, along u0) and [n-1, i] (Dh, along uh); D0 = 1 enters above row 0.
#
# The march carries the physical Dh = Dh' exp(-i beta j) (beta = kappa alpha) and the
# trapezoid "half-step" values t = (D + g f(D)) of each point, t0 = (1 + g x0) D0 + g cb Dh and
# th = g ch D0 + (1 + g x0) Dh. The trapezoid step then reads t[n, i] = K r with
# r = (t0[n-1, i-1], exp(-i beta) th[n-1, i]) and the 2 x 2 matrix
# K = [[1 + g x0, g cb], [g ch, 1 + g x0]] [[1 - g x0, -g cb], [-g ch, 1 - g x0]]^-1
#   = [[diag, up], [down, diag]] / (the determinant (1 - g x0)^2 - g^2 ch cb), whose entries
# depend on the crystal (S and h.u) and not on the rocking angle: the angle is one phase factor
# per step, so K is computed once per forward model and shared by every angle. It is the same
# discrete scheme as _march (identical in exact arithmetic); vacuum (K = 1) is exact.
#
# The map from K and exp(-i beta) to the exit field is linear in the fields, so its adjoint is
# the reverse march with the transposed K: the custom VJP stores the input state of every
# column (or, with block > 0, of every block-th column, recomputing each block on the way
# back) instead of letting autodiff keep every intermediate of every point update.


class ShearedCoefficients(NamedTuple):
    """Per-point update of the sheared march, each (nx, nrays, nbatch) complex (dimensionless)."""

    diag: jax.Array  # D0 -> D0 and Dh -> Dh
    up: jax.Array  # Dh -> D0 (chihbar)
    down: jax.Array  # D0 -> Dh (chih)


def sheared_coefficients(
    shape: jax.Array, weight: jax.Array, chi: Susceptibility, setup: MarchSetup
) -> ShearedCoefficients:
    """K of every march point from shape (real S) and weight (complex S exp(-i h.u)), same shape.

    chih couples through weight, chihbar through conj(weight), chi0 through shape (as in
    tt_exit_field_weighted); the dtype follows weight.
    """
    cdtype = weight.dtype
    kappa = math.pi * setup.step_nm / setup.wavelength_nm
    g = jnp.asarray(0.5j * kappa, cdtype)
    c = setup.polarisation_factor
    gx0 = g * jnp.asarray(chi.chi0, cdtype) * shape.astype(cdtype)
    gch = g * jnp.asarray(chi.chih, cdtype) * c * weight
    a = 1.0 - gx0
    if setup.drop_chihbar:
        diag = (1.0 + gx0) / a
        return ShearedCoefficients(diag, jnp.zeros_like(diag), 2.0 * gch / (a * a))
    gcb = g * jnp.asarray(chi.chihbar, cdtype) * c * jnp.conj(weight)
    p = gch * gcb
    inv = 1.0 / (a * a - p)
    return ShearedCoefficients(((1.0 - gx0 * gx0) + p) * inv, 2.0 * gcb * inv, 2.0 * gch * inv)


def _sheared_step(k, ph, carry):
    # state (nrays, nangles, nbatch): the D0 shift along the rays is a shift along the major
    # axis (a block copy) and the adjoint's sums over the angles keep the batch axis minor
    t0, th = carry
    r0 = jnp.concatenate([jnp.ones_like(t0[:1]), t0[:-1]], axis=0)
    rh = th * ph[:, None]
    diag, up, down = (c[:, None, :] for c in k)
    return diag * r0 + up * rh, down * r0 + diag * rh


def _sheared_init(k, ph):
    shape = (k.diag.shape[1], ph.shape[0], k.diag.shape[2])
    return jnp.ones(shape, ph.dtype), jnp.zeros(shape, ph.dtype)


def _sheared_scan(k, ph, carry):
    """March columns k from carry; returns the last state and each column's lost D0 value."""

    def step(c, kn):
        return _sheared_step(kn, ph, c), c[0][-1]

    return lax.scan(step, carry, k)


def _blocked(k: ShearedCoefficients, block: int) -> tuple[ShearedCoefficients, int]:
    """K padded in front with vacuum columns (state (1, 0) is left unchanged) to whole blocks."""
    nx = k.diag.shape[0]
    pad = -nx % block
    widths = ((pad, 0),) + ((0, 0),) * (k.diag.ndim - 1)
    padded = ShearedCoefficients(
        jnp.pad(k.diag, widths, constant_values=1), jnp.pad(k.up, widths), jnp.pad(k.down, widths)
    )
    return jax.tree.map(lambda a: a.reshape(-1, block, *a.shape[1:]), padded), pad


def _exit_field(th: jax.Array) -> jax.Array:
    """The march's th state (nrays, nangles, nbatch) as the exit field (nrays, nbatch, nangles)."""
    return jnp.swapaxes(th, 1, 2)


# CPU tiles of the sheared march (angles and batch slices march independently). Measured on a
# 2-core AMD EPYC (AVX-512), the reverse march per point: 1.1-1.5x faster on states of 8
# angles x 16 batch slices (the minor axis) than of 26-32 slices, 3-5x faster than of 15
# slices (a minor axis of odd length vectorises badly). Off CPU no tiling: it would serialise.
TILE_ANGLES = 8
TILE_BATCH = 16


def sheared_march(k: ShearedCoefficients, phase_step: jax.Array, block: int = 0) -> jax.Array:
    """Exit field th of every ray and angle, shape (nrays, nbatch, nangles), complex.

    k: ShearedCoefficients (nx, nrays, nbatch) (sheared_coefficients); phase_step:
    exp(-i beta) per rocking angle (nangles,), beta = pi step alpha / lambda. The diffracted
    amplitude of ray i downstream of the grid is Dh'(i) = out[i] exp(i beta (nx - 1 - i)) up to a
    constant phase (Dh' as in tt_exit_field). Differentiable (reverse mode) in k and
    phase_step: the gradient marches back, rebuilding each column's state from the next one
    (K is invertible; the D0 value each column loses through the last ray is kept), so it
    stores no march history. block > 0 also keeps every block-th state and restarts the
    rebuilding there, bounding its rounding error to block columns (memory + nx / block
    states). On CPU the march runs tile by tile (TILE_ANGLES x TILE_BATCH), the same result.
    """
    nrays, nbatch = k.diag.shape[1:]
    nangles = phase_step.shape[0]
    ta = min(TILE_ANGLES, nangles)
    tb = TILE_BATCH if nbatch >= TILE_BATCH // 2 else nbatch  # a few slices: not worth padding
    if jax.default_backend() != "cpu" or (nangles == ta and nbatch == tb):
        return _sheared_tile(k, phase_step, block)
    na, nb = -(-nangles // ta), -(-nbatch // tb)
    # padding: vacuum batch slices (K = 1: they stay at (1, 0)) and unit phase steps
    widths = ((0, 0), (0, 0), (0, nb * tb - nbatch))
    kt = ShearedCoefficients(
        jnp.pad(k.diag, widths, constant_values=1), jnp.pad(k.up, widths), jnp.pad(k.down, widths)
    )
    kt = jax.tree.map(lambda a: jnp.moveaxis(a.reshape(*a.shape[:2], nb, tb), 2, 0), kt)
    ph = jnp.pad(phase_step, (0, na * ta - nangles), constant_values=1).reshape(na, ta)

    def batch_tile(kb: ShearedCoefficients) -> jax.Array:
        return lax.map(lambda p: _sheared_tile(kb, p, block), ph)  # (na, nrays, tb, ta)

    out = lax.map(batch_tile, kt)  # (nb, na, nrays, tb, ta)
    out = jnp.transpose(out, (2, 0, 3, 1, 4)).reshape(nrays, nb * tb, na * ta)
    return out[:, :nbatch, :nangles]


@partial(jax.custom_vjp, nondiff_argnums=(2,))
def _sheared_tile(k: ShearedCoefficients, phase_step: jax.Array, block: int = 0) -> jax.Array:
    """sheared_march of one tile, untiled: shape (nrays, nbatch, nangles), complex."""
    ph = phase_step
    carry, _ = lax.scan(lambda c, kn: (_sheared_step(kn, ph, c), None), _sheared_init(k, ph), k)
    return _exit_field(carry[1])


def _sheared_fwd(k, phase_step, block):
    ph = phase_step
    init = _sheared_init(k, phase_step)
    if block <= 0:
        carry, lost = _sheared_scan(k, ph, init)
        return _exit_field(carry[1]), (k, phase_step, lost, carry)

    def one_block(c, kblock):
        c, lost = _sheared_scan(kblock, ph, c)
        return c, (lost, c)

    kb, _ = _blocked(k, block)
    carry, (lost, ends) = lax.scan(one_block, init, kb)
    return _exit_field(carry[1]), (k, phase_step, lost, ends)


def _sheared_back(k, ph, c, lost):
    """Reverse march over columns k from their last state: ((lam, acc, state), ct_k).

    acc (nrays, nangles, nbatch) accumulates ch rh of every column; ct_phase is its sum over
    rays and batch divided by the phase step (one reduction at the end, not one per column).
    """
    det = k.diag * k.diag - k.up * k.down
    kinv = ShearedCoefficients(k.diag / det, -k.up / det, -k.down / det)
    ph_a = ph[:, None]
    inv_ph = 1.0 / ph_a  # once: a complex divide per point costs several multiplies

    def angle_sum(a, b):  # one product per reduction: XLA's CPU loop for a reduction of a
        return jnp.sum(a * b, axis=1)  # sum of two products came out scalar (no SIMD)

    def back(c, xs):
        (l0, lh), acc, (t0, th) = c
        kn, ki, lost_n = xs
        diag, up, down = (a[:, None, :] for a in kn)
        idiag, iup, idown = (a[:, None, :] for a in ki)
        r0 = idiag * t0 + iup * th  # the column's inputs, from its outputs
        rh = idown * t0 + idiag * th
        c0 = diag * l0 + down * lh  # the adjoint of those inputs
        ch = up * l0 + diag * lh
        ct = ShearedCoefficients(
            angle_sum(l0, r0) + angle_sum(lh, rh), angle_sum(l0, rh), angle_sum(lh, r0)
        )
        state = (jnp.concatenate([r0[1:], lost_n[None]], axis=0), rh * inv_ph)
        l0 = jnp.concatenate([c0[1:], jnp.zeros_like(c0[:1])], axis=0)
        return ((l0, ch * ph_a), acc + ch * rh, state), ct

    return lax.scan(back, c, (k, kinv, lost), reverse=True)


def _sheared_bwd(block, res, ct_out):
    k, phase_step, lost, saved = res
    ph = phase_step
    ct_out = jnp.swapaxes(ct_out, 1, 2)
    lam = (jnp.zeros_like(ct_out), ct_out)
    acc = jnp.zeros_like(ct_out)
    if block <= 0:
        (_, acc, _), ct_k = _sheared_back(k, ph, (lam, acc, saved), lost)
        return ct_k, jnp.sum(acc, axis=(0, 2)) / ph
    kb, pad = _blocked(k, block)

    def one_block(c, xs):
        kblock, lost_b, end = xs
        (lam, acc, _), ct = _sheared_back(kblock, ph, (*c, end), lost_b)
        return (lam, acc), ct

    (_, acc), ct_k = lax.scan(one_block, (lam, acc), (kb, lost, saved), reverse=True)
    ct_k = jax.tree.map(lambda a: a.reshape(-1, *a.shape[2:])[pad:], ct_k)
    return ct_k, jnp.sum(acc, axis=(0, 2)) / ph


_sheared_tile.defvjp(_sheared_fwd, _sheared_bwd)


# ----------------------------------------------------------------------------------------------
# Finite rectangular crystal (thickness t, width w) and its reflectivity


def _overlap(lo: np.ndarray, hi: np.ndarray, a: float, b: float) -> np.ndarray:
    return np.clip(np.minimum(hi, b) - np.maximum(lo, a), 0.0, None) / (hi - lo)


def rectangle_on_grid(
    setup: MarchSetup, thickness_nm: float, width_nm: float, margin_cells: int = 2
) -> tuple[np.ndarray, tuple[float, float]]:
    """Shape (nx, nz) of a t x w rectangle on a march grid in vacuum, and its (x0, x1) (nm).

    Each point takes the fraction of its ray segment (length step) inside the crystal, so the
    thickness and width seen by every ray are exact for any t and w.
    """
    hx = setup.step_nm * math.cos(setup.bragg_angle_rad)
    hz = setup.step_nm * math.sin(setup.bragg_angle_rad)
    x0 = (margin_cells - 0.5) * hx
    z_top = (margin_cells - 0.5) * hz
    nx = math.ceil((x0 + width_nm) / hx) + margin_cells
    nx += nx % 2
    nz = math.ceil(((z_top + thickness_nm) / hz + margin_cells + 1) / 2)
    x, z = march_grid_nm(setup, nx, nz)
    depth = -z
    fx = _overlap(x - 0.5 * hx, x + 0.5 * hx, x0, x0 + width_nm)
    fz = _overlap(depth - 0.5 * hz, depth + 0.5 * hz, z_top, z_top + thickness_nm)
    return fx * fz, (x0, x0 + width_nm)


def finite_crystal_reflectivity(
    case: BraggCase,
    thickness_nm: float,
    width_nm: float,
    dtheta_rad: np.ndarray,
    *,
    step_nm: float | None = None,
    drop_chihbar: bool = False,
    max_cells: float = 2e8,
) -> np.ndarray:
    """Reflectivity of a perfect t x w crystal at rocking offsets dtheta_rad (n,): shape (n,).

    Diffracted power leaving the crystal (every exit ray, side faces included) over the incident
    power on its top face (width w). A wide crystal reproduces the slab reflectivity.
    """
    if not thickness_nm > 0:
        raise DyncdiError("thickness_nm", f"{thickness_nm}", "give a positive thickness")
    if not width_nm > 0:
        raise DyncdiError("width_nm", f"{width_nm}", "give a positive width")
    setup = march_setup(case, step_nm, drop_chihbar=drop_chihbar)
    hx = setup.step_nm * math.cos(setup.bragg_angle_rad)
    hz = setup.step_nm * math.sin(setup.bragg_angle_rad)
    dtheta = np.atleast_1d(np.asarray(dtheta_rad, dtype=float))
    cells = (width_nm / hx) * (thickness_nm / (2 * hz)) * dtheta.size
    if cells > max_cells:
        raise DyncdiError(
            "width_nm",
            f"the march needs {cells:.3g} point updates (limit {max_cells:.3g})",
            "reduce the width, the thickness or the number of rocking angles, or use a larger step",
        )
    shape, _ = rectangle_on_grid(setup, thickness_nm, width_nm)
    phase = np.zeros_like(shape)
    out = _reflected_power(
        jnp.asarray(shape), jnp.asarray(phase), jnp.asarray(dtheta), case.chi, setup
    )
    ray_width = setup.step_nm * math.sin(2.0 * setup.bragg_angle_rad)
    return np.asarray(out) * ray_width / (width_nm * math.sin(setup.bragg_angle_rad))


@partial(jax.jit, static_argnames=("setup",))
def _reflected_power(shape, phase, dtheta, chi, setup):
    field = rocking_exit_field(shape, phase, dtheta, chi, setup)
    return jnp.sum(jnp.abs(field) ** 2, axis=-1)


# ----------------------------------------------------------------------------------------------
# Closed-form references (numpy, complex128)


def _phi1(x: np.ndarray) -> np.ndarray:
    """(1 - exp(-x)) / x, finite at x = 0."""
    small = np.abs(x) < 1e-8
    safe = np.where(small, 1.0, x)
    return np.where(small, 1.0 - 0.5 * x, -np.expm1(-safe) / safe)


def slab_reflectivity(
    case: BraggCase,
    dtheta_rad: np.ndarray | float,
    thickness_nm: float,
    *,
    drop_chihbar: bool = False,
) -> np.ndarray:
    """Closed-form reflectivity of a perfect symmetric-Bragg slab of thickness t (nm), dtheta shape.

    Riccati solution of physics.md with X(t) = 0; drop_chihbar gives its R = 0 limit (single
    scattering with refraction and absorption by chi0).
    """
    theta = case.bragg_angle_rad
    c = case.polarisation_factor
    g0, gh = math.sin(theta), -math.sin(theta)
    chi0, chih, chihbar = (complex(v) for v in (case.chi.chi0, case.chi.chih, case.chi.chihbar))
    alpha = alpha_from_dtheta(dtheta_rad, theta)
    k = math.pi / case.wavelength_nm
    p = c * chih / gh
    q = (chi0 - alpha) / gh - chi0 / g0
    if drop_chihbar:
        x0 = -p * (1j * k * thickness_nm) * _phi1(1j * k * q * thickness_nm)
        return np.abs(gh / g0) * np.abs(x0) ** 2
    r = -c * chihbar / g0
    s = np.sqrt(q * q - 4.0 * p * r + 0j)
    s = np.where(s.imag > 0, -s, s)  # the branch with |E| <= 1: no overflow for thick slabs
    xp = (-q + s) / (2.0 * r)
    xm = (-q - s) / (2.0 * r)
    e = np.exp(-1j * k * s * thickness_nm)
    x0 = xp * xm * (1.0 - e) / (xm - xp * e)
    return np.abs(gh / g0) * np.abs(x0) ** 2


def darwin_prins_reflectivity(case: BraggCase, dtheta_rad: np.ndarray | float) -> np.ndarray:
    """Thick-crystal (Darwin-Prins) reflectivity of the symmetric Bragg case, shape of dtheta."""
    theta = case.bragg_angle_rad
    c = case.polarisation_factor
    chi0, chih, chihbar = (complex(v) for v in (case.chi.chi0, case.chi.chih, case.chi.chihbar))
    eta = -(math.sin(2.0 * theta) * np.asarray(dtheta_rad) + chi0) / (c * np.sqrt(chih * chihbar))
    root = np.sqrt(eta * eta - 1.0 + 0j)
    small = np.minimum(np.abs(eta - root), np.abs(eta + root))
    return abs(chih / chihbar) * small**2
