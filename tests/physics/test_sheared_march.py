"""The sheared batched march of the 3D model and its hand-written adjoint, against the
reference 2D march, autodiff and finite differences."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from dyncdi_hpc.physics import sheared_march, tt_march
from dyncdi_hpc.physics.materials import bragg_case

AU111 = bragg_case("Au", (1, 1, 1), 9.0)


def _sheared_problem():
    case = AU111
    setup = tt_march.march_setup(case, case.extinction_length_ray_nm / 6)
    rng = np.random.default_rng(4)
    nx, nrays = 13, 9
    shape = np.zeros((nx, nrays))
    shape[2:11, 1:8] = rng.uniform(0.3, 1.0, (9, 7))
    weight = shape * np.exp(-1j * rng.uniform(-2, 2, shape.shape))
    dth = case.refraction_shift_rad + np.array([-0.3, 0.1, 0.6]) * case.darwin_width_rad
    kappa = math.pi * setup.step_nm / setup.wavelength_nm
    beta = kappa * tt_march.alpha_from_dtheta(dth, setup.bragg_angle_rad)
    return case, setup, shape, weight, dth, beta


def test_sheared_march_is_the_rectangle_march() -> None:
    """The same crystal on the sheared layout and embedded in the rectangle layout: same exit
    field on every ray, up to one constant phase per angle (the origin of j)."""
    case, setup, shape, weight, dth, beta = _sheared_problem()
    nx, nrays = shape.shape
    off = (nx - 1 + 1) // 2  # rays of the rectangle above the sheared block's first ray
    rect_s = np.zeros((nx, nrays + off))
    rect_w = np.zeros((nx, nrays + off), complex)
    for n in range(nx):
        k = np.arange(nrays) + off - (n // 2 + n % 2)
        rect_s[n, k], rect_w[n, k] = shape[n], weight[n]
    with jax.enable_x64(True):
        ref = np.stack(
            [
                np.asarray(
                    tt_march.tt_exit_field_weighted(
                        jnp.asarray(rect_s), jnp.asarray(rect_w), d, case.chi, setup
                    )
                )
                for d in dth
            ]
        )[:, off : off + nrays]
        k = sheared_march.sheared_coefficients(
            jnp.asarray(shape)[..., None], jnp.asarray(weight)[..., None], case.chi, setup
        )
        out = np.asarray(
            sheared_march.sheared_march(k, jnp.exp(-1j * jnp.asarray(beta, jnp.complex128)))
        )[:, 0, :].T
    i = np.arange(nrays)
    dh = out * np.exp(1j * beta[:, None] * (nx - 1 - i[None, :]))
    phase = dh[:, 1:2] / ref[:, 1:2]
    np.testing.assert_allclose(np.abs(phase), 1.0, atol=1e-12)
    np.testing.assert_allclose(dh, ref * phase, rtol=0, atol=1e-12 * np.abs(ref).max())


def _plain_sheared(k: sheared_march.ShearedCoefficients, ph: jax.Array) -> jax.Array:
    """The sheared march written out plainly, differentiated by autodiff (the reference)."""

    def step(carry, kn):
        t0, th = carry
        diag, up, down = (c[..., None] for c in kn)
        r0 = jnp.concatenate([jnp.ones_like(t0[:1]), t0[:-1]], axis=0)
        rh = th * ph
        return (diag * r0 + up * rh, down * r0 + diag * rh), None

    shape = (*k.diag.shape[1:], ph.shape[0])
    init = (jnp.ones(shape, ph.dtype), jnp.zeros(shape, ph.dtype))
    return lax.scan(step, init, k)[0][1]


@pytest.mark.slow
def test_sheared_adjoint_matches_autodiff_and_finite_differences() -> None:
    """The hand-written reverse march (rebuilding states, with and without blocks) gives
    autodiff's gradient in k and in the angle phase; the chain to S, h.u and dtheta matches
    central differences; float32 stays close to float64."""
    case, setup, shape, weight, dth, _ = _sheared_problem()
    kappa = math.pi * setup.step_nm / setup.wavelength_nm
    per_rad = kappa * float(tt_march.alpha_from_dtheta(1.0, setup.bragg_angle_rad))
    slices = np.stack([shape, 0.7 * shape[::-1]], axis=-1)
    phases = np.stack([np.angle(weight), -np.angle(weight)], axis=-1)

    def loss(s, p, d, march):
        k = sheared_march.sheared_coefficients(
            s, lax.complex(s * jnp.cos(p), -s * jnp.sin(p)), case.chi, setup
        )
        beta = per_rad * d
        out = march(k, lax.complex(jnp.cos(beta), -jnp.sin(beta)))
        return jnp.sum(jnp.log1p(jnp.abs(jnp.fft.fft(out, axis=0)) ** 2))

    marches = {
        "plain": _plain_sheared,
        "adjoint": lambda k, ph: sheared_march.sheared_march(k, ph, 0),
        "blocks": lambda k, ph: sheared_march.sheared_march(k, ph, 4),
    }
    with jax.enable_x64(True):
        args = (jnp.asarray(slices), jnp.asarray(phases), jnp.asarray(dth))
        grads = {
            name: jax.grad(lambda s, p, d, m=m: loss(s, p, d, m), argnums=(0, 1, 2))(*args)
            for name, m in marches.items()
        }
        for name in ("adjoint", "blocks"):
            for a, b in zip(grads[name], grads["plain"], strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
        f = jax.jit(lambda s, p, d: loss(s, p, d, marches["adjoint"]))
        rng = np.random.default_rng(5)
        eps = 1e-6
        for which in range(3):
            v = jnp.asarray(rng.normal(size=args[which].shape))
            if which == 2:
                v = v * 1e-5  # rocking offsets are ~1e-4 rad
            plus = [*args]
            minus = [*args]
            plus[which] = plus[which] + eps * v
            minus[which] = minus[which] - eps * v
            fd = (f(*plus) - f(*minus)) / (2 * eps)
            ad = jnp.vdot(grads["adjoint"][which], v)
            assert abs(float(ad - fd)) < 1e-4 * abs(float(fd)), (which, float(ad), float(fd))
    args32 = tuple(jnp.asarray(a, jnp.float32) for a in (slices, phases, dth))
    g32 = jax.grad(lambda s, p, d: loss(s, p, d, marches["adjoint"]), argnums=(0, 1))(*args32)
    for a, b in zip(g32, grads["plain"][:2], strict=True):
        assert a.dtype == jnp.float32
        np.testing.assert_allclose(
            np.asarray(a), np.asarray(b), rtol=0, atol=1e-4 * np.abs(b).max()
        )


@pytest.mark.slow
def test_tiled_sheared_march_is_the_untiled_march() -> None:
    """On CPU sheared_march runs in tiles of angles and batch slices, padded at the edges (here
    11 angles and 19 slices: two angle tiles, two batch tiles, both padded); exit field and
    gradient in k and in the phase step are those of the one-tile march."""
    case, setup, shape, weight, _, _ = _sheared_problem()
    kappa = math.pi * setup.step_nm / setup.wavelength_nm
    per_rad = kappa * float(tt_march.alpha_from_dtheta(1.0, setup.bragg_angle_rad))
    rng = np.random.default_rng(6)
    nbatch, nangles = 19, 11
    assert nangles > sheared_march.TILE_ANGLES and nbatch > sheared_march.TILE_BATCH
    scale = rng.uniform(0.3, 1.0, nbatch)
    s = shape[..., None] * scale
    w = weight[..., None] * np.exp(-1j * rng.uniform(-2, 2, nbatch)) * scale
    d = case.refraction_shift_rad + np.linspace(-1, 1, nangles) * case.darwin_width_rad

    def loss(k, ph, march):
        return jnp.sum(jnp.log1p(jnp.abs(jnp.fft.fft(march(k, ph), axis=0)) ** 2))

    with jax.enable_x64(True):
        k = sheared_march.sheared_coefficients(jnp.asarray(s), jnp.asarray(w), case.chi, setup)
        beta = per_rad * jnp.asarray(d)
        ph = lax.complex(jnp.cos(beta), -jnp.sin(beta))
        for block in (0, 4):
            tiled = sheared_march.sheared_march(k, ph, block)
            plain = sheared_march._sheared_tile(k, ph, block)
            assert tiled.shape == (shape.shape[1], nbatch, nangles)
            np.testing.assert_allclose(np.asarray(tiled), np.asarray(plain), rtol=1e-12, atol=0)
            ga = jax.grad(loss, argnums=(0, 1))(
                k, ph, lambda k, p, b=block: sheared_march.sheared_march(k, p, b)
            )
            gb = jax.grad(loss, argnums=(0, 1))(
                k, ph, lambda k, p, b=block: sheared_march._sheared_tile(k, p, b)
            )
            for a, b in zip(jax.tree.leaves(ga), jax.tree.leaves(gb), strict=True):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)
