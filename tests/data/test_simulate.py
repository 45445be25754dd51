import numpy as np
import pytest

from dyncdi_hpc.config import CrystalConfig, DisplacementConfig, SimulateConfig
from dyncdi_hpc.data.simulate import simulate
from dyncdi_hpc.errors import DyncdiError
from tests.conftest import GEOMETRY_32, sim_config


def test_bragg_peak_q0_is_at_the_centre_and_counts_are_scaled(noiseless32):
    i = noiseless32.intensity
    t = noiseless32.truth
    obj = t.amplitude * np.exp(1j * t.phase)
    scale = i.max() / (np.abs(np.fft.fftn(obj, norm="ortho")) ** 2).max()
    q0 = scale * np.abs(obj.sum()) ** 2 / obj.size
    assert i[16, 16, 16] == pytest.approx(q0, rel=1e-4)
    assert i.max() == pytest.approx(1e5, rel=1e-6)


def test_truth_has_a_few_radians_of_phase_inside_a_compact_support(noiseless32):
    t = noiseless32.truth
    inside = t.phase[t.support]
    assert 2.5 < inside.max() - inside.min() < 3.5
    assert 200 < t.support.sum() < 0.1 * t.support.size
    np.testing.assert_allclose(
        -t.displacement_nm[t.support] * noiseless32.geometry.h_nm, inside, rtol=1e-12
    )


def test_poisson_noise_is_reproducible_from_its_seed(geometry32):
    a = simulate(sim_config(noise=True), geometry32).intensity
    b = simulate(sim_config(noise=True), geometry32).intensity
    c = simulate(sim_config(noise=True).model_copy(update={"noise_seed": 7}), geometry32)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c.intensity)
    np.testing.assert_array_equal(a, np.round(a))


def test_crystal_too_large_for_the_grid_is_refused(geometry32):
    cfg = SimulateConfig(geometry=GEOMETRY_32, crystal=CrystalConfig(size_nm=2500))
    with pytest.raises(DyncdiError, match="oversampling"):
        simulate(cfg, geometry32)


def test_ellipsoid_without_displacement(geometry32):
    cfg = SimulateConfig(
        geometry=GEOMETRY_32,
        crystal=CrystalConfig(kind="ellipsoid", size_nm=700),
        displacement=DisplacementConfig(kind="none"),
        noise=False,
    )
    d = simulate(cfg, geometry32)
    assert np.all(d.truth.phase == 0)
    # a real, centrosymmetric object has a centrosymmetric diffraction pattern
    i = np.fft.ifftshift(d.intensity)
    flipped = np.roll(np.flip(i), 1, axis=(0, 1, 2))
    np.testing.assert_allclose(i, flipped, rtol=1e-3, atol=1e-3 * i.max())


def test_a_dataset_simulated_with_the_dynamical_model_records_its_rocking_offset():
    from dyncdi_hpc.config import GeometryConfig
    from dyncdi_hpc.data.measurement import read_measurement
    from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical
    from dyncdi_hpc.inputs import simulated_input
    from dyncdi_hpc.physics.dynamical import refraction_shift_rad

    geometry = GeometryConfig(
        energy_kev=9.0,
        shape=(16, 16, 16),
        rocking_step_deg=0.01,
        pixel_size_um=55.0,
        detector_distance_m=0.5,
    )
    cfg = SimulateConfig(geometry=geometry, crystal=CrystalConfig(size_nm=450.0), noise=False)
    ds = simulated_input(cfg.model_copy(update={"model": "dynamical"}), "datasets.thick")
    built = geometry.build()
    assert ds.attrs["truth_rocking_offset_rad"] == pytest.approx(refraction_shift_rad(built))
    expected = simulate_dynamical(cfg, built).data.intensity
    np.testing.assert_allclose(read_measurement(ds, "x").intensity, expected, rtol=1e-6)
    kinematical = simulated_input(cfg, "datasets.thin")
    assert ds.attrs["fingerprint"] != kinematical.attrs["fingerprint"]
    assert not np.allclose(read_measurement(kinematical, "x").intensity, expected, rtol=0.05)
