"""The merged groups of a store as the exports and the report see them: on an orthogonal grid
in a frame (physics/frames.py), or on the reconstruction's own detector-conjugate grid, and
cropped to the support's bounding box."""

from __future__ import annotations

import numpy as np
import xarray as xr

from ..analysis.frames import merged_to_frame
from ..errors import DyncdiError
from ..physics.frames import check_frame
from ..physics.geometry import Geometry
from ..store.groups import GRID_DIMS
from ..store.zarr_store import Store

MARGIN_VOXELS = 3  # kept around the support's bounding box in every export


def merged_geometry(store: Store, key: str) -> Geometry:
    """The scan geometry of a merged group (its dataset's input geometry)."""
    attrs = store.merged_attrs(key)
    return Geometry.from_attrs(store.input_attrs(attrs["dataset"])["geometry"])


def frame_dataset(
    store: Store,
    key: str,
    frame: str = "sample",
    voxel_nm: float | None = None,
    margin: int | None = None,
) -> xr.Dataset:
    """A merged group of the store on the orthogonal grid in frame ("lab", "crystal",
    "sample"): dims x, y, z (nm), attrs naming the frame; with margin, only the support's
    bounding box plus margin voxels (analysis.frames.merged_to_frame)."""
    check_frame(frame)
    ds, geometry = store.read_merged(key), merged_geometry(store, key)
    return merged_to_frame(ds, geometry, frame, voxel_nm, margin)


def sample_frame(store: Store, key: str, voxel_nm: float | None = None) -> xr.Dataset:
    """A merged group of the store on the orthogonal sample grid (dims x, y, z; nm)."""
    return frame_dataset(store, key, "sample", voxel_nm)


def grid_dataset(store: Store, key: str) -> xr.Dataset:
    """A merged group's volume fields on its conjugate grid (dims x0, x1, x2, index coords),
    float32 (support bool), without interpolation."""
    ds = store.read_merged(key)
    fields = {
        name: var.variable.astype(bool if var.dtype == bool else np.float32)
        for name, var in ds.data_vars.items()
        if var.dims == GRID_DIMS
    }
    # index coordinates: the writers place voxels by index times the frame's steps
    index = {d: np.arange(n) for d, n in zip(GRID_DIMS, ds["support"].shape, strict=True)}
    return xr.Dataset(fields, coords=index, attrs={"key": key})


def export_keys(store: Store, keys: list[str] | None) -> list[str]:
    """The merged groups to export: keys (checked), or all of them."""
    available = store.merged_keys()
    if not available:
        raise DyncdiError("STORE", "no merged results in the store", "run 'dyncdi merge' first")
    unknown = sorted(set(keys or []) - set(available))
    if unknown:
        raise DyncdiError("--key", f"no merged group {unknown}", f"choose from {available}")
    return list(keys or available)
