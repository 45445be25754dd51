"""Several reflections of one simulated crystal from a known displacement vector field."""

import jax.numpy as jnp
import numpy as np
import pytest

from dyncdi_hpc.config import CrystalConfig, VectorDisplacementConfig
from dyncdi_hpc.data.simulate_multi import displacement_field, simulate_multi
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.frames import SampleGrid
from dyncdi_hpc.physics.resample import Reflection, resample, sample_to_conjugate_plan
from tests.conftest import GEOMETRY_32

HKLS = [(1, 1, 1), (-1, 1, 1), (0, 0, 2)]
GRID = SampleGrid((40, 40, 40), 40.0)


@pytest.fixture(scope="module")
def three():
    reflections = tuple(
        Reflection(GEOMETRY_32.model_copy(update={"hkl": h}).build(), azimuth_rad=0.2 * j)
        for j, h in enumerate(HKLS)
    )
    return simulate_multi(reflections, GRID)


def test_each_scan_sees_its_own_projection_of_one_displacement(three):
    for reflection, truth, intensity in zip(
        three.reflections, three.truths, three.intensities, strict=True
    ):
        r = reflection.geometry.voxel_positions_nm() @ reflection.rotation
        u = displacement_field(r, VectorDisplacementConfig(), 800.0)
        inside = truth.support
        np.testing.assert_allclose(
            truth.phase[inside], -np.tensordot(reflection.h_nm, u, axes=1)[inside], rtol=1e-12
        )
        unit = reflection.h_nm / np.linalg.norm(reflection.h_nm)
        np.testing.assert_allclose(
            truth.displacement_nm[inside], np.tensordot(unit, u, axes=1)[inside], atol=1e-12
        )
        # kinematical: |DFT|^2 of the truth, peak counts 1e5
        obj = truth.amplitude * np.exp(1j * truth.phase)
        model = np.abs(np.fft.fftshift(np.fft.fftn(np.fft.ifftshift(obj)))) ** 2
        np.testing.assert_allclose(intensity, model * 1e5 / model.max(), rtol=1e-4, atol=1e-2)
        assert 1.0 < np.ptp(truth.phase[inside]) < 4.0


def test_the_sample_truth_resampled_is_each_scans_truth(three):
    truth = three.truth
    assert 0.03 < np.ptp(truth.displacement_nm[:, truth.support], axis=1).min()
    for reflection, scan in zip(three.reflections, three.truths, strict=True):
        plan = sample_to_conjugate_plan(reflection.geometry, GRID, reflection.rotation)
        s = np.asarray(resample(jnp.asarray(truth.amplitude), plan))
        assert np.abs(s - scan.amplitude).mean() < 0.02
        assert np.sum((s > 0.5) & scan.support) > 0.9 * scan.support.sum()
        phase = np.asarray(
            resample(jnp.asarray(-np.tensordot(reflection.h_nm, truth.displacement_nm, 1)), plan)
        )
        inner = scan.support & (s > 0.99)
        assert np.sqrt(np.mean((phase - scan.phase)[inner] ** 2)) < 0.02


def test_the_azimuth_turns_the_crystal_in_the_scan():
    reflections = [
        (Reflection(GEOMETRY_32.model_copy(update={"hkl": (1, 1, 1)}).build(), azimuth_rad=a),)
        for a in (0.0, 1.0)
    ]
    a, b = (simulate_multi(r, GRID) for r in reflections)
    # the same crystal, turned about h: other voxels, other data, the same sample-frame truth
    assert not np.allclose(a.intensities[0], b.intensities[0], rtol=0.05, atol=10)
    np.testing.assert_array_equal(a.truth.displacement_nm, b.truth.displacement_nm)


def test_bad_model_and_inconsistent_reflections_are_refused():
    g = GEOMETRY_32.model_copy(update={"hkl": (1, 1, 1)}).build()
    with pytest.raises(DyncdiError) as err:
        simulate_multi((Reflection(g),), GRID, model="multislice")
    assert err.value.field == "model"
    other = GEOMETRY_32.model_copy(update={"hkl": (0, 0, 2), "energy_kev": 8.0}).build()
    with pytest.raises(DyncdiError) as err:
        simulate_multi((Reflection(g), Reflection(other)), GRID)
    assert err.value.field == "reflections[1].energy_kev"


def test_dynamical_scans_are_close_to_kinematical_for_a_small_crystal():
    base = GEOMETRY_32.model_copy(
        update={"shape": (16, 16, 16), "rocking_step_deg": 0.01, "pixel_size_um": 110.0}
    )
    reflections = tuple(
        Reflection(base.model_copy(update={"hkl": h}).build()) for h in [(1, 1, 1), (0, 0, 2)]
    )
    crystal = CrystalConfig(size_nm=450.0)
    grid = SampleGrid((16, 16, 16), 50.0)
    dyn = simulate_multi(reflections, grid, crystal=crystal, model="dynamical")
    kin = simulate_multi(reflections, grid, crystal=crystal)
    for a, b in zip(dyn.intensities, kin.intensities, strict=True):
        assert a.max() == pytest.approx(1e5)
        assert np.corrcoef(a.ravel(), b.ravel())[0, 1] > 0.85
