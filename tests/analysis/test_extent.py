"""A support's extent along the lab axes against closed forms: boxes and ellipsoids on
orthogonal and sheared grids, and the package's own voxel positions on a scan's grid."""

from __future__ import annotations

import numpy as np
import pytest

from dyncdi_hpc.analysis.extent import support_extent_nm


def _box(shape: tuple[int, int, int], size: tuple[int, int, int], at=(0, 0, 0)) -> np.ndarray:
    support = np.zeros(shape, bool)
    support[tuple(slice(a, a + n) for a, n in zip(at, size, strict=True))] = True
    return support


def test_box_on_an_orthogonal_grid():
    basis = np.diag([10.0, 20.0, 30.0])  # columns: the steps a0, a1, a2 (nm)
    extent = support_extent_nm(_box((16, 16, 16), (5, 3, 7), at=(2, 9, 0)), basis)
    assert extent == pytest.approx({"x": 50.0, "y": 60.0, "z": 210.0})
    assert support_extent_nm(_box((8, 8, 8), (1, 1, 1), at=(7, 0, 3)), basis) == pytest.approx(
        {"x": 10.0, "y": 20.0, "z": 30.0}
    )


def test_box_on_a_sheared_rotated_grid():
    # a box of n_j voxels is the parallelepiped of edges n_j a_j: along axis e it spans
    # sum_j n_j |a_j . e|, whatever the signs of the shear
    sheared = np.array([[10.0, -4.0, 0.0], [0.0, 20.0, 6.0], [3.0, 0.0, 30.0]])
    c, s = np.cos(0.7), np.sin(0.7)
    rotation = np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]])
    sizes = np.array([5, 3, 7])
    for basis in (sheared, rotation @ sheared):
        extent = support_extent_nm(_box((16, 16, 16), tuple(sizes), at=(4, 1, 6)), basis)
        expected = np.abs(basis) @ sizes
        assert [extent[a] for a in "xyz"] == pytest.approx(expected.tolist())


def test_ellipsoid_on_an_orthogonal_grid():
    steps = np.array([8.0, 11.0, 5.0])
    semi = np.array([60.0, 95.0, 41.0])  # nm
    n = 48
    m = np.indices((n, n, n)) - n // 2
    r = m * steps[:, None, None, None]
    support = (((r / semi[:, None, None, None]) ** 2).sum(axis=0)) <= 1.0
    extent = support_extent_nm(support, np.diag(steps))
    # the farthest centres on each axis sit floor(semi / step) voxels out, both sides
    expected = (2 * np.floor(semi / steps) + 1) * steps
    assert [extent[a] for a in "xyz"] == pytest.approx(expected.tolist())


def test_sheared_grid_of_a_scan_matches_its_voxel_positions(geometry32):
    # the basis convention is the package's: Geometry.voxel_positions_nm, turned to the lab
    support = np.zeros(geometry32.shape, bool)
    support[10:20, 12:17, 14:25] = True
    support[20, 5, 26] = True  # a stray voxel far out sets the extent of an irregular support
    positions = geometry32.voxel_positions_nm()[support] @ geometry32.crystal_to_lab.T
    basis = geometry32.real_basis_lab
    extent = support_extent_nm(support, basis)
    centres = positions.max(axis=0) - positions.min(axis=0)
    voxel = np.abs(basis).sum(axis=1)
    assert [extent[a] for a in "xyz"] == pytest.approx((centres + voxel).tolist())


def test_empty_support():
    assert support_extent_nm(np.zeros((4, 4, 4), bool), np.eye(3)) == {
        "x": 0.0,
        "y": 0.0,
        "z": 0.0,
    }
