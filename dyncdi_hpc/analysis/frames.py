"""Detector-conjugate (sheared) grid -> orthogonal grid in the lab, crystal or sample frame
(physics/frames.py defines the frames and grids).

Resampling is trilinear (scipy.ndimage.map_coordinates, order 1): monotonic, so support edges
and probabilities stay in range. A complex volume is resampled as its real and imaginary parts,
which is continuous across phase wraps (unlike resampling the phase).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import map_coordinates

from ..physics.frames import (
    FRAME_DESCRIPTIONS,
    SampleGrid,
    check_frame,
    frame_to_crystal,
    frame_to_lab,
    indices_at,
    sample_grid,
    support_window,
)
from ..physics.geometry import Geometry
from ..store.groups import SAMPLE_DIMS, complex_object, sample_coords


def _indices(geometry: Geometry, axes_nm: list[np.ndarray], frame: str) -> np.ndarray:
    """Fractional conjugate-grid index of every voxel of the orthogonal grid with these x, y,
    z axes (nm) in frame, shape (3, nx, ny, nz) (physics.frames.conjugate_indices)."""
    points = np.stack(np.meshgrid(*axes_nm, indexing="ij"), axis=-1)
    return indices_at(geometry, points, frame_to_crystal(geometry, frame))


def _resample(volume: np.ndarray, coords: np.ndarray, order: int = 1) -> np.ndarray:
    """Values of a conjugate-grid volume, real or complex, at fractional indices coords."""

    def resample(x: np.ndarray) -> np.ndarray:
        return map_coordinates(x, coords, order=order, mode="constant", cval=0.0)

    volume = np.asarray(volume)
    if np.iscomplexobj(volume):
        return resample(volume.real) + 1j * resample(volume.imag)
    return resample(volume.astype(float))


def resample_to_grid(
    volume: np.ndarray, geometry: Geometry, grid: SampleGrid, frame: str, order: int = 1
) -> np.ndarray:
    """Resample a conjugate-grid volume (N0, N1, N2), real or complex, onto grid (nx, ny, nz)
    in the frame; points outside the conjugate grid's field of view are 0."""
    return _resample(volume, _indices(geometry, grid.axes_nm(), frame), order)


def to_sample_frame(
    volume: np.ndarray, geometry: Geometry, grid: SampleGrid | None = None, order: int = 1
) -> np.ndarray:
    """Resample a conjugate-grid volume (N0, N1, N2), real or complex, onto grid (nx, ny, nz)
    in the sample frame (the crystal frame for the idealised geometry).

    Points outside the conjugate grid's field of view are 0.
    """
    grid = grid or sample_grid(geometry, frame="sample")
    return resample_to_grid(volume, geometry, grid, "sample", order)


def frame_attrs(geometry: Geometry, voxel_nm: float, axes_nm: list[np.ndarray], frame: str) -> dict:
    """Attributes of a volume on an orthogonal grid (axes x, y, z in nm) in the frame: its
    name, what it is, its axes in the lab frame (rows of the (3, 3) rotation frame -> lab),
    voxel and first voxel's position (nm)."""
    return {
        "frame": frame,
        "frame_description": FRAME_DESCRIPTIONS[frame],
        "frame_to_lab": frame_to_lab(geometry, frame).tolist(),
        "voxel_nm": voxel_nm,
        "origin_nm": [float(a[0]) for a in axes_nm],
    }


def frame_coords(axes_nm: list[np.ndarray], frame: str) -> dict:
    """Coordinates x, y, z (nm) in the frame, CF axis attributes naming the frame."""
    coords = sample_coords(axes_nm)
    for name, coord in coords.items():
        coord.attrs["long_name"] = f"{frame}-frame {name}"
    return coords


def to_frame(
    volume: np.ndarray,
    geometry: Geometry,
    frame: str = "lab",
    voxel_nm: float | None = None,
    *,
    grid: SampleGrid | None = None,
    order: int = 1,
) -> xr.DataArray:
    """A conjugate-grid volume (N0, N1, N2), real or complex, on an orthogonal grid in frame
    ("lab", "crystal" or "sample"): dims (x, y, z), coordinates in nm, attrs naming the frame.

    grid defaults to the bounding box of the conjugate grid in that frame, voxel_nm to its
    shortest step; points outside the conjugate grid's field of view are 0.
    """
    check_frame(frame)
    grid = grid or sample_grid(geometry, voxel_nm, frame)
    axes = grid.axes_nm()
    return xr.DataArray(
        resample_to_grid(volume, geometry, grid, frame, order),
        dims=SAMPLE_DIMS,
        coords=frame_coords(axes, frame),
        attrs=frame_attrs(geometry, grid.voxel_nm, axes, frame),
    )


def _masked_resample(values: np.ndarray, valid: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Resample a map defined only where valid (normalised: no bias at the edges); NaN out."""
    num = _resample(np.where(valid, values, 0.0), coords)
    den = _resample(valid.astype(float), coords)
    return np.where(den >= 0.5, num / np.maximum(den, 1e-12), np.nan)


def merged_to_frame(
    ds: xr.Dataset,
    geometry: Geometry,
    frame: str = "sample",
    voxel_nm: float | None = None,
    margin: int | None = None,
) -> xr.Dataset:
    """A merged group's fields on the orthogonal grid in frame, dims (x, y, z), coords in nm.

    amplitude and phase come from the resampled complex object; maps defined inside the
    support (displacement, strain, their spreads) are resampled where defined and NaN
    elsewhere; support is where the resampled support exceeds 0.5. Displacement and strain
    stay the components along the scattering vector (the crystal frame's z) in every frame.
    margin: only the support's bounding box plus margin voxels is resampled and returned
    (crop_to_support of the whole grid, at a fraction of the cost).
    """
    grid = sample_grid(geometry, voxel_nm, check_frame(frame))
    axes = grid.axes_nm()
    if margin is not None:  # resample only near the support: its window, grown by the margin
        window = support_window(geometry, grid, frame, ds["support"].values)
        grown = [slice(max(w.start - margin, 0), w.stop + margin) for w in window]
        axes = [a[w] for a, w in zip(axes, grown, strict=True)]
    coords = _indices(geometry, axes, frame)
    support = _resample(ds["support"].values.astype(float), coords) >= 0.5
    if margin is not None:
        box = support_box(support, margin)
        coords, support = coords[(slice(None), *box)], support[box]
        axes = [a[b] for a, b in zip(axes, box, strict=True)]
    obj = _resample(complex_object(ds), coords)
    out = {
        "amplitude": (np.abs(obj), ds["amplitude"].attrs),
        "phase": (np.angle(obj), ds["phase"].attrs),
        "support": (support, ds["support"].attrs),
    }
    for name, var in ds.data_vars.items():
        if var.dims != ds["amplitude"].dims or name in out:
            continue
        values = np.asarray(var.values, float)
        if name == "support_probability":  # 0 outside the field of view, like the support
            out[name] = (_resample(values, coords), var.attrs)
            continue
        out[name] = (_masked_resample(values, np.isfinite(values), coords), var.attrs)
    variables = {
        name: xr.Variable(SAMPLE_DIMS, np.asarray(v, np.float32 if v.dtype != bool else bool), a)
        for name, (v, a) in out.items()
    }
    return xr.Dataset(
        variables,
        coords=frame_coords(axes, frame),
        attrs=frame_attrs(geometry, grid.voxel_nm, axes, frame),
    )


def merged_to_sample_frame(
    ds: xr.Dataset, geometry: Geometry, voxel_nm: float | None = None
) -> xr.Dataset:
    """A merged group's fields on the orthogonal sample-frame grid (merged_to_frame)."""
    return merged_to_frame(ds, geometry, "sample", voxel_nm)


def support_box(support: np.ndarray, margin: int = 3) -> tuple[slice, ...]:
    """Slices of the support's bounding box grown by margin voxels (clipped to the array);
    the whole array when the support is empty. support: bool, any number of dimensions."""
    support = np.asarray(support, bool)
    if not support.any():
        return tuple(slice(0, n) for n in support.shape)
    box = []
    for axis, n in enumerate(support.shape):
        others = tuple(a for a in range(support.ndim) if a != axis)
        hit = np.flatnonzero(support.any(axis=others))
        box.append(slice(max(int(hit[0]) - margin, 0), min(int(hit[-1]) + 1 + margin, n)))
    return tuple(box)


def crop_to_support(ds: xr.Dataset, margin: int = 3) -> xr.Dataset:
    """The dataset within its support's bounding box plus margin voxels (ds["support"], bool,
    on ds's three volume dims); coordinates follow, and origin_nm when ds has one."""
    support = ds["support"]
    box = support_box(support.values, margin)
    out = ds.isel(dict(zip(support.dims, box, strict=True)))
    if "origin_nm" in ds.attrs:
        out = out.assign_attrs(origin_nm=[float(out[d].values[0]) for d in support.dims])
    return out
