"""Export merged results for other tools: VTK image data (ParaView) and CXI/HDF5.

The Zarr store stays the master copy; exports are resampled onto the orthogonal sample frame
(physics/frames.py: x, y, z in nm, z along h, right-handed, isotropic voxels).

* VTK: one `<key>.vti` (XML ImageData, written by pyevtk) per merged group: point data
  amplitude, phase, displacement, strain, support, support_probability and every spread map
  (`*_std`, `*_sem`), spacing = voxel size in nm, origin = the first voxel's position (nm).
* CXI: one HDF5 file, one `entry_<i>` per merged group: `image_1/data` the complex object
  (C order (z, y, x), as CXI images are), `image_1/image_size` (m), the other maps beside it
  with `units` attributes, and the scan geometry under `instrument_1`.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..analysis.frames import merged_to_sample_frame
from ..errors import DyncdiError
from ..physics.geometry import Geometry
from ..provenance import provenance
from ..store.groups import complex_object
from ..store.zarr_store import Store

JOULE_PER_EV = 1.602176634e-19


def sample_frame(store: Store, key: str, voxel_nm: float | None = None) -> xr.Dataset:
    """A merged group of the store on the orthogonal sample grid (dims x, y, z; nm)."""
    attrs = store.merged_attrs(key)
    geometry = Geometry.from_attrs(store.input_attrs(attrs["dataset"])["geometry"])
    return merged_to_sample_frame(store.read_merged(key), geometry, voxel_nm)


def _keys(store: Store, keys: list[str] | None) -> list[str]:
    available = store.merged_keys()
    if not available:
        raise DyncdiError("STORE", "no merged results in the store", "run 'dyncdi merge' first")
    unknown = sorted(set(keys or []) - set(available))
    if unknown:
        raise DyncdiError("--key", f"no merged group {unknown}", f"choose from {available}")
    return list(keys or available)


def write_vtk(
    store: Store, directory: Path, keys: list[str] | None = None, voxel_nm: float | None = None
) -> list[Path]:
    """Write one VTK ImageData file (.vti) per merged group into directory; returns them."""
    from pyevtk.hl import imageToVTK

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for key in _keys(store, keys):
        ds = sample_frame(store, key, voxel_nm)
        spacing = (float(ds.attrs["voxel_nm"]),) * 3
        point_data = {
            name: np.ascontiguousarray(
                var.values.astype(np.uint8 if var.dtype == bool else np.float32)
            )
            for name, var in ds.data_vars.items()
        }
        path = imageToVTK(
            str(directory / key),
            origin=tuple(float(o) for o in ds.attrs["origin_nm"]),
            spacing=spacing,
            pointData=point_data,
        )
        written.append(Path(path))
    return written


def write_cxi(
    store: Store, path: Path, keys: list[str] | None = None, voxel_nm: float | None = None
) -> Path:
    """Write the merged groups as a CXI (HDF5) file, one entry per group; returns its path."""
    import h5py

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 150
        for i, key in enumerate(_keys(store, keys), start=1):
            ds = sample_frame(store, key, voxel_nm)
            attrs = store.merged_attrs(key)
            g = attrs["geometry"]
            entry = f.create_group(f"entry_{i}")
            entry["title"] = key
            image = entry.create_group("image_1")
            obj = complex_object(ds)
            data = image.create_dataset("data", data=obj.T.astype(np.complex64))
            data.attrs["axes"] = "z:y:x"
            image["data_type"] = "complex"
            image["data_space"] = "real"
            image["is_fft_shifted"] = 0
            voxel_m = float(ds.attrs["voxel_nm"]) * 1e-9
            image["image_size"] = np.array(ds["amplitude"].shape[::-1], float) * voxel_m
            image["voxel_size"] = voxel_m
            image["voxel_size"].attrs["units"] = "m"
            for name, var in ds.data_vars.items():
                if name in ("amplitude", "phase"):
                    continue
                d = image.create_dataset(name, data=np.asarray(var.values).T)
                d.attrs["axes"] = "z:y:x"
                for a in ("units", "long_name"):
                    if a in var.attrs:
                        d.attrs[a] = var.attrs[a]
            inst = entry.create_group("instrument_1")
            inst["source_1/energy"] = g["energy_kev"] * 1e3 * JOULE_PER_EV
            inst["source_1/energy"].attrs["units"] = "J"
            inst["detector_1/distance"] = g["detector_distance_m"]
            inst["detector_1/x_pixel_size"] = g["pixel_size_m"]
            inst["detector_1/y_pixel_size"] = g["pixel_size_m"]
            sample = entry.create_group("sample_1")
            sample["material"] = g["material"]
            sample["hkl"] = np.asarray(g["hkl"])
            sample["rocking_step"] = np.degrees(g["rocking_step_rad"])
            sample["rocking_step"].attrs["units"] = "deg"
            process = image.create_group("process_1")
            process["note"] = json.dumps(
                {
                    "frame": ds.attrs["frame"],
                    "merged": {k: attrs[k] for k in ("members", "rule", "vs_truth")},
                    "provenance": provenance(),
                }
            )
    return path
