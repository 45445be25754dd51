"""Displacement and strain along the measured Q of a measured (sheared) scan, against
analytic linear displacement fields given in the lab frame."""

import numpy as np
import pytest

from dyncdi_hpc.analysis.frames import to_frame
from dyncdi_hpc.analysis.strain import displacement_along_q, strain_along_q
from dyncdi_hpc.physics.frames import conjugate_positions_nm
from tests.analysis.test_frames_measured import scan54


@pytest.fixture(scope="module")
def measured():
    return scan54(48)


def _crystal(geometry):
    """Lab positions of the conjugate grid (nm) and a tilted ellipsoidal support inside it."""
    r = conjugate_positions_nm(geometry, "lab")
    support = np.linalg.norm(r / [380.0, 300.0, 240.0], axis=-1) < 1.0
    return r, support


def _object(geometry, u_lab_nm, support, offset=np.pi - 0.05):
    """psi = S exp(-i Q.u) with the measured Q at the peak (lab frame)."""
    q = np.asarray(geometry.frame.q_peak_lab)
    return support * np.exp(1j * (-(u_lab_nm @ q) + offset))


def test_the_measured_q_is_not_the_material_s(measured):
    assert measured.h_nm == pytest.approx(np.linalg.norm(measured.frame.q_peak_lab))
    assert abs(measured.h_nm * measured.d_spacing_nm / (2 * np.pi) - 1) > 1e-4


def test_uniform_strain_along_q_is_e_everywhere_inside_the_support(measured):
    e = 1e-3
    r, support = _crystal(measured)
    q_hat = measured.crystal_to_lab[:, 2]
    z = r @ q_hat  # the crystal frame's z, along the measured Q
    u = e * z[..., None] * q_hat  # lab-frame vector field, uniaxial along Q
    obj = _object(measured, u, support)
    assert np.ptp(np.angle(obj)[support]) > 6.0  # the phase wraps inside the crystal
    strain = strain_along_q(obj, support, measured)
    assert np.isfinite(strain[support]).all()
    np.testing.assert_allclose(strain[support], e, atol=1e-9)
    assert np.isnan(strain[~support]).all()
    displacement = displacement_along_q(np.angle(obj), support, measured)
    np.testing.assert_allclose(
        displacement[support], e * (z[support] - z[support].mean()), atol=1e-6
    )


def test_a_general_linear_displacement_gives_its_gradient_projected_on_q(measured):
    """u = G r (G any 3x3 gradient, lab frame): the strain along Q is q^T G q, although the
    phase varies along every axis of the sheared grid."""
    rng = np.random.default_rng(3)
    grad = rng.normal(0.0, 1e-3, (3, 3))
    r, support = _crystal(measured)
    obj = _object(measured, r @ grad.T, support)
    q_hat = measured.crystal_to_lab[:, 2]
    strain = strain_along_q(obj, support, measured)
    assert np.isfinite(strain[support]).all()
    np.testing.assert_allclose(strain[support], q_hat @ grad @ q_hat, atol=1e-9)


def test_the_strain_map_keeps_its_value_in_every_frame(measured):
    e = -5e-4
    r, support = _crystal(measured)
    q_hat = measured.crystal_to_lab[:, 2]
    obj = _object(measured, e * (r @ q_hat)[..., None] * q_hat, support)
    strain = strain_along_q(obj, support, measured)
    inside = np.isfinite(strain)
    for frame in ("lab", "crystal", "sample"):
        values = to_frame(np.where(inside, strain, 0.0), measured, frame, voxel_nm=30.0)
        full = to_frame(inside.astype(float), measured, frame, voxel_nm=30.0).values > 1 - 1e-9
        assert full.sum() > 1000
        np.testing.assert_allclose(values.values[full], e, atol=1e-9)
