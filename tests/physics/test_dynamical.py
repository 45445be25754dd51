"""3D dynamical forward model: thin limit against the kinematical model, autodiff, invariances."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dyncdi_hpc.physics import dynamical as d3
from dyncdi_hpc.physics import kinematical, tt_march
from dyncdi_hpc.physics.geometry import Geometry, make_geometry
from dyncdi_hpc.physics.materials import Susceptibility
from dyncdi_hpc.physics.objects import CrystalParams


def _geometry(shape: tuple[int, int, int], rocking_step_rad: float) -> Geometry:
    return make_geometry(
        energy_kev=9.0,
        material="Au",
        hkl=(1, 1, 1),
        shape=shape,
        rocking_step_rad=rocking_step_rad,
        pixel_size_m=55e-6,
        detector_distance_m=1.0,
    )


def _crystal(
    shape: tuple[int, int, int], centre=(0.0, 0.0, 0.0), sharpness: float = 6.0
) -> tuple[np.ndarray, np.ndarray]:
    """Logits and phase of a lopsided ellipsoid (no inversion centre) with a non-trivial phase."""
    n = np.asarray(shape)
    x, y, z = (
        np.indices(shape).astype(float)
        - (n // 2)[:, None, None, None]
        - np.asarray(centre)[:, None, None, None]
    )
    r = np.sqrt(
        (x / (0.24 * n[0])) ** 2 + (y / (0.2 * n[1])) ** 2 + ((z + 0.3 * x) / (0.17 * n[2])) ** 2
    )
    logits = sharpness * (1 - r) + 1.5 * (x > 0) * (y > 0)
    phase = 0.8 * np.sin(0.35 * x + 0.2 * z) + 0.03 * x * y + 0.05 * z**2 / (n[2] / 8)
    return logits, phase


def _params(logits: np.ndarray, phase: np.ndarray, dtype=jnp.float64) -> CrystalParams:
    return CrystalParams(jnp.asarray(logits, dtype), jnp.asarray(phase, dtype))


def _scaled(geometry: Geometry, factor: float) -> Susceptibility:
    c = d3.bragg_case_of(geometry).chi
    return Susceptibility(c.chi0 * factor, c.chih * factor, c.chihbar * factor)


def _relative_error(model: np.ndarray, reference: np.ndarray) -> tuple[float, float]:
    """(best global scale, ||model - scale reference|| / ||scale reference||)."""
    scale = float(np.sum(model * reference) / np.sum(reference * reference))
    return scale, float(
        np.linalg.norm(model - scale * reference) / np.linalg.norm(scale * reference)
    )


def test_weighted_march_is_the_phase_march() -> None:
    setup = tt_march.march_setup(d3.bragg_case_of(_geometry((8, 8, 8), 1e-4)), 30.0)
    rng = np.random.default_rng(0)
    shape = rng.uniform(0, 1, (14, 9))
    phase = rng.uniform(-3, 3, shape.shape)
    chi = d3.bragg_case_of(_geometry((8, 8, 8), 1e-4)).chi
    with jax.enable_x64(True):
        a = tt_march.tt_exit_field(jnp.asarray(shape), jnp.asarray(phase), 1e-4, chi, setup)
        b = tt_march.tt_exit_field_weighted(
            jnp.asarray(shape), jnp.asarray(shape * np.exp(-1j * phase)), 1e-4, chi, setup
        )
    np.testing.assert_allclose(np.asarray(b), np.asarray(a), rtol=1e-12, atol=1e-14)


def test_thin_limit_converges_to_the_kinematical_model() -> None:
    """Same parameters, same detector frame: |I_dyn - s I_kin| / |s I_kin| -> 0 as t/Lambda0 -> 0,
    with s -> 1; the twin (q -> -q) is far off, so an orientation or conjugation slip fails."""
    geometry = _geometry((16, 16, 16), 1.745e-4)
    logits, phase = _crystal(geometry.shape)
    support = 1 / (1 + np.exp(-logits)) > 0.5
    thickness = float(np.ptp(geometry.voxel_positions_nm()[..., 2][support]))  # along h
    with jax.enable_x64(True):
        params = _params(logits, phase)
        kin = np.asarray(kinematical.forward(params, geometry))
        results = []
        for factor in (0.3, 0.1, 0.03, 0.01):
            chi = _scaled(geometry, factor)
            ratio = thickness / d3.bragg_case_of(geometry, chi).pendellosung_nm
            model = np.asarray(d3.forward(params, geometry, d3.DynamicalOptions(chi=chi)))
            results.append((ratio, *_relative_error(model, kin)))
    ratios, scales, errors = (np.array(v) for v in zip(*results, strict=True))
    assert np.all(np.diff(errors) < 0), results  # falls with t / Lambda0
    assert errors[0] > 5e-3  # visibly dynamical at t = 0.3 Lambda0 (the test can fail)
    assert np.all(errors[ratios <= 0.03] < 1e-2), results
    assert ratios[-1] <= 0.03
    assert scales[-1] == pytest.approx(1.0, abs=5e-3)  # the kinematical scale, not just ~
    twin = np.roll(kin[::-1, ::-1, ::-1], 1, axis=(0, 1, 2))  # I_kin(-q)
    assert _relative_error(model, twin)[1] > 0.3


def _tiny() -> tuple[Geometry, d3.DynamicalOptions, CrystalParams]:
    geometry = _geometry((8, 8, 4), 3.5e-4)
    logits, phase = _crystal(geometry.shape, sharpness=4.0)
    options = d3.DynamicalOptions(points_per_extinction=8.0)
    return geometry, options, _params(logits, phase)


def _loss(params: CrystalParams, geometry: Geometry, options: d3.DynamicalOptions) -> jax.Array:
    return jnp.sum(jnp.log1p(d3.forward(params, geometry, options)))


@pytest.mark.slow
def test_gradients_match_central_differences_and_checkpointing() -> None:
    with jax.enable_x64(True):
        geometry, options, params = _tiny()
        loss = jax.jit(lambda p: _loss(p, geometry, options))
        grad = jax.grad(loss)(params)
        rng = np.random.default_rng(1)
        eps = 1e-6
        for field in ("logits", "phase"):
            for _ in range(2):
                v = jnp.asarray(rng.normal(size=geometry.shape))
                step = {field: eps * v}
                plus = params._replace(**{k: getattr(params, k) + s for k, s in step.items()})
                minus = params._replace(**{k: getattr(params, k) - s for k, s in step.items()})
                fd = (loss(plus) - loss(minus)) / (2 * eps)
                ad = jnp.vdot(getattr(grad, field), v)
                assert abs(float(ad - fd)) < 1e-4 * abs(float(fd)), (field, float(ad), float(fd))
        remat = d3.DynamicalOptions(points_per_extinction=8.0, checkpoint_block=2, angle_chunk=3)
        np.testing.assert_allclose(
            np.asarray(d3.forward(params, geometry, remat)),
            np.asarray(d3.forward(params, geometry, options)),
            rtol=1e-12,
        )
        grad_remat = jax.grad(lambda p: _loss(p, geometry, remat))(params)
        for a, b in zip(grad_remat, grad, strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-12)


def test_translation_invariance_and_uniform_strain_shift() -> None:
    """A crystal moved by whole voxels scatters the same intensities (exactly across h and y,
    to the march sampling along the exit beam); a uniform expansion e moves the rocking curve
    by -tan(thetaB) e, here one rocking step, in a crystal ~2 Lambda0 thick."""
    geometry = _geometry((16, 16, 16), 3e-5)
    options = d3.DynamicalOptions(points_per_extinction=12.0)
    forward = jax.jit(lambda p: d3.forward(p, geometry, options))
    with jax.enable_x64(True):
        base = np.asarray(forward(_params(*_crystal(geometry.shape, sharpness=12.0))))
        for shift, tol in (((0, 1, -2), 1e-6), ((1, 0, 0), 5e-3)):
            moved = forward(_params(*_crystal(geometry.shape, centre=shift, sharpness=12.0)))
            assert np.max(np.abs(np.asarray(moved) - base)) < tol * base.max(), shift
        logits, phase = _crystal(geometry.shape, sharpness=12.0)
        strain = geometry.rocking_step_rad / math.tan(geometry.bragg_angle_rad)
        z = geometry.voxel_positions_nm()[..., 2]
        strained = np.asarray(forward(_params(logits, phase - geometry.h_nm * strain * z)))
    curve, strained_curve = base.sum(axis=(1, 2)), strained.sum(axis=(1, 2))
    expected = np.roll(curve, -1)  # one step towards lower angles, FFT order
    assert np.max(np.abs(strained_curve - expected)) < 0.04 * curve.max()
    assert np.max(np.abs(strained_curve - curve)) > 0.2 * curve.max()


_SHARDED = textwrap.dedent(
    """
    import json
    import jax, jax.numpy as jnp, numpy as np
    from dyncdi_hpc.physics import dynamical as d3
    from dyncdi_hpc.physics.geometry import make_geometry
    from dyncdi_hpc.physics.objects import CrystalParams

    g = make_geometry(energy_kev=9.0, material="Au", hkl=(1, 1, 1), shape=(6, 8, 4),
                      rocking_step_rad=3.5e-4, pixel_size_m=55e-6, detector_distance_m=1.0)
    opts = d3.DynamicalOptions(points_per_extinction=8.0)
    rng = np.random.default_rng(0)
    p = CrystalParams(jnp.asarray(rng.normal(-1, 2, g.shape), jnp.float32),
                      jnp.asarray(rng.uniform(-2, 2, g.shape), jnp.float32))
    plain = d3.forward(p, g, opts)
    sharded = d3.forward_sharded(p, g, opts)
    loss = lambda f: (lambda q: jnp.sum(jnp.sqrt(f(q, g, opts) + 1.0)))
    ga = jax.grad(loss(d3.forward))(p)
    gb = jax.grad(loss(d3.forward_sharded))(p)
    gerr = max(float(jnp.max(jnp.abs(a - b)) / jnp.max(jnp.abs(a))) for a, b in zip(ga, gb))
    print(json.dumps({
        "devices": len(jax.devices()),
        "shape": list(sharded.shape),
        "err": float(jnp.max(jnp.abs(sharded - plain)) / jnp.max(plain)),
        "grad_err": gerr,
    }))
    """
)


@pytest.mark.slow
def test_sharded_rocking_angles_match_unsharded() -> None:
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, "-c", _SHARDED], env=env, capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["devices"] == 4
    assert result["shape"] == [6, 8, 4]  # 6 angles on 4 devices: padded, then cut
    assert result["err"] < 1e-5
    assert result["grad_err"] < 1e-4


def test_static_box_marches_only_the_crystal() -> None:
    """A crystal in vacuum marched in its bounding box scatters what the whole grid does (to
    the prefilter's tails cut beyond BOX_PREFILTER_MARGIN voxels along a0), for far fewer
    march points; outside the box the parameters are ignored."""
    geometry = _geometry((32, 24, 20), 3e-5)
    logits, phase = _crystal((12, 10, 8), sharpness=12.0)
    full_logits = np.full(geometry.shape, -40.0)
    full_phase = np.zeros(geometry.shape)
    full_logits[9:21, 6:16, 5:13] = np.where(logits < -3, -40.0, logits)
    full_phase[9:21, 6:16, 5:13] = phase
    box = d3.support_box(full_logits > -30, margin=1)
    options = d3.DynamicalOptions(points_per_extinction=12.0)
    boxed = d3.DynamicalOptions(points_per_extinction=12.0, box=box)
    assert d3.march_plan(geometry, boxed).points < 0.3 * d3.march_plan(geometry, options).points
    with jax.enable_x64(True):
        params = _params(full_logits, full_phase)
        full = np.asarray(d3.forward(params, geometry, options))
        part = np.asarray(d3.forward(params, geometry, boxed))
        outside = np.ones(geometry.shape, bool)
        outside[tuple(slice(lo, hi) for lo, hi in box)] = False
        noisy = params._replace(logits=jnp.where(outside, 3.0, params.logits))
        ignored = np.asarray(d3.forward(noisy, geometry, boxed))
    err = np.linalg.norm(part - full) / np.linalg.norm(full)
    assert err < 2e-3, err
    np.testing.assert_array_equal(ignored, part)
