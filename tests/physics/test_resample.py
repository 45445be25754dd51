"""Orientation of each reflection and the differentiable sample <-> conjugate resampling."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.ndimage import map_coordinates

from dyncdi_hpc.analysis.frames import to_sample_frame
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.frames import SampleGrid, sample_grid
from dyncdi_hpc.physics.geometry import Geometry
from dyncdi_hpc.physics.resample import (
    Reflection,
    check_reflections,
    conjugate_to_sample_plan,
    h_vector_nm,
    reflection_rotation,
    resample,
    sample_to_conjugate_plan,
    trilinear_plan,
)
from tests.conftest import GEOMETRY_32

HKLS = [(1, 1, 1), (-1, 1, 1), (1, -1, 1), (0, 0, 2), (2, 0, 0), (0, 0, -2), (2, 2, 0)]


def _geometry(hkl, **update):
    return GEOMETRY_32.model_copy(update={"hkl": hkl, **update}).build()


@pytest.mark.parametrize("hkl", HKLS)
@pytest.mark.parametrize("azimuth", [0.0, 0.7])
def test_rotation_is_proper_and_puts_h_along_z(hkl, azimuth):
    h = h_vector_nm("Au", hkl)
    rot = reflection_rotation(h, azimuth)
    np.testing.assert_allclose(rot @ rot.T, np.eye(3), atol=1e-12)
    assert np.linalg.det(rot) == pytest.approx(1.0)
    np.testing.assert_allclose(rot @ h, [0, 0, np.linalg.norm(h)], atol=1e-12)
    assert np.linalg.norm(h) == pytest.approx(_geometry(hkl).h_nm, rel=1e-12)


def test_azimuth_turns_the_scattering_plane_about_h_right_handed():
    h = h_vector_nm("Au", (1, 1, 1))
    r0, r1 = reflection_rotation(h, 0.0), reflection_rotation(h, np.pi / 2)
    # e_x(pi/2) = e_z x e_x(0) = e_y(0)
    np.testing.assert_allclose(r1[0], r0[1], atol=1e-12)
    np.testing.assert_allclose(r1[2], r0[2], atol=1e-12)


def test_reference_direction_convention():
    # [001] projected normal to h is e_x; for h along [001] the fallback [100] is e_x
    np.testing.assert_allclose(reflection_rotation(np.array([0, 0, 2.0])), np.eye(3), atol=1e-12)
    rot = reflection_rotation(h_vector_nm("Au", (2, 0, 0)))
    np.testing.assert_allclose(rot[0], [0, 0, 1], atol=1e-12)
    np.testing.assert_allclose(rot[2], [1, 0, 0], atol=1e-12)


def test_trilinear_plan_matches_scipy_including_outside_points():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(6, 7, 5))
    coords = rng.uniform(-1.5, 7.5, size=(3, 4, 5, 6))
    with jax.enable_x64(True):
        got = resample(jnp.asarray(src), trilinear_plan(coords, src.shape))
    want = map_coordinates(src, coords, order=1, mode="constant", cval=0.0)
    # scipy treats the half voxel beyond the last sample differently; compare inside [0, n-1]
    inside = np.all((coords >= 0) & (coords <= np.array(src.shape)[:, None, None, None] - 1), 0)
    np.testing.assert_allclose(np.asarray(got)[inside], want[inside], atol=1e-12)
    far = np.any((coords < -1) | (coords > np.array(src.shape)[:, None, None, None]), 0)
    assert np.all(np.asarray(got)[far] == 0)


def test_linear_field_is_reproduced_exactly_and_leading_axes_are_independent():
    with jax.enable_x64(True):
        grid = SampleGrid((12, 12, 12), 40.0)
        reflection = Reflection(_geometry((1, -1, 1)), azimuth_rad=0.3)
        plan = sample_to_conjugate_plan(reflection.geometry, grid, reflection.rotation)
        g = np.array([1e-3, -2e-3, 0.5e-3])
        field = grid.positions_nm() @ g  # linear in the sample frame
        stacked = jnp.stack([jnp.asarray(field), 2 * jnp.asarray(field)])
        out = np.asarray(resample(stacked, plan))
        r = reflection.geometry.voxel_positions_nm() @ reflection.rotation  # sample frame
        inside = np.all(np.abs(r) < grid.voxel_nm * 4.9, axis=-1)
        assert inside.sum() > 100
        np.testing.assert_allclose(out[0][inside], (r @ g)[inside], atol=1e-9)
        np.testing.assert_allclose(out[1], 2 * out[0], atol=1e-12)


def test_identity_rotation_matches_frames_to_sample_frame(noiseless32, geometry32):
    grid = sample_grid(geometry32)
    obj = noiseless32.truth.amplitude * np.exp(1j * noiseless32.truth.phase)
    plan = conjugate_to_sample_plan(geometry32, grid, np.eye(3))
    got = np.asarray(resample(jnp.asarray(obj.real), plan)) + 1j * np.asarray(
        resample(jnp.asarray(obj.imag), plan)
    )
    want = to_sample_frame(obj, geometry32, grid)
    np.testing.assert_allclose(got, want, atol=1e-5)


def test_resampling_is_linear_and_its_gradient_is_the_adjoint():
    with jax.enable_x64(True):
        rng = np.random.default_rng(1)
        reflection = Reflection(_geometry((0, 0, 2), shape=(8, 8, 8)))
        grid = SampleGrid((9, 9, 9), 150.0)
        plan = sample_to_conjugate_plan(reflection.geometry, grid, reflection.rotation)
        x = jnp.asarray(rng.normal(size=grid.shape))
        y = jnp.asarray(rng.normal(size=reflection.geometry.shape))
        ax, vjp = jax.vjp(lambda v: resample(v, plan), x)
        (aty,) = vjp(y)
        assert float(jnp.vdot(ax, y)) == pytest.approx(float(jnp.vdot(x, aty)), rel=1e-12)
        assert float(jnp.abs(ax).max()) > 0


def test_check_reflections_rejects_inconsistent_sets_by_field():
    good = Reflection(_geometry((1, 1, 1)))
    check_reflections((good, Reflection(_geometry((0, 0, 2)))))
    other_material = Reflection(_geometry((1, 1, 1), material="Pt"))
    with pytest.raises(DyncdiError) as err:
        check_reflections((good, other_material))
    assert err.value.field == "reflections[1].material" and "Au" in err.value.fix
    other_energy = Reflection(_geometry((0, 0, 2), energy_kev=10.0))
    with pytest.raises(DyncdiError) as err:
        check_reflections((good, other_energy))
    assert err.value.field == "reflections[1].energy_kev" and err.value.fix
    g = good.geometry
    forbidden = Geometry(
        g.energy_kev, g.material, (1, 0, 0), g.shape, g.rocking_step_rad, g.pixel_size_m, 1.0
    )
    with pytest.raises(DyncdiError) as err:
        check_reflections((good, Reflection(forbidden)))
    assert err.value.field == "reflections[1].hkl" and "forbidden" in err.value.problem
    with pytest.raises(DyncdiError) as err:
        check_reflections((good, good))
    assert err.value.field == "reflections[1].hkl"


def test_the_plans_resample_a_measured_scan_into_the_lab_frame_like_to_frame():
    from dyncdi_hpc.analysis.frames import to_frame
    from dyncdi_hpc.physics.frames import frame_to_crystal
    from tests.analysis.test_frames_measured import scan54

    geometry = scan54(32)
    grid = sample_grid(geometry, frame="lab")
    rng = np.random.default_rng(2)
    volume = rng.normal(size=geometry.shape)
    with jax.enable_x64(True):
        plan = conjugate_to_sample_plan(geometry, grid, frame_to_crystal(geometry, "lab"))
        got = np.asarray(resample(jnp.asarray(volume), plan))
    want = to_frame(volume, geometry, "lab", grid=grid).values
    # scipy treats the half voxel beyond the last sample differently: compare inside
    inside = to_frame(np.ones(geometry.shape), geometry, "lab", grid=grid).values > 1 - 1e-9
    assert inside.sum() > 10_000
    np.testing.assert_allclose(got[inside], want[inside], atol=1e-9)
