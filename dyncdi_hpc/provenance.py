"""Provenance recorded with every stored group: versions, host, time."""

from __future__ import annotations

import datetime as _dt
import importlib.metadata
import os
import platform
import socket
import sys


def package_version(name: str = "dyncdi-hpc") -> str:
    """Installed version of a distribution, or 'unknown'."""
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def now_iso() -> str:
    """Current UTC time, ISO 8601 with seconds."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def provenance() -> dict:
    """Where and with what a group was written."""
    return {
        "dyncdi_hpc_version": package_version(),
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "written_at": now_iso(),
        "versions": {
            name: package_version(name)
            for name in ("jax", "jaxlib", "optax", "numpy", "dask", "distributed", "zarr", "xarray")
        },
    }
