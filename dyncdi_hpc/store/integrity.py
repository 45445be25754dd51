"""Integrity of stored groups: a checksum of every data variable written with the group and
verified when it is read, and the errors that name a damaged group and why.

A chunk that is truncated fails to decompress; one that is deleted reads back as the array's
fill value, silently; a zarr.json that is deleted hides the group. The first two are caught
by the checksums (or the read), the third by the listing (a folder without its zarr.json).
"""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..errors import DyncdiError
from ..identity import array_digest

CHECKSUMS = "checksums"


class DamagedGroup(DyncdiError):
    """A stored group that cannot be read back as written: its path and the reason."""

    def __init__(self, where: str, reason: str) -> None:
        self.where = where
        self.reason = reason
        super().__init__(where, f"damaged: {reason}", "it is quarantined and recomputed on rerun")

    def __reduce__(self):
        return (type(self), (self.where, self.reason))


def canonical(values: np.ndarray) -> np.ndarray:
    """values with every NaN the same NaN (a round trip through a file may change payloads)."""
    values = np.asarray(values)
    if values.dtype.kind in "fc":
        return np.where(np.isnan(values), np.nan, values).astype(values.dtype)
    return values


def checksums(ds: xr.Dataset) -> dict[str, str]:
    """SHA-256 of each data variable's values (NaNs made canonical), by name."""
    return {name: array_digest(canonical(var.values)) for name, var in ds.data_vars.items()}


def verify(ds: xr.Dataset, where: str) -> None:
    """Raise DamagedGroup unless every recorded checksum matches the values read back."""
    recorded = ds.attrs.get(CHECKSUMS) or {}
    for name, digest in recorded.items():
        if name not in ds.data_vars:
            raise DamagedGroup(where, f"variable {name!r} is missing")
        if array_digest(canonical(ds[name].values)) != digest:
            raise DamagedGroup(where, f"the values of {name!r} differ from their checksum")
