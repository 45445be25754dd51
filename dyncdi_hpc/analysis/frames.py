"""Detector-conjugate (sheared) grid -> orthogonal sample-frame grid (physics/frames.py).

Resampling is trilinear (scipy.ndimage.map_coordinates, order 1): monotonic, so support edges
and probabilities stay in range. A complex volume is resampled as its real and imaginary parts,
which is continuous across phase wraps (unlike resampling the phase).
"""

from __future__ import annotations

import numpy as np
import xarray as xr
from scipy.ndimage import map_coordinates

from ..physics.frames import SampleGrid, conjugate_indices, sample_grid
from ..physics.geometry import Geometry
from ..store.groups import SAMPLE_DIMS, complex_object, sample_coords


def to_sample_frame(
    volume: np.ndarray, geometry: Geometry, grid: SampleGrid | None = None, order: int = 1
) -> np.ndarray:
    """Resample a conjugate-grid volume (N0, N1, N2), real or complex, onto grid (nx, ny, nz).

    Points outside the conjugate grid's field of view are 0.
    """
    grid = grid or sample_grid(geometry)
    coords = conjugate_indices(geometry, grid)

    def resample(x: np.ndarray) -> np.ndarray:
        return map_coordinates(x, coords, order=order, mode="constant", cval=0.0)

    volume = np.asarray(volume)
    if np.iscomplexobj(volume):
        return resample(volume.real) + 1j * resample(volume.imag)
    return resample(volume.astype(float))


def _masked_resample(
    values: np.ndarray, valid: np.ndarray, geometry: Geometry, grid: SampleGrid
) -> np.ndarray:
    """Resample a map defined only where valid (normalised: no bias at the edges); NaN out."""
    num = to_sample_frame(np.where(valid, values, 0.0), geometry, grid)
    den = to_sample_frame(valid.astype(float), geometry, grid)
    return np.where(den >= 0.5, num / np.maximum(den, 1e-12), np.nan)


def merged_to_sample_frame(
    ds: xr.Dataset, geometry: Geometry, voxel_nm: float | None = None
) -> xr.Dataset:
    """A merged group's fields on the orthogonal sample grid, dims (x, y, z), coords in nm.

    amplitude and phase come from the resampled complex object; maps defined inside the
    support (displacement, strain, their spreads) are resampled where defined and NaN
    elsewhere; support is where the resampled support exceeds 0.5.
    """
    grid = sample_grid(geometry, voxel_nm)
    obj = to_sample_frame(complex_object(ds), geometry, grid)
    support = to_sample_frame(ds["support"].values.astype(float), geometry, grid) >= 0.5
    coords = sample_coords(grid.axes_nm())
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
            out[name] = (to_sample_frame(values, geometry, grid), var.attrs)
            continue
        valid = np.isfinite(values)
        out[name] = (_masked_resample(values, valid, geometry, grid), var.attrs)
    variables = {
        name: xr.Variable(SAMPLE_DIMS, np.asarray(v, np.float32 if v.dtype != bool else bool), a)
        for name, (v, a) in out.items()
    }
    return xr.Dataset(
        variables,
        coords=coords,
        attrs={
            "frame": "sample: z along h, x in the scattering plane, y along the rocking axis",
            "voxel_nm": grid.voxel_nm,
            "origin_nm": list(grid.origin_nm),
        },
    )
