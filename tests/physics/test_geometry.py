import numpy as np
import pytest

from dyncdi_hpc.errors import DyncdiError, field_path
from dyncdi_hpc.physics.geometry import make_geometry

BASE = dict(
    energy_kev=9.0,
    material="Au",
    hkl=(1, 1, 1),
    shape=(32, 40, 48),
    rocking_step_rad=np.radians(0.005),
    pixel_size_m=55e-6,
    detector_distance_m=1.0,
)


def test_bragg_angle_of_au111_at_9kev():
    g = make_geometry(**BASE)
    # d111 = a / sqrt(3) with a = 0.40782 nm; lambda = 12.398/9 = 0.13776 nm -> 17.01 deg
    assert np.degrees(g.bragg_angle_rad) == pytest.approx(17.0101, abs=1e-3)
    assert g.h_nm == pytest.approx(2 * np.pi * np.sqrt(3) / 0.40782)


def test_real_and_reciprocal_bases_are_dual():
    g = make_geometry(**BASE)
    product = g.real_basis.T @ g.q_basis
    expected = 2 * np.pi * np.diag(1.0 / np.asarray(BASE["shape"]))
    np.testing.assert_allclose(product, expected, atol=1e-12)


def test_rocking_and_detector_axes_are_sheared():
    g = make_geometry(**BASE)
    b0, b1 = g.q_basis[:, 0], g.q_basis[:, 1]
    cos = b0 @ b1 / (np.linalg.norm(b0) * np.linalg.norm(b1))
    assert cos == pytest.approx(-np.sin(g.bragg_angle_rad))


def test_detector_voxel_size_is_lambda_distance_over_aperture():
    g = make_geometry(**BASE)
    # along the detector column axis (normal to the scattering plane) there is no shear
    expected = g.wavelength_nm * BASE["detector_distance_m"] / (48 * BASE["pixel_size_m"])
    assert g.voxel_size_nm[2] == pytest.approx(expected)


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"material": "Unobtainium"}, "geometry.material", "unknown material"),
        ({"hkl": (1, 0, 0)}, "geometry.hkl", "forbidden"),
        ({"hkl": (0, 0, 0)}, "geometry.hkl", "not a reflection"),
        ({"energy_kev": 2.0}, "geometry.energy_kev", "Bragg cutoff"),
        ({"shape": (32, 32)}, "geometry.shape", "three sizes"),
        ({"pixel_size_m": -1.0}, "geometry.pixel_size_m", "positive"),
    ],
)
def test_bad_geometry_names_the_field(change, field, words):
    # physics names the parameter; the edge that read the geometry attaches its path
    with pytest.raises(DyncdiError) as err, field_path("geometry"):
        make_geometry(**{**BASE, **change})
    assert err.value.field == field
    assert words in str(err.value)


def test_allowed_weak_reflection_of_zincblende():
    # GaAs 200 is allowed (f_Ga - f_As), Si 200 is forbidden
    make_geometry(**{**BASE, "material": "GaAs", "hkl": (2, 0, 0)})
    with pytest.raises(DyncdiError, match="forbidden"):
        make_geometry(**{**BASE, "material": "Si", "hkl": (2, 0, 0)})


def test_geometry_is_hashable_and_round_trips_through_attrs():
    g = make_geometry(**BASE)
    assert hash(g) == hash(make_geometry(**BASE))
    assert type(g).from_attrs(g.to_attrs()) == g
