"""The report's model of the data: the project's far field, blurred by the members' coherence
widths as the fit blurred it, least-squares scaled; its Fourier error as the tasks score."""

import jax.numpy as jnp
import numpy as np
import pytest

from dyncdi_hpc.physics.kinematical import centred_far_field
from dyncdi_hpc.recon.coherence import blur
from dyncdi_hpc.report.model import fourier_error, members_widths, modelled_intensity
from tests.report.test_parts import WIDTHS, _crystal


@pytest.fixture(scope="module")
def crystal():
    return _crystal((16, 32, 32))


def test_the_model_is_the_scaled_far_field_without_widths(crystal):
    intensity = np.abs(centred_far_field(crystal)) ** 2
    measured = 40.0 * intensity
    mask = np.zeros(measured.shape, bool)
    mask[:, :4] = True
    measured[mask] = 1e9  # masked voxels leave the scale alone
    model = modelled_intensity(crystal, measured, mask)
    np.testing.assert_allclose(model, 40.0 * intensity, rtol=1e-6)
    assert fourier_error(model, measured, mask) == pytest.approx(0.0, abs=1e-12)


def test_coherence_widths_blur_the_model_in_fft_order_as_the_fit_did(crystal):
    intensity = np.abs(centred_far_field(crystal)) ** 2
    widths = np.asarray(WIDTHS, np.float32)
    fft_order = jnp.asarray(np.fft.ifftshift(intensity), jnp.float32)
    blurred = np.fft.fftshift(np.asarray(blur(fft_order, jnp.asarray(widths)), float))
    model = modelled_intensity(crystal, blurred, None, widths=widths)
    np.testing.assert_allclose(model, blurred, rtol=1e-4, atol=1e-6 * blurred.max())
    coherent = modelled_intensity(crystal, blurred, None)
    assert fourier_error(model, blurred, None) < 0.1 * fourier_error(coherent, blurred, None)


def test_the_fourier_error_is_the_tasks_normalisation():
    measured = np.array([4.0, 9.0, 16.0, 100.0])
    model = np.array([1.0, 9.0, 25.0, 0.0])
    mask = np.array([False, False, False, True])
    # ((1 - 2)^2 + 0 + (5 - 4)^2) / (4 + 9 + 16)
    assert fourier_error(model, measured, mask) == pytest.approx(2.0 / 29.0)


class _Store:
    """What members_widths reads of a store: the results' metrics."""

    def __init__(self, metrics: dict[str, dict]):
        self.metrics = metrics

    def result_attrs(self, task: str) -> dict:
        return {"metrics": self.metrics[task]}


def test_members_widths_are_their_median_or_none_when_coherent():
    widths = {f"coherence_width_{j}": w for j, w in enumerate(WIDTHS)}
    store = _Store({"a": dict(widths), "b": {k: 3 * v for k, v in widths.items()}, "c": widths})
    np.testing.assert_allclose(members_widths(store, {"members": ["a", "b", "c"]}), WIDTHS)
    assert members_widths(_Store({"a": {"error": 0.1}}), {"members": ["a"]}) is None
