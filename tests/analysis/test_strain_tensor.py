"""Displacement vector by least squares, the strain tensor and its xarray output."""

import numpy as np
import pytest
from scipy.ndimage import shift

from dyncdi_hpc.analysis.registration import remove_translation
from dyncdi_hpc.analysis.strain_tensor import (
    displacement_errors,
    least_squares_displacement,
    strain_dataset,
    strain_tensor,
)
from dyncdi_hpc.errors import DyncdiError
from dyncdi_hpc.physics.frames import SampleGrid
from dyncdi_hpc.physics.resample import check_tensor_determined, h_vector_nm, reflection_rank

GRID = SampleGrid((10, 12, 9), 50.0)


def _h(*hkls):
    return np.stack([h_vector_nm("Au", hkl) for hkl in hkls])


def _smooth_u(grid, seed=0):
    r = grid.positions_nm()
    rng = np.random.default_rng(seed)
    u = []
    for _ in range(3):
        c = rng.uniform(-100, 100, 3)
        u.append(0.05 * np.exp(-np.sum((r - c) ** 2, axis=-1) / (2 * 200.0**2)))
    return np.stack(u)


@pytest.mark.parametrize(
    "hkls", [[(1, 1, 1), (-1, 1, 1), (0, 0, 2)], [(1, 1, 1), (-1, 1, 1), (1, -1, 1), (0, 0, 2)]]
)
def test_least_squares_of_known_projections_reproduces_u(hkls):
    u = _smooth_u(GRID)
    h = _h(*hkls)
    projections = np.tensordot(h / np.linalg.norm(h, axis=1, keepdims=True), u, axes=1)
    projections[0, 0, 0, 0] = np.nan
    got = least_squares_displacement(projections, h)
    assert got.shape == u.shape
    assert np.all(np.isnan(got[:, 0, 0, 0]))
    np.testing.assert_allclose(got[:, 1:], u[:, 1:], atol=1e-12)


@pytest.mark.parametrize(
    "hkls, rank",
    [
        ([(1, 1, 1), (-1, 1, 1)], 2),
        ([(1, 1, 1), (-1, 1, 1), (0, 2, 2)], 2),  # 022 = 111 + -111: coplanar
        ([(1, 1, 1), (-1, -1, -1), (2, 2, 2)], 1),
    ],
)
def test_underdetermined_sets_are_refused_naming_the_field_and_the_fix(hkls, rank):
    h = _h(*hkls)
    assert reflection_rank(h) == rank
    with pytest.raises(DyncdiError) as err:
        check_tensor_determined(h, "multi.reflections")
    assert err.value.field == "multi.reflections"
    assert "underdetermined" in err.value.problem and "non-coplanar" in err.value.fix
    with pytest.raises(DyncdiError):
        least_squares_displacement(np.zeros((len(h), 2, 2, 2)), h)
    with pytest.raises(DyncdiError):
        strain_dataset(np.zeros((3, *GRID.shape)), np.ones(GRID.shape, bool), GRID, h)


def test_strain_of_a_linear_field_is_its_symmetric_gradient_everywhere_inside():
    grad = np.array([[1e-4, 2e-4, -1e-4], [0.0, -3e-4, 5e-5], [4e-4, 1e-4, 2e-4]])
    u = np.einsum("ik,xyzk->ixyz", grad, GRID.positions_nm())
    support = np.zeros(GRID.shape, bool)
    support[2:8, 3:9, 1:8] = True
    support[2, 3, 1] = False
    eps = strain_tensor(u, support, GRID.voxel_nm)
    want = 0.5 * (grad + grad.T)
    # central differences inside, one-sided at the faces: exact for a linear field
    np.testing.assert_allclose(eps[:, :, support], want[:, :, None] * np.ones(support.sum()))
    assert np.all(np.isnan(eps[:, :, ~support]))


def test_strain_dataset_has_sample_frame_coordinates_and_units():
    u = _smooth_u(GRID)
    support = np.zeros(GRID.shape, bool)
    support[2:8, 3:9, 1:8] = True
    ds = strain_dataset(u, support, GRID, _h((1, 1, 1), (-1, 1, 1), (0, 0, 2)))
    assert ds["strain"].dims == ("i", "j", "x", "y", "z")
    assert ds["displacement"].dims == ("component", "x", "y", "z")
    np.testing.assert_allclose(ds["x"].values, (np.arange(10) - 5) * 50.0)
    assert ds["x"].attrs["units"] == "nm" and ds["displacement"].attrs["units"] == "nm"
    eps = ds["strain"].values
    np.testing.assert_allclose(eps, np.swapaxes(eps, 0, 1), equal_nan=True)
    assert list(ds["i"].values) == ["x", "y", "z"]
    assert np.isfinite(ds["strain"].sel(i="x", j="z").values[support]).all()


def test_displacement_errors_ignore_a_rigid_translation():
    u = _smooth_u(GRID)
    region = np.ones(GRID.shape, bool)
    rms, span = displacement_errors(u + np.array([0.3, -1.0, 2.0])[:, None, None, None], u, region)
    np.testing.assert_allclose(rms, 0, atol=1e-12)
    np.testing.assert_allclose(span, np.ptp(u.reshape(3, -1), axis=1))


def test_remove_translation_undoes_a_known_shift():
    grid = SampleGrid((24, 24, 24), 50.0)
    r = np.linalg.norm(grid.positions_nm(), axis=-1)
    shape = np.clip(300 / 50 - r / 50 + 0.5, 0, 1)
    moved = shift(shape, (1.4, -0.6, 0.3), order=3)
    u = np.stack([moved] * 3)
    _, _, found = remove_translation(moved, u, shape)
    np.testing.assert_allclose(found, (-1.4, 0.6, -0.3), atol=0.1)
