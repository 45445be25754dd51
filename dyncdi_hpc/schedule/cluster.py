"""Starting the cluster a profile describes: start_cluster dispatches by the profile's kind to a
Dask LocalCluster (started here) or a SLURMCluster (schedule.slurm), and tls_security gives the
temporary TLS credentials either kind uses when its profile says ``tls: true``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import DyncdiError
from .profiles import ClusterProfile
from .slurm import start_slurm

if TYPE_CHECKING:
    from distributed import Client
    from distributed.security import Security


def tls_security() -> Security:
    """Temporary self-signed TLS credentials for scheduler, workers and this client.

    Only processes given these credentials (the workers this driver starts) can join or
    connect: with `tls: true` in a profile nobody else on a shared cluster can submit work to
    the scheduler or read results off the wire.
    """
    from distributed.security import Security

    try:
        return Security.temporary()
    except ImportError as exc:
        raise DyncdiError(
            "tls", f"TLS needs the cryptography package ({exc})", "pip install cryptography"
        ) from None


def start_cluster(profile: ClusterProfile) -> Client:
    """Start the profile's cluster; returns a distributed.Client connected to it."""
    if profile.kind == "slurm":
        return start_slurm(profile, tls_security)
    return _start_local(profile)


def _start_local(profile: ClusterProfile) -> Client:
    """LocalCluster from the profile's ``local:`` keyword arguments, worker_env and tls."""
    from distributed import Client, LocalCluster

    kwargs = dict(profile.settings["local"])
    worker_env = {k: str(v) for k, v in profile.settings.get("worker_env", {}).items()}
    if worker_env and kwargs.get("processes", True):
        kwargs["env"] = {**worker_env, **kwargs.get("env", {})}
    if profile.settings.get("tls"):
        kwargs.update(security=tls_security(), protocol="tls://")
    try:
        cluster = LocalCluster(**kwargs)
    except TypeError as exc:
        raise DyncdiError(
            f"{profile.path}: dyncdi.cluster.local", str(exc), "remove or fix that key"
        ) from None
    except Exception as exc:
        raise DyncdiError(
            "cluster", f"the {profile.name!r} cluster did not start: {exc}", "check the profile"
        ) from None
    return Client(cluster)
