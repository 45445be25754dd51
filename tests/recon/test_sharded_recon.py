"""One dynamical reconstruction over several devices (base.devices): rocking angles sharded,
gradients summed; on CPU with host devices (--xla_force_host_platform_device_count)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

from dyncdi_hpc.config import ReconParams
from dyncdi_hpc.config.task import TaskSpec
from dyncdi_hpc.errors import ParameterError
from dyncdi_hpc.physics.objects import CrystalParams
from dyncdi_hpc.recon.stages import step_config
from tests.recon.test_dynamical_recon import GEOMETRY_16

_RUN = textwrap.dedent(
    """
    import json
    import jax, numpy as np
    from dyncdi_hpc.config import CrystalConfig, ReconParams, SimulateConfig
    from dyncdi_hpc.data.simulate_dynamical import simulate_dynamical
    from dyncdi_hpc.recon.pipeline import reconstruct
    from tests.recon.test_dynamical_recon import GEOMETRY_16

    geometry = GEOMETRY_16.build()
    cfg = SimulateConfig(geometry=GEOMETRY_16, crystal=CrystalConfig(size_nm=450.0), noise=False)
    data = simulate_dynamical(cfg, geometry).data
    out = {"devices": len(jax.devices())}
    for devices in (1, 2):
        params = ReconParams(model="dynamical", recipe="20*ER+40*HIO+20*ER", ad_steps=20,
                             log_every=10, devices=devices)
        rec = reconstruct(data.intensity, None, geometry, params, key=jax.random.key(0))
        out[devices] = {"obj": [np.abs(rec.obj).tolist(), np.angle(rec.obj).tolist()],
                        "loss": rec.ad_loss.tolist(),
                        "offset": rec.metrics["rocking_offset_rad"]}
    print(json.dumps(out))
    """
)


@pytest.mark.slow
def test_two_devices_reconstruct_what_one_does():
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "JAX_PLATFORMS": "cpu",
    }
    run = subprocess.run(
        [sys.executable, "-c", _RUN], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stderr[-3000:]
    out = json.loads(run.stdout.strip().splitlines()[-1])
    assert out["devices"] == 2
    one, two = out["1"], out["2"]
    # the same AD steps to float32 rounding: the losses, the offset, the object
    np.testing.assert_allclose(two["loss"], one["loss"], rtol=1e-4)
    assert two["offset"] == pytest.approx(one["offset"], rel=1e-3, abs=1e-9)
    amp_one, amp_two = np.asarray(one["obj"][0]), np.asarray(two["obj"][0])
    assert np.max(np.abs(amp_two - amp_one)) < 1e-3 * np.max(amp_one)
    assert len(one["loss"]) == 20 and one["loss"][-1] < one["loss"][0]


def test_more_devices_than_there_are_is_a_clear_error(geometry32):
    cfg = step_config(geometry32, ReconParams(model="dynamical", devices=len(jax.devices()) + 1))
    crystal = CrystalParams(jax.numpy.zeros(geometry32.shape), jax.numpy.zeros(geometry32.shape))
    with pytest.raises(ParameterError, match=r"devices: \d+ devices asked for, \d+ available"):
        cfg.model(crystal, geometry32)


def test_devices_are_not_in_task_ids():
    base = {"dataset": "d", "fingerprint": "f", "seed": 0}
    one = TaskSpec(**base, params=ReconParams(model="dynamical"))
    four = TaskSpec(**base, params=ReconParams(model="dynamical", devices=4))
    assert one.task_id == four.task_id


def test_one_device_keeps_the_unsharded_model():
    assert step_config(GEOMETRY_16.build(), ReconParams(model="dynamical")).model.devices == 1
