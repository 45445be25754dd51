"""CXI (HDF5) export of merged groups, with the scan's geometry in the CXI laboratory frame.

Layout of each `entry_<i>` (CXI 1.5 names where the format defines one; SI units, angles in
degrees, vectors in the CXI lab frame: z along the beam, y up, x = y cross z):

* image_1: the complex object on the orthogonal grid of the chosen frame, data in C order
  (z, y, x) of that frame; image_2: the same on the reconstruction's own conjugate grid
  (x0, x1, x2) = (rocking, row, column) conjugates, no interpolation. Each has data_type
  "amplitude" (phased), data_space "real", `mask` (bit 0x00010000: inside the support), every
  map beside the data with `units`, and `basis_vectors` (rows: the step along each data
  dimension) and `corner_position` (corner of the first voxel) with the meaning the format
  gives them for a detector. Both are cropped to the support's bounding box plus a margin.
* instrument_1: source_1/energy; detector_1/distance, x/y_pixel_size, basis_vectors and
  corner_position (row and column steps as seen from the sample at the Bragg peak: exact for
  a detector normal to the exit beam at the peak pixel), q_basis_vectors (rows: q steps of
  one rocking step, row and column, m^-1; not a CXI name).
* sample_1: name, unit_cell, geometry_1/orientation (the diffractometer's sample frame at
  the peak, direction cosines against the lab axes) and translation, scattering_vector (Q at
  the peak, m^-1; not a CXI name), material, hkl, rocking_step.
* image_1/process_1: program, version, date, comments and note_1 (JSON: the frame, the
  geometry's attrs, the merge and the provenance).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import xarray as xr

from ..analysis.frames import crop_to_support
from ..physics.frames import FRAME_DESCRIPTIONS, check_frame, frame_to_lab
from ..physics.geometry import Geometry
from ..physics.lattice import crystal
from ..provenance import now_iso, package_version, provenance
from ..store.groups import GRID_DIMS, complex_object
from ..store.zarr_store import Store
from .export_data import MARGIN_VOXELS, export_keys, frame_dataset, grid_dataset, merged_geometry

JOULE_PER_EV = 1.602176634e-19
M_PER_NM = 1e-9
INSIDE_SUPPORT = 0x00010000  # CXI_PIXEL_INSIDE_SUPPORT
COMPRESSION = {"compression": "gzip", "compression_opts": 4, "shuffle": True}


def _image(group, ds: xr.Dataset, order: tuple[str, ...], basis_rows_m: np.ndarray, first_m):
    """One Image: complex data, mask, maps (dims in order), basis_vectors, corner_position."""

    def arranged(values: np.ndarray) -> np.ndarray:
        return np.transpose(values, [list(ds["support"].dims).index(d) for d in order])

    obj = arranged(complex_object(ds)).astype(np.complex64)
    data = group.create_dataset("data", data=obj, **COMPRESSION)
    data.attrs["axes"] = ":".join(order)
    group["data_type"] = "amplitude"
    group["data_space"] = "real"
    group["is_fft_shifted"] = 0
    group["dimensionality"] = 3
    mask = np.where(arranged(ds["support"].values), INSIDE_SUPPORT, 0).astype(np.uint32)
    group.create_dataset("mask", data=mask, **COMPRESSION)
    group["basis_vectors"] = basis_rows_m
    group["basis_vectors"].attrs["units"] = "m"
    group["corner_position"] = np.asarray(first_m) - 0.5 * basis_rows_m.sum(axis=0)
    group["corner_position"].attrs["units"] = "m"
    group["image_size"] = np.asarray(data.shape) * np.linalg.norm(basis_rows_m, axis=1)
    group["image_size"].attrs["units"] = "m"
    for name, var in ds.data_vars.items():
        if name in ("amplitude", "phase"):
            continue
        d = group.create_dataset(name, data=arranged(np.asarray(var.values)), **COMPRESSION)
        d.attrs["axes"] = ":".join(order)
        for a in ("units", "long_name"):
            if a in var.attrs:
                d.attrs[a] = var.attrs[a]
    return data


def _orthogonal_image(group, ds: xr.Dataset, geometry: Geometry, frame: str) -> None:
    """image_1: the orthogonal grid of frame, stored (z, y, x)."""
    voxel_m = float(ds.attrs["voxel_nm"]) * M_PER_NM
    axes = frame_to_lab(geometry, frame)
    rows = voxel_m * axes[:, ::-1].T  # steps along z, y, x of the frame, in the lab
    first = axes @ np.asarray(ds.attrs["origin_nm"], float) * M_PER_NM
    _image(group, ds, ("z", "y", "x"), rows, first)
    group["voxel_size"] = voxel_m
    group["voxel_size"].attrs["units"] = "m"


def _conjugate_image(group, ds: xr.Dataset, geometry: Geometry) -> None:
    """image_2: the conjugate grid's own voxels (x0, x1, x2), steps real_basis_lab."""
    rows = geometry.real_basis_lab.T * M_PER_NM
    first_index = np.array([ds[d].values[0] for d in GRID_DIMS]) - np.asarray(geometry.shape) // 2
    _image(group, ds, GRID_DIMS, rows, rows.T @ first_index)


def _instrument(group, geometry: Geometry) -> None:
    """Source energy, detector distance, pixels, and the detector's place at the peak."""
    group["source_1/energy"] = geometry.energy_kev * 1e3 * JOULE_PER_EV
    group["source_1/energy"].attrs["units"] = "J"
    det = group.create_group("detector_1")
    distance = geometry.detector_distance_m
    det["distance"] = distance
    det["x_pixel_size"] = geometry.pixel_size_m
    det["y_pixel_size"] = geometry.pixel_size_m
    q_lab = geometry.q_basis_lab
    steps = (q_lab[:, 1:] * distance / geometry.k_nm).T  # detector row, column (m)
    k_out = np.array([0.0, 0.0, geometry.k_nm]) + q_at_peak_nm(geometry)
    centre = distance * k_out / np.linalg.norm(k_out)
    n = np.asarray(geometry.shape[1:])
    det["basis_vectors"] = steps
    det["corner_position"] = centre - (n // 2 + 0.5) @ steps
    det["description"] = (
        "basis_vectors and corner_position from the q steps at the Bragg peak pixel (the "
        "array's centre), exact for a detector normal to the exit beam there"
    )
    det["q_basis_vectors"] = q_lab.T * 1e9
    det["q_basis_vectors"].attrs["units"] = "m^-1"
    for name in ("distance", "x_pixel_size", "y_pixel_size", "basis_vectors", "corner_position"):
        det[name].attrs["units"] = "m"


def q_at_peak_nm(geometry: Geometry) -> np.ndarray:
    """Q at the Bragg peak in the lab frame (nm^-1): along the crystal frame's z."""
    return geometry.crystal_to_lab[:, 2] * geometry.h_nm


def _sample(group, geometry: Geometry) -> None:
    a_m = crystal(geometry.material).lattice_constant_nm * M_PER_NM
    group["name"] = geometry.material
    group["material"] = geometry.material
    group["unit_cell"] = np.array([a_m, a_m, a_m, 90.0, 90.0, 90.0])
    group["hkl"] = np.asarray(geometry.hkl)
    group["rocking_step"] = np.degrees(geometry.rocking_step_rad)
    group["rocking_step"].attrs["units"] = "deg"
    to_lab = np.asarray(geometry.sample_to_lab)
    group["geometry_1/orientation"] = to_lab[:, :2].T.reshape(6)
    group["geometry_1/translation"] = np.zeros(3)
    group["scattering_vector"] = q_at_peak_nm(geometry) * 1e9
    group["scattering_vector"].attrs["units"] = "m^-1"


def _process(group, frame: str, geometry: Geometry, merged: dict) -> None:
    group["program"] = "dyncdi-hpc"
    group["version"] = package_version()
    group["date"] = now_iso()
    group["comments"] = f"merged reconstruction; image_1 on the {FRAME_DESCRIPTIONS[frame]}"
    note = {
        "frame": frame,
        "geometry": geometry.to_attrs(),
        "merged": {k: merged[k] for k in ("members", "rule", "vs_truth") if k in merged},
        "provenance": provenance(),
    }
    group["note_1/data"] = json.dumps(note)
    group["note_1/type"] = "application/json"


def write_cxi(
    store: Store,
    path: Path,
    keys: list[str] | None = None,
    voxel_nm: float | None = None,
    frame: str = "lab",
    margin: int = MARGIN_VOXELS,
) -> Path:
    """Write the merged groups as a CXI (HDF5) file, one entry per group (the module's
    layout), within the support's bounding box plus margin voxels; returns its path."""
    import h5py

    check_frame(frame)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    keys = export_keys(store, keys)
    with h5py.File(path, "w") as f:
        f["cxi_version"] = 150
        f["number_of_entries"] = len(keys)
        for i, key in enumerate(keys, start=1):
            geometry = merged_geometry(store, key)
            entry = f.create_group(f"entry_{i}")
            entry["title"] = key
            entry["program_name"] = "dyncdi-hpc"
            ortho = frame_dataset(store, key, frame, voxel_nm, margin)
            _orthogonal_image(entry.create_group("image_1"), ortho, geometry, frame)
            grid = crop_to_support(grid_dataset(store, key), margin)
            _conjugate_image(entry.create_group("image_2"), grid, geometry)
            _instrument(entry.create_group("instrument_1"), geometry)
            _sample(entry.create_group("sample_1"), geometry)
            process = entry["image_1"].create_group("process_1")
            _process(process, frame, geometry, store.merged_attrs(key))
    return path
