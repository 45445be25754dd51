"""Scheduler traffic over TLS: a sweep completes; a client without the certificate is refused."""

import pytest
from click.testing import CliRunner
from distributed import Client
from distributed.security import Security

from dyncdi_hpc.cli import main
from dyncdi_hpc.schedule.cluster import start_cluster
from dyncdi_hpc.schedule.profiles import load_profile
from dyncdi_hpc.store.zarr_store import Store
from tests.conftest import write_spec

pytestmark = [pytest.mark.cluster, pytest.mark.slow]

TLS = ("tls=true", "local.n_workers=2", "local.dashboard_address=127.0.0.1:0")


def test_sweep_over_tls_completes(tmp_path):
    store = tmp_path / "s.zarr"
    spec = write_spec(tmp_path / "s.yaml", store, sweep={"seed": 2})
    args = ["sweep", str(spec)] + [a for kv in TLS for a in ("--set", kv)]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 0, result.output
    assert "this run: done 2" in result.output
    assert len(Store.open(store).result_ids()) == 2


def test_a_client_without_the_certificate_cannot_connect():
    client = start_cluster(load_profile("local", TLS))
    try:
        address = client.scheduler.address
        assert address.startswith("tls://")
        assert client.submit(sum, [1, 2]).result() == 3  # the driver's own client works
        # someone else's certificate, not signed by this cluster's authority: refused
        with pytest.raises((OSError, TimeoutError)):
            Client(address, security=Security.temporary(), timeout="5s")
        # plain TCP to the same port: refused too
        with pytest.raises((OSError, TimeoutError)):
            Client(address.replace("tls://", "tcp://"), timeout="5s")
    finally:
        cluster = client.cluster
        client.close()
        cluster.close()
