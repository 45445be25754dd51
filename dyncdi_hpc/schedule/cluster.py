"""Starting the cluster a profile describes: start_cluster dispatches by the profile's kind to a
Dask LocalCluster (started here) or a SLURMCluster (schedule.slurm), and tls_security gives the
temporary TLS credentials either kind uses when its profile says ``tls: true``.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import shutil
import tempfile
import weakref
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DyncdiError
from . import affinity, compile_cache
from .profiles import ClusterProfile
from .slurm import start_slurm

if TYPE_CHECKING:
    from distributed import Client
    from distributed.security import Security


def tls_security(folder: Path | None = None) -> Security:
    """Temporary self-signed TLS credentials for scheduler, workers and this client.

    Only processes given these credentials (the workers this driver starts) can join or
    connect: with `tls: true` in a profile nobody else on a shared cluster can submit work to
    the scheduler or read results off the wire. folder: write the certificates and keys there
    (files of mode 0600, for workers on other nodes) and return a Security naming them; None:
    keep them in memory (a LocalCluster's workers inherit them).
    """
    from distributed.security import Security

    try:
        security = Security.temporary()
    except ImportError as exc:
        raise DyncdiError(
            "tls", f"TLS needs the cryptography package ({exc})", "pip install cryptography"
        ) from None
    if folder is None:
        return security
    files = {}
    for name in TLS_FILES:
        path = folder / f"{name}.pem"
        fd = os.open(path, os.O_CREAT | os.O_TRUNC | os.O_WRONLY, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(getattr(security, name))
        files[name] = str(path)
    return Security(require_encryption=True, **files)


TLS_FILES = (
    "tls_ca_file",
    "tls_client_key",
    "tls_client_cert",
    "tls_scheduler_key",
    "tls_scheduler_cert",
    "tls_worker_key",
    "tls_worker_cert",
)


def start_cluster(profile: ClusterProfile, secrets: Path | None = None) -> Client:
    """Start the profile's cluster; returns a distributed.Client connected to it.

    secrets: a private folder (made 0700) on a file system the worker nodes share, for the
    TLS files of SLURM workers (a fresh temporary folder when None); removed with the client.
    """
    if profile.kind == "slurm":
        folder = private_folder(secrets)
        client = start_slurm(profile, functools.partial(tls_security, folder))
        weakref.finalize(client, shutil.rmtree, folder, True)
        return client
    return _start_local(profile)


def private_folder(path: Path | None) -> Path:
    """path (or a new temporary folder) created readable by this user only."""
    if path is None:
        return Path(tempfile.mkdtemp(prefix="dyncdi-tls-"))
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(path, 0o700)
    return path


def _start_local(profile: ClusterProfile) -> Client:
    """LocalCluster from the profile's ``local:`` keyword arguments, worker_env and tls."""
    from distributed import Client, LocalCluster

    kwargs = dict(profile.settings["local"])
    worker_env = compile_cache.worker_env(profile.settings)
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
    client = Client(cluster)
    if profile.settings.get("pin_cores", True) and kwargs.get("processes", True):
        if affinity.supported():  # before any task: JAX sizes its pool when it first runs
            client.register_plugin(affinity.PinCores(len(cluster.worker_spec)))
    return client


# a worker process of a JAX reconstruction can take several seconds to exit on a loaded machine;
# distributed's nanny kills it after 4 s (with a warning, and heartbeat tracebacks from workers
# whose scheduler is already gone)
WORKER_EXIT_S = 60.0


def close_cluster(client: Client) -> None:
    """Close the client, then a LocalCluster's workers (waiting up to WORKER_EXIT_S for each to
    exit), then the cluster: an orderly shutdown without kill warnings."""
    from distributed import LocalCluster

    cluster = client.cluster
    with contextlib.suppress(Exception):  # a worker that is already gone has nothing to say
        client.run(_quiet_shutdown)
    client.close()
    if cluster is None:
        return
    if isinstance(cluster, LocalCluster):
        cluster.sync(_close_workers, cluster, WORKER_EXIT_S)
    cluster.close()


def _quiet_shutdown() -> None:
    """On a worker about to be closed, whose results are already in the store: silence
    distributed's shutdown races below CRITICAL (a heartbeat that meets the scheduler's closed
    stream is logged as an ERROR with a traceback on a loaded machine)."""
    logging.getLogger("distributed").setLevel(logging.CRITICAL)


async def _close_workers(cluster, timeout: float) -> None:
    await asyncio.gather(*(w.close(timeout=timeout) for w in cluster.workers.values()))
