"""The sheared batched march of the 3D dynamical model, with a hand-written adjoint.

Array index [n, i] is column n = i + j and sh ray i (fixed s0 = i step): a parallelogram of
the lattice with sides along uh (a row, one exit ray) and along z (a column), which is the
conjugate grid's (a0, a1) frame, so a box of voxels fills it with no vacuum corners. Every
ray enters through column 0 and leaves through the last column. Predecessors of [n, i] are
[n-1, i-1] (D0, along u0) and [n-1, i] (Dh, along uh); D0 = 1 enters above row 0.

The march carries the physical Dh = Dh' exp(-i beta j) (beta = kappa alpha) and the
trapezoid "half-step" values t = (D + g f(D)) of each point, t0 = (1 + g x0) D0 + g cb Dh and
th = g ch D0 + (1 + g x0) Dh. The trapezoid step then reads t[n, i] = K r with
r = (t0[n-1, i-1], exp(-i beta) th[n-1, i]) and the 2 x 2 matrix
K = [[1 + g x0, g cb], [g ch, 1 + g x0]] [[1 - g x0, -g cb], [-g ch, 1 - g x0]]^-1
  = [[diag, up], [down, diag]] / (the determinant (1 - g x0)^2 - g^2 ch cb), whose entries
depend on the crystal (S and h.u) and not on the rocking angle: the angle is one phase factor
per step, so K is computed once per forward model and shared by every angle. It is the same
discrete scheme as tt_march's reference march (identical in exact arithmetic); vacuum (K = 1)
is exact.

The map from K and exp(-i beta) to the exit field is linear in the fields, so its adjoint is
the reverse march with the transposed K: the custom VJP stores the input state of every
column (or, with block > 0, of every block-th column, recomputing each block on the way
back) instead of letting autodiff keep every intermediate of every point update.
"""

from __future__ import annotations

import math
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

from .materials import Susceptibility
from .tt_march import MarchSetup


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
