"""Input datasets as xarray: intensities in the detector frame, optional mask and ground truth."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..config import ArrayDataset, SimulateConfig, stable_hash
from ..errors import DyncdiError
from ..physics.geometry import Geometry
from ..provenance import provenance
from .simulate import Truth, simulate
from .simulate_dynamical import simulate_dynamical
from .validate import check_intensity

DETECTOR_DIMS = ("rocking", "row", "col")
GRID_DIMS = ("x0", "x1", "x2")


@dataclass(frozen=True)
class Measurement:
    """What a reconstruction needs: intensities (N0, N1, N2), mask (True = ignored), geometry."""

    intensity: np.ndarray
    mask: np.ndarray | None
    geometry: Geometry
    truth: Truth | None = None


def grid_coords(geometry: Geometry) -> dict:
    """Index coordinates of the conjugate grid, with its basis (nm) in the attributes."""
    return {
        dim: xr.DataArray(
            np.arange(n),
            dims=dim,
            attrs={"units": "voxel", "long_name": f"conjugate grid axis {i}"},
        )
        for i, (dim, n) in enumerate(zip(GRID_DIMS, geometry.shape, strict=True))
    }


def to_xarray(
    intensity: np.ndarray,
    geometry: Geometry,
    *,
    source: dict,
    fingerprint: str,
    mask: np.ndarray | None = None,
    truth: Truth | None = None,
) -> xr.Dataset:
    """Input group: intensity (+ mask, + truth) with units, geometry and provenance in attrs."""
    coords = {
        "rocking": xr.DataArray(
            np.degrees(geometry.rocking_angles_rad),
            dims="rocking",
            attrs={"units": "degree", "long_name": "rocking angle relative to the Bragg angle"},
        ),
        "row": xr.DataArray(np.arange(geometry.shape[1]), dims="row", attrs={"units": "pixel"}),
        "col": xr.DataArray(np.arange(geometry.shape[2]), dims="col", attrs={"units": "pixel"}),
    }
    coords.update(grid_coords(geometry))
    variables = {
        "intensity": xr.Variable(
            DETECTOR_DIMS, intensity, attrs={"units": "counts", "long_name": "diffracted intensity"}
        )
    }
    if mask is not None:
        variables["mask"] = xr.Variable(
            DETECTOR_DIMS, mask.astype(bool), attrs={"long_name": "pixel ignored in every fit"}
        )
    if truth is not None:
        variables.update(
            truth_amplitude=xr.Variable(GRID_DIMS, truth.amplitude, {"units": "1"}),
            truth_phase=xr.Variable(GRID_DIMS, truth.phase, {"units": "rad"}),
            truth_support=xr.Variable(GRID_DIMS, truth.support),
            truth_displacement=xr.Variable(
                GRID_DIMS, truth.displacement_nm, {"units": "nm", "long_name": "u along h"}
            ),
        )
    return xr.Dataset(
        variables,
        coords=coords,
        attrs={
            "kind": "dyncdi-input",
            "geometry": geometry.to_attrs(),
            "real_basis_nm": geometry.real_basis.tolist(),
            "source": source,
            "fingerprint": fingerprint,
            "provenance": provenance(),
        },
    )


def from_xarray(ds: xr.Dataset, field: str) -> Measurement:
    """Measurement from an input group, validated against its geometry."""
    geometry = Geometry.from_attrs(ds.attrs["geometry"])
    intensity = np.asarray(ds["intensity"].values)
    mask = np.asarray(ds["mask"].values, bool) if "mask" in ds else None
    check_intensity(intensity, geometry, field, mask)
    truth = None
    if "truth_amplitude" in ds:
        truth = Truth(
            amplitude=ds["truth_amplitude"].values,
            phase=ds["truth_phase"].values,
            support=ds["truth_support"].values.astype(bool),
            displacement_nm=ds["truth_displacement"].values,
        )
    return Measurement(intensity, mask, geometry, truth)


def simulated_input(cfg: SimulateConfig, field: str) -> xr.Dataset:
    """Simulate a dataset and wrap it as an input group (fingerprint = hash of its config)."""
    geometry = cfg.geometry.build(f"{field}.simulate.geometry")
    offset = None
    if cfg.model == "dynamical":
        dynamical = simulate_dynamical(cfg, geometry)
        data, offset = dynamical.data, dynamical.rocking_offset_rad
    else:
        data = simulate(cfg, geometry)
    source = {"kind": "simulate", "config": cfg.fingerprint_payload()}
    ds = to_xarray(
        data.intensity, geometry, source=source, fingerprint=stable_hash(source), truth=data.truth
    )
    if offset is not None:
        ds.attrs["truth_rocking_offset_rad"] = offset
    return ds


def array_input(spec: ArrayDataset, field: str) -> xr.Dataset:
    """Read a .npy/.npz intensity file with its geometry; validate it; wrap it as an input group."""
    path = Path(spec.path)
    if not path.is_file():
        raise DyncdiError(f"{field}.path", f"no such file {str(path)!r}", "check the path")
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DyncdiError(f"{field}.path", f"cannot read {path.name}: {exc}") from None
    if isinstance(loaded, np.lib.npyio.NpzFile):
        keys = list(loaded.keys())
        key = spec.key or (keys[0] if len(keys) == 1 else None)
        if key not in keys:
            raise DyncdiError(f"{field}.key", f"choose one of the arrays {keys}", "set key")
        intensity = loaded[key]
    else:
        intensity = loaded
    geometry = spec.geometry.build(f"{field}.geometry")
    intensity = np.asarray(intensity, dtype=np.float32)
    check_intensity(intensity, geometry, f"{field}.path")
    source = {"kind": "file", "path": str(path), "key": spec.key}
    digest = hashlib.sha256(np.ascontiguousarray(intensity).tobytes()).hexdigest()
    fingerprint = stable_hash({"data": digest, "geometry": geometry.to_attrs()})
    return to_xarray(intensity, geometry, source=source, fingerprint=fingerprint)
