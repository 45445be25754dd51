"""The fused Pallas march (interpret mode on CPU) against sheared_march: exit field, adjoint,
finite differences, vacuum, and its option in the dynamical model."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export, lax

from dyncdi_hpc.errors import ParameterError
from dyncdi_hpc.physics import dynamical as d3
from dyncdi_hpc.physics import march_pallas, sheared_march, tt_march
from dyncdi_hpc.physics.geometry import make_geometry
from dyncdi_hpc.physics.materials import bragg_case
from dyncdi_hpc.physics.objects import CrystalParams

AU111 = bragg_case("Au", (1, 1, 1), 9.0)
NX, NRAYS, NANGLES, NBATCH = 13, 9, 5, 3  # no power of two, no whole tile: all padded


def _problem(real) -> tuple[sheared_march.ShearedCoefficients, jax.Array]:
    """K of a random crystal (NX, NRAYS, NBATCH) and phase steps (NANGLES,), of dtype real."""
    case = AU111
    setup = tt_march.march_setup(case, case.extinction_length_ray_nm / 6)
    rng = np.random.default_rng(4)
    shape = np.zeros((NX, NRAYS, NBATCH))
    shape[2:11, 1:8] = rng.uniform(0.3, 1.0, (9, 7, NBATCH))
    weight = shape * np.exp(-1j * rng.uniform(-2, 2, shape.shape))
    dth = case.refraction_shift_rad + np.linspace(-0.6, 0.8, NANGLES) * case.darwin_width_rad
    kappa = math.pi * setup.step_nm / setup.wavelength_nm
    beta = jnp.asarray(kappa * tt_march.alpha_from_dtheta(dth, setup.bragg_angle_rad), real)
    complex_ = jnp.complex128 if real == jnp.float64 else jnp.complex64
    k = sheared_march.sheared_coefficients(
        jnp.asarray(shape, real), jnp.asarray(weight, complex_), case.chi, setup
    )
    return k, lax.complex(jnp.cos(beta), -jnp.sin(beta))


def _rel(a, b) -> float:
    a, b = np.asarray(a), np.asarray(b)
    return float(np.abs(a - b).max() / np.abs(b).max())


def _loss(march, k, ph) -> jax.Array:
    w = jnp.linspace(0.5, 1.5, NRAYS * NBATCH * NANGLES).reshape(NRAYS, NBATCH, NANGLES)
    return jnp.sum(jnp.abs(march(k, ph)) ** 2 * w.astype(ph.real.dtype))


def test_layout_pads_every_axis() -> None:
    lay = march_pallas._layout(NX, NRAYS, NBATCH, NANGLES)
    assert lay.rays == 16 and lay.rays > NRAYS
    assert NANGLES % lay.ta and NBATCH % lay.tb


@pytest.mark.parametrize("real, tol", [(jnp.float32, 1e-5), (jnp.float64, 1e-12)])
def test_forward_is_the_sheared_march(real, tol) -> None:
    with jax.enable_x64(real == jnp.float64):
        k, ph = _problem(real)
        fused = march_pallas.pallas_march(k, ph)
        ref = sheared_march.sheared_march(k, ph)
        assert fused.shape == (NRAYS, NBATCH, NANGLES) and fused.dtype == ref.dtype
        err = _rel(fused, ref)
        print(f"forward {np.dtype(real).name}: max rel error {err:.2e}")
        assert err < tol


def test_gradient_is_the_sheared_adjoint() -> None:
    k, ph = _problem(jnp.float32)
    g = jax.grad(lambda k, p: _loss(march_pallas.pallas_march, k, p), argnums=(0, 1))(k, ph)
    ref = jax.grad(lambda k, p: _loss(sheared_march.sheared_march, k, p), argnums=(0, 1))(k, ph)
    errs = [_rel(a, b) for a, b in zip(jax.tree.leaves(g), jax.tree.leaves(ref), strict=True)]
    print("gradient complex64 (diag, up, down, phase): max rel errors", errs)
    assert all(a.dtype == jnp.complex64 for a in jax.tree.leaves(g))
    assert max(errs) < 1e-5


def test_gradient_matches_central_differences() -> None:
    with jax.enable_x64(True):
        k, ph = _problem(jnp.float64)
        f = jax.jit(lambda k, p: _loss(march_pallas.pallas_march, k, p))
        gk, gp = jax.grad(f, argnums=(0, 1))(k, ph)
        rng = np.random.default_rng(7)
        eps = 1e-6
        for _ in range(2):
            vk = jax.tree.map(
                lambda a: jnp.asarray(rng.normal(size=a.shape) + 1j * rng.normal(size=a.shape)), k
            )
            vp = jnp.asarray(rng.normal(size=ph.shape) + 1j * rng.normal(size=ph.shape))
            plus = f(jax.tree.map(lambda a, v: a + eps * v, k, vk), ph + eps * vp)
            minus = f(jax.tree.map(lambda a, v: a - eps * v, k, vk), ph - eps * vp)
            fd = float(plus - minus) / (2 * eps)
            # the gradient of a real loss in a complex z is dL/dRe z - i dL/dIm z
            pairs = [*zip(jax.tree.leaves(gk), jax.tree.leaves(vk), strict=True), (gp, vp)]
            ad = sum(float(jnp.sum(g * v).real) for g, v in pairs)
            print(f"finite differences: ad {ad:.10e}, fd {fd:.10e}")
            assert abs(ad - fd) < 1e-6 * abs(fd)


@pytest.mark.parametrize("real", [jnp.float32, jnp.float64])
def test_kernels_lower_to_triton(real) -> None:
    """Both kernels pass the Pallas Triton lowering (power-of-two loads, supported primitives,
    the barrier), lowered for CUDA on this machine: no GPU runs them here."""
    with jax.enable_x64(real == jnp.float64):
        k, ph = _problem(real)

        def loss(k, p):
            return jnp.sum(jnp.abs(march_pallas.pallas_march(k, p, interpret=False)) ** 2)

        triton = export.DisabledSafetyCheck.custom_call("__gpu$xla.gpu.triton")
        lowered = export.export(
            jax.jit(jax.grad(loss, argnums=(0, 1))), platforms=["cuda"], disabled_checks=[triton]
        )(k, ph)
        assert lowered.mlir_module().count("xla.gpu.triton") == 2  # forward and backward


def test_vacuum_leaves_the_state_unchanged() -> None:
    ones = jnp.ones((NX, NRAYS, NBATCH), jnp.complex64)
    k = sheared_march.ShearedCoefficients(ones, 0 * ones, 0 * ones)
    beta = jnp.linspace(0.1, 2.0, NANGLES, dtype=jnp.float32)
    ph = lax.complex(jnp.cos(beta), -jnp.sin(beta))
    out = np.asarray(march_pallas.pallas_march(k, ph))
    assert out.shape == (NRAYS, NBATCH, NANGLES)
    assert np.all(out == 0)


def _tiny() -> tuple:
    geometry = make_geometry(
        energy_kev=9.0,
        material="Au",
        hkl=(1, 1, 1),
        shape=(8, 8, 4),
        rocking_step_rad=3.5e-4,
        pixel_size_m=55e-6,
        detector_distance_m=1.0,
    )
    x, y, z = np.indices(geometry.shape).astype(float) - np.array([4, 4, 2])[:, None, None, None]
    r = np.sqrt((x / 2.0) ** 2 + (y / 1.6) ** 2 + ((z + 0.3 * x) / 0.7) ** 2)
    logits = 4.0 * (1 - r)
    phase = 0.8 * np.sin(0.35 * x + 0.2 * z)
    return geometry, CrystalParams(jnp.asarray(logits), jnp.asarray(phase))


def test_dynamical_option_takes_the_fused_march() -> None:
    with jax.enable_x64(True):
        geometry, params = _tiny()
        xla = d3.DynamicalOptions(points_per_extinction=8.0, march_kernel="xla")
        fused = d3.DynamicalOptions(points_per_extinction=8.0, march_kernel="pallas")
        assert d3.march_plan(geometry, fused).march_kernel == "pallas"
        a = d3.forward(params, geometry, fused)
        b = d3.forward(params, geometry, xla)
        err = _rel(a, b)
        print(f"dynamical.forward pallas vs xla: max rel error {err:.2e}")
        assert err < 1e-12

        def loss(p, o):
            return jnp.sum(jnp.log1p(d3.forward(p, geometry, o)))

        ga, gb = (jax.grad(loss)(params, o) for o in (fused, xla))
        errs = [_rel(x, y) for x, y in zip(ga, gb, strict=True)]
        print(f"dynamical gradient pallas vs xla (logits, phase): max rel errors {errs}")
        assert max(errs) < 1e-10
        # the measured path (dynamical_measured.py) takes the option too
        measured = {
            kernel: d3.DynamicalOptions(
                points_per_extinction=8.0, general_path=True, march_kernel=kernel
            )
            for kernel in ("pallas", "xla")
        }
        assert d3.march_plan(geometry, measured["pallas"]).march_kernel == "pallas"
        a, b = (d3.forward(params, geometry, o) for o in measured.values())
        assert _rel(a, b) < 1e-12
    with pytest.raises(ParameterError, match=r"dynamical\.march_kernel"):
        d3.march_plan(geometry, d3.DynamicalOptions(march_kernel="bogus"))


def test_auto_is_the_xla_scan_off_a_gpu() -> None:
    on_gpu = jax.default_backend() == "gpu"
    want = "pallas" if on_gpu and march_pallas.pallas_available() else "xla"
    assert on_gpu or not march_pallas.pallas_available()
    assert march_pallas.resolve_march_kernel("auto") == want
    assert [march_pallas.resolve_march_kernel(n) for n in ("xla", "pallas")] == ["xla", "pallas"]
    geometry, _ = _tiny()
    assert d3.march_plan(geometry).march_kernel == want


def test_the_probe_passes_the_fused_march_and_refuses_a_broken_one(monkeypatch) -> None:
    """auto's check: the real fused march (interpret mode) passes; one that fails to compile
    or gives a wrong field is refused, so auto falls back to the XLA scan."""
    assert march_pallas.fused_march_works(interpret=True)

    def broken(k, phase_step, interpret=None):
        raise RuntimeError("Triton cannot compile this")

    monkeypatch.setattr(march_pallas, "pallas_march", broken)
    assert not march_pallas.fused_march_works(interpret=True)

    def wrong(k, phase_step, interpret=None):
        return 1.01 * march_pallas.sheared_march(k, phase_step)

    monkeypatch.setattr(march_pallas, "pallas_march", wrong)
    assert not march_pallas.fused_march_works(interpret=True)


def test_a_jax_without_the_triton_backend_refuses_pallas_with_the_fix(monkeypatch) -> None:
    monkeypatch.setattr(march_pallas, "TRITON", None)
    k = march_pallas.ShearedCoefficients(*(jnp.ones((2, 2, 1), jnp.complex64),) * 3)
    with pytest.raises(ParameterError, match=r"dynamical\.march_kernel.*auto or xla"):
        march_pallas.pallas_march(k, jnp.ones(1, jnp.complex64))
