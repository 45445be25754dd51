"""Two-beam Takagi-Taupin march against closed forms, invariances and finite differences."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics import reflectivity, tt_march
from dyncdi_hpc.physics.materials import BraggCase, Susceptibility, bragg_case

AU111 = bragg_case("Au", (1, 1, 1), 9.0)


def _real_chi(case: BraggCase) -> BraggCase:
    """The same reflection without absorption (Im chi = 0)."""
    c = case.chi
    chi = Susceptibility(complex(c.chi0.real), complex(c.chih.real), complex(c.chihbar.real))
    return BraggCase(chi, case.wavelength_nm, case.bragg_angle_rad, case.polarisation)


def _normally_absorbing(case: BraggCase) -> BraggCase:
    """Twice Au's mean absorption but none in chih: no anomalously transmitted wavefield.

    In real fcc 111 reflections Im chih ~ Im chi0, so one wavefield at the low-angle plateau edge
    is hardly absorbed; a slab then needs hundreds of Lambda0 to reach Darwin-Prins there, and a
    finite crystal a width set by that absorption length. This user-given susceptibility
    reaches the thick limit (to 4e-4) at 4 Lambda0.
    """
    c = case.chi
    chi = Susceptibility(
        complex(c.chi0.real, 2 * c.chi0.imag), complex(c.chih.real), complex(c.chihbar.real)
    )
    return BraggCase(chi, case.wavelength_nm, case.bragg_angle_rad, case.polarisation)


def _centre_ray_curve(
    case: BraggCase,
    thickness: float,
    width_factor: float,
    points: float,
    dtheta: np.ndarray,
    drop_chihbar: bool = False,
) -> np.ndarray:
    """|Dh|^2 on the exit ray leaving the middle of a wide t x w crystal's top face (float64)."""
    setup = tt_march.march_setup(
        case, case.extinction_length_ray_nm / points, drop_chihbar=drop_chihbar
    )
    width = width_factor * 2 * thickness / math.tan(case.bragg_angle_rad)
    shape, (x0, x1) = reflectivity.rectangle_on_grid(setup, thickness, width)
    hx = setup.step_nm * math.cos(setup.bragg_angle_rad)
    centre = round(0.5 * (x0 + x1) / (2 * hx))  # ray i leaves the top at column 2 i
    field = tt_march.rocking_exit_field(
        jnp.asarray(shape), jnp.zeros(shape.shape), jnp.asarray(dtheta), case.chi, setup
    )
    return np.abs(np.asarray(field)[:, centre]) ** 2


def _angles(case: BraggCase, thickness: float, n: int = 61, span: float = 4.0) -> np.ndarray:
    fringe = case.wavelength_nm / (2 * thickness * math.cos(case.bragg_angle_rad))
    half = span * max(case.darwin_width_rad, fringe)
    return case.refraction_shift_rad + np.linspace(-half, half, n)


# ---------------------------------------------------------------------------- closed forms


def test_closed_forms_agree_with_each_other() -> None:
    gaas = bragg_case("GaAs", (1, 1, 1), 9.0)  # chih != chihbar
    for case in (AU111, gaas):
        dth = _angles(case, case.pendellosung_nm, n=401)
        thick = reflectivity.slab_reflectivity(case, dth, 2000 * case.pendellosung_nm)
        np.testing.assert_allclose(
            thick, reflectivity.darwin_prins_reflectivity(case, dth), atol=1e-6
        )
    real = _real_chi(AU111)
    centre = real.refraction_shift_rad
    for tf in (0.1, 0.5, 1.0, 2.0):
        t = tf * real.pendellosung_nm
        assert reflectivity.slab_reflectivity(real, centre, t) == pytest.approx(
            math.tanh(math.pi * tf) ** 2, abs=1e-12
        )
    # thin, non-absorbing: (pi t / Lambda0)^2, in both the full and the single-scattering form
    t = 0.01 * real.pendellosung_nm
    kin = (math.pi * 0.01) ** 2
    assert reflectivity.slab_reflectivity(real, centre, t) == pytest.approx(kin, rel=1e-3)
    assert reflectivity.slab_reflectivity(real, centre, t, drop_chihbar=True) == pytest.approx(
        kin, rel=1e-3
    )


# ----------------------------------------------------------------- march against the slab


@pytest.mark.parametrize(
    ("label", "thickness_factor", "width_factor", "points"),
    [("thin", 0.2, 4, 24), ("intermediate", 1.0, 10, 32), ("thick", 4.0, 4, 24)],
)
def test_wide_crystal_reproduces_slab(
    label: str, thickness_factor: float, width_factor: float, points: float
) -> None:
    case = _normally_absorbing(AU111) if label == "thick" else AU111
    t = thickness_factor * case.pendellosung_nm
    dth = _angles(case, t)
    with jax.enable_x64(True):
        march = _centre_ray_curve(case, t, width_factor, points, dth)
    slab = reflectivity.slab_reflectivity(case, dth, t)
    assert np.max(np.abs(march - slab)) < 2e-3
    if label == "thick":
        assert np.max(np.abs(march - reflectivity.darwin_prins_reflectivity(case, dth))) < 2e-3


def test_non_absorbing_plateau_centre_is_tanh_squared() -> None:
    # Without absorption, power entering the side face at the plateau centre flows along the
    # surface and dies out only by leaking through the back face: the crystal must be wider
    # (16 x 2 t cot(thetaB)) than with absorption before the centre ray is slab-like.
    case = _real_chi(AU111)
    with jax.enable_x64(True):
        for tf in (0.3, 1.0):
            t = tf * case.pendellosung_nm
            r = _centre_ray_curve(case, t, 16, 24, np.array([case.refraction_shift_rad]))
            assert r[0] == pytest.approx(math.tanh(math.pi * tf) ** 2, abs=2e-3)


def test_single_scattering_switch_matches_born_slab() -> None:
    t = AU111.pendellosung_nm
    dth = _angles(AU111, t, n=41)
    with jax.enable_x64(True):
        march = _centre_ray_curve(AU111, t, 4, 24, dth, drop_chihbar=True)
    born = reflectivity.slab_reflectivity(AU111, dth, t, drop_chihbar=True)
    assert np.max(np.abs(march - born)) < 2e-3 * born.max()
    # and it is far above the dynamical curve at this thickness: extinction
    assert born.max() > 3 * reflectivity.slab_reflectivity(AU111, dth, t).max()


def test_finite_crystal_reflectivity_tends_to_slab() -> None:
    t = 0.2 * AU111.pendellosung_nm
    dth = _angles(AU111, t, n=21, span=2.0)
    slab = reflectivity.slab_reflectivity(AU111, dth, t)
    errors = []
    with jax.enable_x64(True):
        for factor in (20, 40):
            w = factor * 2 * t / math.tan(AU111.bragg_angle_rad)
            r = reflectivity.finite_crystal_reflectivity(AU111, t, w, dth, incident="top")
            errors.append(np.max(np.abs(r - slab)))
    # edge effects over ~2 t cot(thetaB) at each side: the error falls as 1 / width
    assert errors[1] < 2e-3
    assert errors[1] < 0.6 * errors[0]


# ----------------------------------------------------------------------- grid and steps


def test_halving_the_step_converges_at_second_order() -> None:
    """Stated tolerance: at the default 24 points per extinction length, halving the step
    changes the reflectivity by less than 2e-3 anywhere on the rocking curve."""
    t = AU111.pendellosung_nm
    dth = _angles(AU111, t, n=41)
    with jax.enable_x64(True):
        curves = [_centre_ray_curve(AU111, t, 3, p, dth) for p in (12, 24, 48)]
    coarse = np.max(np.abs(curves[0] - curves[1]))
    fine = np.max(np.abs(curves[1] - curves[2]))
    assert fine < 2e-3
    assert fine < 0.35 * coarse  # 0.25 for an exactly second-order scheme


def test_default_step_from_extinction_length_and_too_coarse_refused() -> None:
    setup = tt_march.march_setup(AU111)
    assert setup.step_nm == pytest.approx(
        AU111.extinction_length_ray_nm / tt_march.POINTS_PER_EXTINCTION
    )
    with pytest.raises(DyncdiError, match="too coarse") as err:
        tt_march.march_setup(AU111, AU111.extinction_length_ray_nm / 2)
    assert err.value.field == "step_nm"
    assert "at most" in err.value.fix
    with pytest.raises(DyncdiError):
        tt_march.march_setup(AU111, -1.0)


# --------------------------------------------------------------------------- invariances


def _slab_setup(points: float = 16) -> tuple[tt_march.MarchSetup, np.ndarray]:
    setup = tt_march.march_setup(AU111, AU111.extinction_length_ray_nm / points)
    t = AU111.pendellosung_nm
    shape, _ = reflectivity.rectangle_on_grid(setup, t, 3 * 2 * t / math.tan(AU111.bragg_angle_rad))
    return setup, shape


def test_uniform_strain_shifts_the_curve_by_minus_tan_theta_strain() -> None:
    setup, shape = _slab_setup()
    strain = 2e-4
    _, z = tt_march.march_grid_nm(setup, *shape.shape)
    h = 4 * math.pi * math.sin(AU111.bragg_angle_rad) / AU111.wavelength_nm
    phase = h * strain * z  # u_z = strain z
    dth = _angles(AU111, AU111.pendellosung_nm, n=41)
    shift = -math.tan(AU111.bragg_angle_rad) * strain

    def power(ph, angles):
        with jax.enable_x64(True):
            f = tt_march.rocking_exit_field(
                jnp.asarray(shape), jnp.asarray(ph), jnp.asarray(angles), AU111.chi, setup
            )
            return np.sum(np.abs(np.asarray(f)) ** 2, axis=-1)

    strained = power(phase, dth + shift)
    plain = power(np.zeros_like(phase), dth)
    np.testing.assert_allclose(strained, plain, rtol=1e-9, atol=1e-12)
    # the shift is resolved on a grid finer than itself
    fine = np.linspace(-1, 1, 81) * 0.5 * AU111.darwin_width_rad + AU111.refraction_shift_rad
    peak_plain = fine[np.argmax(power(np.zeros_like(phase), fine))]
    fine_strained = fine + shift
    peak_strained = fine_strained[np.argmax(power(phase, fine_strained))]
    assert peak_strained - peak_plain == pytest.approx(shift, abs=1e-9)


def test_translation_is_a_far_field_phase_ramp() -> None:
    """Moving the crystal (a phase ramp in the far field) leaves the intensities unchanged."""
    setup, shape = _slab_setup()
    theta = setup.bragg_angle_rad
    h = 4 * math.pi * math.sin(theta) / setup.wavelength_nm
    rng = np.random.default_rng(0)
    phase = rng.uniform(-1, 1, shape.shape) * (shape > 0)
    dth = AU111.refraction_shift_rad + np.array([-1.0, 0.0, 0.7]) * AU111.darwin_width_rad
    shape = np.pad(shape, ((0, 4), (0, 2)))
    phase = np.pad(phase, ((0, 4), (0, 2)))

    def field(s, ph):
        with jax.enable_x64(True):
            f = tt_march.rocking_exit_field(
                jnp.asarray(s), jnp.asarray(ph), jnp.asarray(dth), AU111.chi, setup
            )
            return np.asarray(f)

    def far_field_intensity(f):
        return np.abs(np.fft.fft(f, axis=-1)) ** 2

    base = field(shape, phase)
    # along x by 2 step cos(thetaB) (two columns): h.T = 0
    moved_x = field(np.roll(shape, 2, axis=0), np.roll(phase, 2, axis=0))
    # down by 2 step sin(thetaB) (one row): h.T = -2 h step sin(thetaB), a constant phase
    t_z = -2 * setup.step_nm * math.sin(theta)
    moved_z = field(np.roll(shape, 1, axis=1), np.roll(phase, 1, axis=1) + h * t_z)
    reference = far_field_intensity(base)
    for moved in (moved_x, moved_z):
        np.testing.assert_allclose(far_field_intensity(moved), reference, rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(np.abs(moved[:, 1:]), np.abs(base[:, :-1]), atol=1e-12)
    # a global phase offset of h.u changes nothing in the intensities either
    offset = field(shape, phase + 1.234)
    np.testing.assert_allclose(np.abs(offset), np.abs(base), atol=1e-12)


def test_weak_scattering_limit_is_the_discrete_fourier_sum() -> None:
    """The contract for a 3D forward model: with chi -> 0 the exit field of ray i is
    i (pi step / lambda) C chih sum_j S exp(-i h.u) exp(i (pi step / lambda) alpha j)."""
    setup = tt_march.MarchSetup(step_nm=20.0, wavelength_nm=0.1378, bragg_angle_rad=0.3)
    nx, nz = 12, 7
    rng = np.random.default_rng(1)
    shape = rng.uniform(0, 1, (nx, nz))
    phase = rng.uniform(-2, 2, (nx, nz))
    chih = 1e-10 * (1 + 0.5j)
    chi = Susceptibility(0j, chih, chih.conjugate())
    dtheta = 3e-3
    with jax.enable_x64(True):
        out = np.asarray(
            tt_march.tt_exit_field(jnp.asarray(shape), jnp.asarray(phase), dtheta, chi, setup)
        )
    kappa = math.pi * setup.step_nm / setup.wavelength_nm
    alpha = float(tt_march.alpha_from_dtheta(dtheta, setup.bragg_angle_rad))
    n = np.arange(nx)[:, None]
    k = np.arange(nz)[None, :]
    i = n // 2 + n % 2 + k
    j = n // 2 - k
    terms = 1j * kappa * chih * shape * np.exp(-1j * phase) * np.exp(1j * kappa * alpha * j)
    expected = np.zeros(tt_march.exit_ray_count(nx, nz), complex)
    np.add.at(expected, i, terms)
    assert out.shape == expected.shape
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-6 * np.abs(expected).max())


# -------------------------------------------------------------------- autodiff and batching


def _small_problem(dtype):
    case = AU111
    setup = tt_march.MarchSetup(
        step_nm=case.extinction_length_ray_nm / 6,
        wavelength_nm=case.wavelength_nm,
        bragg_angle_rad=case.bragg_angle_rad,
    )
    rng = np.random.default_rng(2)
    shape = np.zeros((20, 10))
    shape[3:17, 1:8] = rng.uniform(0.3, 1.0, (14, 7))
    phase = rng.uniform(-1, 1, shape.shape)
    dth = jnp.asarray(
        case.refraction_shift_rad + np.array([-0.3, 0.1, 0.6]) * case.darwin_width_rad
    )
    return case, setup, jnp.asarray(shape, dtype), jnp.asarray(phase, dtype), dth.astype(dtype)


def _loss(shape, phase, dth, chi, setup):
    field = tt_march.rocking_exit_field(shape, phase, dth, chi, setup)
    far = jnp.fft.fft(field, axis=-1)
    return jnp.sum(jnp.log1p(jnp.abs(far) ** 2))


@pytest.mark.slow
def test_gradients_match_central_differences_and_checkpointing() -> None:
    with jax.enable_x64(True):
        case, setup, shape, phase, dth = _small_problem(jnp.float64)
        loss = jax.jit(lambda s, p: _loss(s, p, dth, case.chi, setup))
        g_shape, g_phase = jax.grad(loss, argnums=(0, 1))(shape, phase)
        rng = np.random.default_rng(3)
        eps = 1e-6
        for grad, which in ((g_shape, 0), (g_phase, 1)):
            for _ in range(2):
                v = jnp.asarray(rng.normal(size=shape.shape))
                args_p = [shape, phase]
                args_m = [shape, phase]
                args_p[which] = args_p[which] + eps * v
                args_m[which] = args_m[which] - eps * v
                fd = (loss(*args_p) - loss(*args_m)) / (2 * eps)
                ad = jnp.vdot(grad, v)
                assert abs(float(ad - fd)) < 1e-4 * abs(float(fd))
        ckpt = tt_march.MarchSetup(**{**setup.__dict__, "checkpoint_block": 3})
        g_ckpt = jax.grad(lambda s, p: _loss(s, p, dth, case.chi, ckpt), argnums=(0, 1))(
            shape, phase
        )
        for a, b in zip(g_ckpt, (g_shape, g_phase), strict=True):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-12, atol=1e-12)


@pytest.mark.slow
def test_vmap_over_angles_and_batch_axis_float32_strict() -> None:
    case, setup, shape, phase, dth = _small_problem(jnp.float32)
    with jax.numpy_dtype_promotion("strict"):
        scan = tt_march.rocking_exit_field(shape, phase, dth, case.chi, setup)
        assert scan.dtype == jnp.complex64
        for a in range(dth.shape[0]):
            np.testing.assert_allclose(
                scan[a],
                tt_march.tt_exit_field(shape, phase, dth[a], case.chi, setup),
                rtol=1e-5,
                atol=1e-6,
            )
        stack_s = jnp.stack([shape, 0.5 * shape])
        stack_p = jnp.stack([phase, -phase])
        batched = jax.vmap(lambda s, p: tt_march.tt_exit_field(s, p, dth[0], case.chi, setup))(
            stack_s, stack_p
        )
        for b in range(2):
            single = tt_march.tt_exit_field(stack_s[b], stack_p[b], dth[0], case.chi, setup)
            np.testing.assert_allclose(batched[b], single, rtol=1e-5, atol=1e-6)
        grad = jax.grad(lambda s: _loss(s, phase, dth, case.chi, setup))(shape)
        assert grad.dtype == jnp.float32
    with jax.enable_x64(True):
        _, _, s64, p64, d64 = _small_problem(jnp.float64)
        scan64 = tt_march.rocking_exit_field(s64, p64, d64, case.chi, setup)
    np.testing.assert_allclose(np.asarray(scan), np.asarray(scan64), rtol=0, atol=1e-4)
