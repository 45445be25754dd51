"""The reference 2D march of two-beam dynamical diffraction in Bragg geometry (Takagi-Taupin).

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

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

from ..errors import ParameterError
from .materials import BraggCase, Susceptibility

# Default grid: points per coupling length lambda / (pi C |sqrt(chih chihbar)|) along a ray.
# Measured against the closed-form slab (tests/physics/test_tt_march.py): the largest
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
    parameter: str = "step_nm",
) -> MarchSetup:
    """A MarchSetup for a reflection: default step from the extinction length, coarse refused."""
    ell = case.extinction_length_ray_nm
    if step_nm is None:
        step_nm = ell / POINTS_PER_EXTINCTION
    elif not step_nm > 0:
        raise ParameterError(parameter, f"{step_nm}", "give a positive step in nm")
    elif step_nm > ell / MIN_POINTS_PER_EXTINCTION:
        raise ParameterError(
            parameter,
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


def _cis(x: jax.Array) -> jax.Array:
    """exp(i x) in the complex dtype matching x, without implicit promotion."""
    return lax.complex(jnp.cos(x), jnp.sin(x))


def _shift_down(v: jax.Array, fill: float) -> jax.Array:
    return jnp.concatenate([jnp.full((1,), fill, v.dtype), v[:-1]])


def _shift_up(v: jax.Array) -> jax.Array:
    return jnp.concatenate([v[1:], jnp.zeros((1,), v.dtype)])


@dataclass(frozen=True)
class _Coupling:
    """The constant factors of one march's point update (complex, of the march's dtype)."""

    g: jax.Array  # i kappa / 2: the trapezoid's half step per unit chi
    chi0: jax.Array
    chih: jax.Array  # C chih
    chihbar: jax.Array  # C chihbar
    drop_chihbar: bool


def _point(cp: _Coupling, s, ph, ramp, r0, rh, weighted: bool):
    """Trapezoid update of one column: (D0, Dh') - g f(D0, Dh') = r, by Cramer's rule.

    ph is the phase h.u, or with weighted the complex weight S exp(-i h.u). Returns the new
    (D0, Dh') and their derivatives f0, fh (per unit g).
    """
    s = s.astype(cp.chi0.dtype)
    x0 = cp.chi0 * s
    if weighted:
        e = ph * ramp
        ch = cp.chih * e
    else:
        e = _cis(-ph) * ramp
        ch = cp.chih * s * e
    g = cp.g
    a = 1.0 - g * x0
    if cp.drop_chihbar:
        d0 = r0 / a
        dh = (g * ch * d0 + rh) / a
        return d0, dh, x0 * d0, ch * d0 + x0 * dh
    cb = cp.chihbar * jnp.conj(e) if weighted else cp.chihbar * s * jnp.conj(e)
    det = a * a - g * g * cb * ch
    d0 = (a * r0 + g * cb * rh) / det
    dh = (g * ch * r0 + a * rh) / det
    return d0, dh, x0 * d0 + cb * dh, ch * d0 + x0 * dh


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
    c = setup.polarisation_factor
    cp = _Coupling(
        g=jnp.asarray(0.5j * kappa, cdtype),
        chi0=jnp.asarray(chi.chi0, cdtype),
        chih=jnp.asarray(chi.chih, cdtype) * c,
        chihbar=jnp.asarray(chi.chihbar, cdtype) * c,
        drop_chihbar=setup.drop_chihbar,
    )
    g = cp.g
    beta = kappa * alpha.astype(rdtype)  # exact alpha phase per sh step
    ramp_k = _cis(-beta * jnp.arange(nz, dtype=rdtype))

    def pair_step(carry, xs):
        d0o, dho, f0o, fho = carry
        s_pair, ph_pair, q = xs
        ramp = _cis(beta * q) * ramp_k  # exp(i beta j), j = q - k
        # even column 2q: D0 from (n-1, k-1), Dh from (n-1, k)
        r0 = _shift_down(d0o, 1.0) + g * _shift_down(f0o, 0.0)
        rh = dho + g * fho
        d0e, dhe, f0e, fhe = _point(cp, s_pair[0], ph_pair[0], ramp, r0, rh, weighted)
        # odd column 2q+1: D0 from (n-1, k), Dh from (n-1, k+1)
        r0 = d0e + g * f0e
        rh = _shift_up(dhe) + g * _shift_up(fhe)
        new = _point(cp, s_pair[1], ph_pair[1], ramp, r0, rh, weighted)
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
