import jax
import jax.numpy as jnp
import numpy as np

from dyncdi_hpc.physics.kinematical import forward
from dyncdi_hpc.physics.objects import CrystalParams, object_of


def test_forward_is_the_squared_unitary_dft(geometry32):
    rng = np.random.default_rng(0)
    logits = rng.normal(size=geometry32.shape).astype(np.float32)
    phase = rng.uniform(-3, 3, size=geometry32.shape).astype(np.float32)
    params = CrystalParams(jnp.asarray(logits), jnp.asarray(phase))
    got = np.asarray(forward(params, geometry32))
    obj = 1 / (1 + np.exp(-logits.astype(float))) * np.exp(1j * phase)
    expected = np.abs(np.fft.fftn(obj, norm="ortho")) ** 2
    np.testing.assert_allclose(got, expected, rtol=2e-4, atol=1e-4 * expected.max())
    # Parseval: the unitary transform conserves the object's power
    power = float(np.sum(np.abs(np.asarray(object_of(params))) ** 2))
    assert abs(float(got.sum()) - power) / power < 1e-4


def test_simulated_intensity_is_forward_of_the_truth(noiseless32, geometry32):
    t = noiseless32.truth
    with jax.enable_x64(True):
        frac = np.clip(t.amplitude, 1e-12, 1 - 1e-12)
        params = CrystalParams(jnp.asarray(np.log(frac / (1 - frac))), jnp.asarray(t.phase))
        model = np.fft.fftshift(np.asarray(forward(params, geometry32)))
    model *= noiseless32.intensity.max() / model.max()
    np.testing.assert_allclose(model, noiseless32.intensity, rtol=1e-3, atol=1e-2)


def test_translation_leaves_intensity_unchanged(geometry32, noiseless32):
    t = noiseless32.truth
    obj = t.amplitude * np.exp(1j * t.phase)
    shifted = np.roll(obj, (3, -2, 1), axis=(0, 1, 2))
    a = np.abs(np.fft.fftn(obj)) ** 2
    b = np.abs(np.fft.fftn(shifted)) ** 2
    np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-9 * a.max())
