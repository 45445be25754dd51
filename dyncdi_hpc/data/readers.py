"""Readers of measured scans: CXI/NeXus/plain HDF5, .npy/.npz and TIFF frames -> RawScan.

HDF5 metadata is found by dataset name anywhere in the file (CXI and NeXus names):
``energy`` / ``incident_energy`` (units attr J, eV or keV; CXI's default is J),
``distance`` / ``detector_distance`` (m or mm), ``x_pixel_size`` / ``pixel_size`` (m, mm or um),
``rocking_angle(s)`` (deg or rad, one per frame) or ``rocking_step`` (deg), ``material``,
``hkl``, ``mask`` / ``pixel_mask`` (nonzero = ignored; 2D masks apply to every frame),
``saturation_value``. The intensities are CXI's ``entry_1/data_1/data`` or
``entry_1/instrument_1/detector_1/data``, a NeXus NXdata group's signal, the only 3D dataset,
or the dataset named by `key`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DyncdiError

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
TIFF_SUFFIXES = (".tif", ".tiff")
EV_PER_JOULE = 1.0 / 1.602176634e-19


@dataclass
class RawScan:
    """What a file holds: intensities (N0, N1, N2), mask (True = ignored), geometry found."""

    intensity: np.ndarray
    mask: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)


def read_scan(path: Path, key: str | None = None) -> RawScan:
    """Read intensities, mask and geometry metadata from a file (or a folder of TIFF frames)."""
    path = Path(path)
    if not path.exists():
        raise DyncdiError("FILE", f"no such file {str(path)!r}", "check the path")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in TIFF_SUFFIXES:
        return _read_tiff(path)
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, key)
    if suffix in HDF5_SUFFIXES:
        return _read_hdf5(path, key)
    raise DyncdiError(
        "FILE",
        f"unknown format {suffix!r}",
        "give a .cxi/.nxs/.h5/.hdf5, .npy/.npz, .tif/.tiff file or a folder of TIFF frames",
    )


def _read_numpy(path: Path, key: str | None) -> RawScan:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DyncdiError("FILE", f"cannot read {path.name}: {exc}") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):
        return RawScan(np.asarray(loaded), None, {}, {"format": "npy", "path": str(path)})
    arrays = {k: loaded[k] for k in loaded.files}
    mask = arrays.pop("mask", None)
    if key is None:
        key = next((k for k in ("data", "intensity") if k in arrays), None)
        key = key or (next(iter(arrays)) if len(arrays) == 1 else None)
    if key not in arrays:
        raise DyncdiError("--key", f"choose one of the arrays {sorted(arrays)}", "give --key NAME")
    return RawScan(arrays[key], mask, {}, {"format": "npz", "path": str(path), "dataset": key})


def _read_tiff(path: Path) -> RawScan:
    import tifffile

    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        if not files:
            raise DyncdiError("FILE", f"no .tif/.tiff frames in {str(path)!r}", "check the folder")
        frames = [tifffile.imread(f) for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1 or frames[0].ndim != 2:
            raise DyncdiError(
                "FILE",
                f"TIFF frames have shapes {sorted(shapes)}",
                "give one 2D frame per rocking angle, all of one size",
            )
        data = np.stack(frames)
        source = {"format": "tiff-frames", "path": str(path), "frames": [f.name for f in files]}
    else:
        data = tifffile.imread(path)
        source = {"format": "tiff", "path": str(path)}
    return RawScan(np.asarray(data), None, {}, source)


def _units(dset) -> str:
    units = dset.attrs.get("units", "")
    return (units.decode() if isinstance(units, bytes) else str(units)).strip()


def _scalar(dset) -> float:
    return float(np.asarray(dset[()]).ravel()[0])


def tidy(value: float) -> float:
    """Round away the last bits a unit conversion leaves (12 significant digits)."""
    return float(f"{value:.12g}")


def _text(dset) -> str:
    value = dset[()]
    if isinstance(value, np.ndarray):
        value = value.ravel()[0]
    return value.decode() if isinstance(value, bytes) else str(value)


def _energy_kev(dset) -> float:
    value, units = _scalar(dset), _units(dset).lower()
    if units in ("j", "joule"):
        return value * EV_PER_JOULE / 1e3
    if units == "ev":
        return value / 1e3
    if units == "kev":
        return value
    if units:
        raise DyncdiError(f"{dset.name}", f"unknown energy units {units!r}", "use J, eV or keV")
    return value * EV_PER_JOULE / 1e3  # CXI: J


def _length(dset, default: str, scale_to_m: dict) -> float:
    units = _units(dset).lower() or default
    if units not in scale_to_m:
        raise DyncdiError(f"{dset.name}", f"unknown length units {units!r}", "use m, mm or um")
    return _scalar(dset) * scale_to_m[units]


_TO_M = {"m": 1.0, "mm": 1e-3, "um": 1e-6, "µm": 1e-6, "micron": 1e-6, "nm": 1e-9}


def _read_hdf5(path: Path, key: str | None) -> RawScan:
    import h5py

    with h5py.File(path, "r") as f:
        found: dict = {}

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset):
                found.setdefault(name.rsplit("/", 1)[-1].lower(), []).append(name)

        f.visititems(visit)
        data_path = key or _data_path(f, found)
        if data_path not in f or not isinstance(f[data_path], h5py.Dataset):
            raise DyncdiError("--key", f"no dataset {data_path!r} in {path.name}", "check the path")
        data = np.asarray(f[data_path][()])
        meta: dict = {}

        def first(*names):
            for n in names:
                for p in found.get(n, []):
                    if p != data_path:
                        return f[p]
            return None

        if (d := first("energy", "incident_energy")) is not None:
            meta["energy_kev"] = tidy(_energy_kev(d))
        if (d := first("distance", "detector_distance")) is not None:
            meta["detector_distance_m"] = tidy(_length(d, "m", _TO_M))
        if (d := first("x_pixel_size", "pixel_size")) is not None:
            meta["pixel_size_um"] = tidy(_length(d, "m", _TO_M) * 1e6)
        if (d := first("rocking_angle", "rocking_angles")) is not None:
            angles = np.asarray(d[()], float).ravel()
            meta["rocking_angles_deg"] = (
                np.degrees(angles) if _units(d).lower() in ("rad", "radian") else angles
            )
        elif (d := first("rocking_step")) is not None:
            meta["rocking_step_deg"] = _scalar(d)
        if (d := first("material")) is not None:
            meta["material"] = _text(d)
        if (d := first("hkl")) is not None:
            meta["hkl"] = tuple(int(v) for v in np.asarray(d[()]).ravel())
        if (d := first("saturation_value")) is not None:
            meta["saturation"] = _scalar(d)
        mask = None
        if (d := first("mask", "pixel_mask")) is not None:
            mask = np.asarray(d[()]) != 0
        fmt = "cxi" if "cxi_version" in found else "nexus" if _is_nexus(f) else "hdf5"
    return RawScan(data, mask, meta, {"format": fmt, "path": str(path), "dataset": data_path})


def _is_nexus(f) -> bool:
    return any(_nx_class(g) == "NXentry" for g in f.values())


def _nx_class(obj) -> str:
    value = obj.attrs.get("NX_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _data_path(f, found: dict) -> str:
    import h5py

    for p in ("entry_1/data_1/data", "entry_1/instrument_1/detector_1/data"):
        if p in f:
            return p
    signals = []

    def visit(name, obj):
        if isinstance(obj, h5py.Group) and _nx_class(obj) == "NXdata" and "signal" in obj.attrs:
            signal = obj.attrs["signal"]
            signal = signal.decode() if isinstance(signal, bytes) else str(signal)
            if signal in obj:
                signals.append(f"{name}/{signal}")

    f.visititems(visit)
    if len(signals) == 1:
        return signals[0]
    volumes = [p for paths in found.values() for p in paths if f[p].ndim == 3]
    if len(volumes) == 1:
        return volumes[0]
    raise DyncdiError(
        "--key",
        f"cannot tell which dataset holds the intensities: 3D datasets {sorted(volumes)}",
        "give --key with the dataset's path",
    )
