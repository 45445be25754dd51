"""VTK export of merged groups for ParaView: the orthogonal grid (.vti) and, beside it, the
reconstruction's own sheared grid (.vts), both in one frame, cropped and compressed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import xarray as xr

from ..analysis.frames import crop_to_support
from ..physics.frames import check_frame, frame_basis
from ..store.groups import GRID_DIMS
from ..store.zarr_store import Store
from .export_data import MARGIN_VOXELS, export_keys, frame_dataset, grid_dataset, merged_geometry
from .vtk_xml import write_image_data, write_structured_grid


def _point_data(ds: xr.Dataset) -> dict[str, np.ndarray]:
    """Every volume field as float32 (support as uint8), amplitude first."""
    return {
        name: var.values.astype(np.uint8 if var.dtype == bool else np.float32)
        for name, var in ds.data_vars.items()
    }


def conjugate_points(store: Store, key: str, frame: str, margin: int) -> tuple[np.ndarray, dict]:
    """Positions (n0, n1, n2, 3) (nm, in frame) of the conjugate-grid voxels within the
    support's bounding box plus margin, and the fields there (no interpolation). The last
    axis is reversed when the grid steps are left-handed, so that every cell has a positive
    volume in ParaView."""
    geometry = merged_geometry(store, key)
    ds = crop_to_support(grid_dataset(store, key), margin)
    centre = np.asarray(geometry.shape) // 2
    idx = [ds[d].values - c for d, c in zip(GRID_DIMS, centre, strict=True)]
    m = np.stack(np.meshgrid(*idx, indexing="ij"), axis=-1).astype(float)
    basis = frame_basis(geometry, frame)
    points = m @ basis.T
    arrays = _point_data(ds)
    if np.linalg.det(basis) < 0:
        points = points[:, :, ::-1]
        arrays = {name: values[:, :, ::-1] for name, values in arrays.items()}
    return points, arrays


def write_vtk(
    store: Store,
    directory: Path,
    keys: list[str] | None = None,
    voxel_nm: float | None = None,
    frame: str = "lab",
    margin: int = MARGIN_VOXELS,
) -> list[Path]:
    """Write, per merged group, `<key>.vti` (ImageData on the orthogonal grid in frame:
    spacing = voxel, origin = first voxel's position, nm) and `<key>.vts` (StructuredGrid:
    the conjugate grid's own voxels at their positions in the same frame, nm), both with the
    same point data, within the support's bounding box plus margin voxels, float32 and
    zlib-compressed. Returns the paths written."""
    check_frame(frame)
    directory = Path(directory)
    written = []
    for key in export_keys(store, keys):
        ds = frame_dataset(store, key, frame, voxel_nm, margin)
        spacing = (float(ds.attrs["voxel_nm"]),) * 3
        origin = tuple(float(o) for o in ds.attrs["origin_nm"])
        written.append(write_image_data(directory / f"{key}.vti", _point_data(ds), origin, spacing))
        points, arrays = conjugate_points(store, key, frame, margin)
        written.append(write_structured_grid(directory / f"{key}.vts", points, arrays))
    return written
