"""Conjugate grid -> orthogonal sample frame: shape, orientation and voxel sizes."""

import jax
import numpy as np
import pytest

from dyncdi_hpc.analysis.frames import to_sample_frame
from dyncdi_hpc.config import CrystalConfig, ReconParams, SimulateConfig
from dyncdi_hpc.data.simulate import crystal_shape, simulate
from dyncdi_hpc.merge.align import align, dice
from dyncdi_hpc.physics.frames import conjugate_indices, sample_grid
from dyncdi_hpc.physics.objects import support_of
from dyncdi_hpc.recon.pipeline import reconstruct
from tests.conftest import GEOMETRY_32

# anisotropic, so that a swapped or mirrored axis would show
CRYSTAL = CrystalConfig(size_nm=800, aspect=(1.3, 1.0, 0.8))


@pytest.fixture(scope="module")
def elongated():
    geometry = GEOMETRY_32.build()
    cfg = SimulateConfig(geometry=GEOMETRY_32, crystal=CRYSTAL, noise=False)
    return geometry, simulate(cfg, geometry)


def _truth_in_sample_frame(geometry, grid):
    return crystal_shape(grid.positions_nm(), CRYSTAL, geometry.hkl, grid.voxel_nm) > 0.5


def _extents_nm(mask, grid):
    """Standard deviation of the voxel positions along x, y, z (nm)."""
    return grid.positions_nm()[mask].std(axis=0)


def test_grid_maps_the_conjugate_centre_to_the_sample_origin(elongated):
    geometry, _ = elongated
    grid = sample_grid(geometry)
    assert grid.voxel_nm == pytest.approx(min(geometry.voxel_size_nm))
    m = conjugate_indices(geometry, grid)
    centre = tuple(n // 2 for n in grid.shape)
    np.testing.assert_allclose(m[(slice(None), *centre)], np.asarray(geometry.shape) // 2)
    # one voxel along z moves by a_j-components of (0, 0, v): check against the basis
    step = m[(slice(None), centre[0], centre[1], centre[2] + 1)] - m[(slice(None), *centre)]
    np.testing.assert_allclose(geometry.real_basis @ step, [0, 0, grid.voxel_nm], atol=1e-9)


def test_transformed_truth_overlaps_the_crystal_in_the_sample_frame(elongated):
    geometry, data = elongated
    grid = sample_grid(geometry)
    amp = to_sample_frame(data.truth.amplitude, geometry, grid)
    truth = _truth_in_sample_frame(geometry, grid)
    assert dice(amp > 0.5, truth) >= 0.9
    # physical sizes along x, y, z (elongated along x, short along z) within 2%
    got, want = _extents_nm(amp > 0.5, grid), _extents_nm(truth, grid)
    np.testing.assert_allclose(got, want, rtol=0.02)
    assert want[0] > want[1] > want[2]
    # complex resampling keeps the phase of a smooth field
    obj = to_sample_frame(data.truth.amplitude * np.exp(1j * data.truth.phase), geometry, grid)
    assert np.abs(obj).max() <= 1.0 + 1e-9


@pytest.mark.slow
def test_a_real_reconstruction_lands_on_the_crystal_with_physical_voxels(elongated):
    geometry, data = elongated
    truth_obj = data.truth.amplitude * np.exp(1j * data.truth.phase)
    rec = reconstruct(data.intensity, None, geometry, ReconParams(), key=jax.random.key(0))
    obj = align(rec.obj, truth_obj).obj
    grid = sample_grid(geometry, voxel_nm=60.0)
    resampled = to_sample_frame(obj, geometry, grid)
    support = support_of(resampled)
    truth = _truth_in_sample_frame(geometry, grid)
    assert dice(support, truth) >= 0.9
    np.testing.assert_allclose(_extents_nm(support, grid), _extents_nm(truth, grid), rtol=0.02)
    assert grid.basis[2, 2] == 60.0
