"""Displacement and strain along h, on the conjugate and the sample grid."""

import numpy as np
import pytest
from scipy.ndimage import binary_erosion

from dyncdi_hpc.analysis.frames import to_sample_frame
from dyncdi_hpc.analysis.strain import displacement_along_h, strain_along_h
from dyncdi_hpc.physics.frames import sample_grid

EPS = 1e-3


def _uniform_strain(geometry, support, offset):
    """Object with u_z = EPS * z: phase -|h| EPS z + offset, wrapping across pi many times."""
    z = geometry.voxel_positions_nm()[..., 2]
    return support * np.exp(1j * (geometry.phase_rad(EPS * z) + offset))


@pytest.mark.parametrize("offset", [0.0, np.pi - 0.05])
def test_uniform_strain_is_recovered_on_the_conjugate_grid(geometry32, noiseless32, offset):
    support = noiseless32.truth.support
    obj = _uniform_strain(geometry32, support, offset)
    phase = np.angle(obj)
    assert np.ptp(phase[support]) > 6.0  # the phase wraps inside the crystal
    strain = strain_along_h(obj, support, geometry32.real_basis, geometry32.h_nm)
    interior = binary_erosion(support, iterations=1)
    assert np.all(np.abs(strain[interior] - EPS) < 5e-5)
    assert np.all(np.isnan(strain[~support]))
    # a naive gradient of the wrapped phase has artefacts where it wraps
    naive = -np.gradient(phase, axis=1) / geometry32.voxel_size_nm[1] / geometry32.h_nm
    assert np.max(np.abs(naive[interior] - EPS)) > EPS  # larger than the strain itself


def test_uniform_strain_on_an_orthogonal_grid(geometry32):
    grid = sample_grid(geometry32, voxel_nm=40.0)
    r = grid.positions_nm()
    support = np.linalg.norm(r / [400.0, 350.0, 300.0], axis=-1) < 1.0
    obj = support * np.exp(1j * (geometry32.phase_rad(EPS * r[..., 2]) + np.pi - 0.05))
    strain = strain_along_h(obj, support, grid.basis, geometry32.h_nm)
    interior = binary_erosion(support, iterations=1)
    assert interior.sum() > 500
    assert np.all(np.abs(strain[interior] - EPS) < 5e-5)


def test_strain_map_keeps_its_value_in_the_sample_frame(geometry32, noiseless32):
    support = noiseless32.truth.support
    obj = _uniform_strain(geometry32, support, np.pi - 0.05)
    strain = strain_along_h(obj, support, geometry32.real_basis, geometry32.h_nm)
    inside = np.isfinite(strain)
    grid = sample_grid(geometry32, voxel_nm=40.0)
    s_strain = to_sample_frame(np.where(inside, strain, 0.0), geometry32, grid)
    s_inside = to_sample_frame(inside.astype(float), geometry32, grid) > 0.999
    assert s_inside.sum() > 500
    assert np.all(np.abs(s_strain[s_inside] - EPS) < 5e-5)


def test_displacement_is_minus_phase_over_h_unwrapped(geometry32, noiseless32):
    support = noiseless32.truth.support
    obj = _uniform_strain(geometry32, support, 1.0)
    u = displacement_along_h(np.angle(obj), support, geometry32.h_nm)
    z = geometry32.voxel_positions_nm()[..., 2]
    want = EPS * (z - z[support].mean())
    np.testing.assert_allclose(u[support], want[support], atol=1e-6)
    assert np.all(np.isnan(u[~support]))
