"""Readers of measured scans: CXI/NeXus/plain HDF5, .npy/.npz and TIFF frames -> RawScan.
The beamline readers (readers_spec.py: spec + TIFF frames, readers_bliss.py: BLISS HDF5,
readers_fio.py: .fio + Eiger master) fill the same RawScan.

HDF5 metadata is found by dataset name anywhere in the file (CXI and NeXus names):
``energy`` / ``incident_energy`` (units attr J, eV or keV; CXI's default is J),
``distance`` / ``detector_distance`` (m or mm), ``x_pixel_size`` / ``pixel_size`` (m, mm or um),
``rocking_angle(s)`` (deg or rad, one per frame) or ``rocking_step`` (deg), ``material``,
``hkl``, ``mask`` / ``pixel_mask`` (nonzero = ignored; 2D masks apply to every frame),
``saturation_value``. The intensities are CXI's ``entry_1/data_1/data`` or
``entry_1/instrument_1/detector_1/data``, a NeXus NXdata group's signal, the only 3D dataset,
or the dataset named by `key`. Motor positions are read from NeXus NXtransformations groups
(each rotation a dataset named by its motor, units deg or rad; NeXus manual, "NXtransformations")
and NXpositioner groups (`<motor>/value`): a rotation with one varying value per frame is the
rocking motor; the others are the circles' fixed positions.
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
    """What a scan's files hold: intensities (N0, rows, columns) as measured, mask (True =
    ignored) or None, and the geometry found in them.

    metadata: GeometryConfig fields (energy_kev, detector_distance_m, pixel_size_um,
    rocking_step_deg, material, hkl) and saturation; source: the format and files read;
    rocking_deg: the rocking motor per frame (N0,) in degrees; motors: positions (deg) of the
    motors the files list, by their names there (those of the scan's start); rocking_motor:
    the rocked motor's name; detector: the detector's name; roi: the chip pixels the frames
    cover (row_start, row_stop, col_start, col_stop); sources: where in the files each of
    these values was found (value name -> description).
    """

    intensity: np.ndarray
    mask: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    rocking_deg: np.ndarray | None = None
    motors: dict[str, float] = field(default_factory=dict)
    rocking_motor: str | None = None
    detector: str | None = None
    roi: tuple[int, int, int, int] | None = None
    sources: dict[str, str] = field(default_factory=dict)

    def found(self, name: str, where: str) -> None:
        """Note where a value was found."""
        self.sources[name] = where


READING_UNITS = {"kev": 1.0, "ev": 1e-3, "m": 1.0, "mm": 1e-3, "um": 1e-6}


def motor_readings(raw: RawScan, preset, where: str) -> None:
    """Energy (keV) and distance (m) from the preset's `energy` and `distance` motors among
    raw.motors, converted from the preset's units; where: the place the motors were read."""
    for name, reading in (("energy_kev", preset.energy), ("detector_distance_m", preset.distance)):
        if reading is None or reading.motor not in raw.motors:
            continue
        factor = READING_UNITS.get(reading.units.lower())
        if factor is None:
            raise DyncdiError(
                f"{preset.name}: {name.split('_')[0]}.units",
                f"unknown units {reading.units!r}",
                "use keV or eV for the energy, m or mm for the distance",
            )
        raw.metadata[name] = tidy(raw.motors[reading.motor] * factor)
        raw.found(name, f"{where} {reading.motor} ({reading.units})")


PROGRESS_FRAMES = 50  # reading more frames than this shows a progress bar (on a terminal)


def read_frames(files: list[Path]) -> np.ndarray:
    """Stack 2D TIFF frames (N0, rows, columns) in the given order, with a progress bar when
    there are many; frames of mixed shapes are a DyncdiError naming the first odd file."""
    import tifffile
    from rich.console import Console
    from rich.progress import track

    console = Console(stderr=True)
    frames = []
    for path in track(
        files,
        description=f"reading {len(files)} frames",
        console=console,
        transient=True,
        disable=len(files) <= PROGRESS_FRAMES or not console.is_terminal,
    ):
        frame = tifffile.imread(path)
        if frame.ndim != 2 or (frames and frame.shape != frames[0].shape):
            first = f"{files[0].name} is {list(frames[0].shape)}" if frames else "2D expected"
            raise DyncdiError(
                "FRAMES",
                f"TIFF frames of mixed shapes: {path.name} is {list(frame.shape)}, {first}",
                "give one 2D frame per rocking angle, all of one size",
            )
        frames.append(frame)
    return np.stack(frames)


def read_scan(path: Path, key: str | None = None) -> RawScan:
    """Read intensities, mask and geometry metadata from a file (or a folder of TIFF frames)."""
    path = Path(path)
    if not path.exists():
        raise DyncdiError("FRAMES", f"no such file {str(path)!r}", "check the path")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in TIFF_SUFFIXES:
        return _read_tiff(path)
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, key)
    if suffix in HDF5_SUFFIXES:
        return _read_hdf5(path, key)
    raise DyncdiError(
        "FRAMES",
        f"unknown format {suffix!r}",
        "give a .cxi/.nxs/.h5/.hdf5, .npy/.npz, .tif/.tiff file or a folder of TIFF frames",
    )


def read_image(path: Path, field: str) -> np.ndarray:
    """One 2D image (a dark or flat field): a TIFF, a .npy/.npz holding one array, or an
    HDF5 file holding one 2D dataset; anything else is a DyncdiError naming field."""
    path = Path(path)
    if not path.is_file():
        raise DyncdiError(field, f"no such file {str(path)!r}", "check the path")
    suffix = path.suffix.lower()
    if suffix in TIFF_SUFFIXES:
        import tifffile

        image = tifffile.imread(path)
    elif suffix in (".npy", ".npz"):
        image = _read_numpy(path, None).intensity
    elif suffix in HDF5_SUFFIXES:
        image = _read_hdf5_image(path, field)
    else:
        raise DyncdiError(field, f"unknown format {suffix!r}", "give a .tif, .npy or .h5 file")
    if np.asarray(image).ndim != 2:
        raise DyncdiError(
            field,
            f"{path.name} holds an array of shape {list(np.shape(image))}",
            "give one 2D image",
        )
    return np.asarray(image)


def _read_hdf5_image(path: Path, field: str) -> np.ndarray:
    import h5py

    with h5py.File(path, "r") as f:
        images = []
        f.visititems(
            lambda name, obj: (
                images.append(name) if isinstance(obj, h5py.Dataset) and obj.ndim == 2 else None
            )
        )
        if len(images) != 1:
            raise DyncdiError(
                field, f"{path.name} holds {len(images)} 2D datasets", "give a file with one image"
            )
        return np.asarray(f[images[0]][()])


def _read_numpy(path: Path, key: str | None) -> RawScan:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DyncdiError(
            "FRAMES", f"cannot read {path.name}: {exc}", "give a .npy/.npz file numpy writes"
        ) from None
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
        files = tiff_files(path)
        data = read_frames(files)
        source = {"format": "tiff-frames", "path": str(path), "frames": [f.name for f in files]}
    else:
        data = tifffile.imread(path)
        source = {"format": "tiff", "path": str(path)}
    return RawScan(np.asarray(data), None, {}, source)


def tiff_files(folder: Path) -> list[Path]:
    """The TIFF files of a folder in name order (a DyncdiError when there are none)."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
    if not files:
        raise DyncdiError("FRAMES", f"no .tif/.tiff frames in {str(folder)!r}", "check the folder")
    return files


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
    import hdf5plugin  # noqa: F401  (the compression filters of Eiger and BLISS files)

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
        fmt = "cxi" if "cxi_version" in found else "nexus" if _is_nexus(f) else "hdf5"
        raw = RawScan(data, None, {}, {"format": fmt, "path": str(path), "dataset": data_path})

        def first(*names):
            for n in names:
                for p in found.get(n, []):
                    if p != data_path:
                        return f[p]
            return None

        _hdf5_metadata(raw, first)
        _nx_motors(f, raw)
    return raw


def _hdf5_metadata(raw: RawScan, first) -> None:
    """Fill raw's metadata from the datasets `first(*names)` finds (see the module doc)."""
    meta = raw.metadata
    if (d := first("energy", "incident_energy")) is not None:
        meta["energy_kev"] = tidy(_energy_kev(d))
    if (d := first("distance", "detector_distance")) is not None:
        meta["detector_distance_m"] = tidy(_length(d, "m", _TO_M))
    if (d := first("x_pixel_size", "pixel_size")) is not None:
        meta["pixel_size_um"] = tidy(_length(d, "m", _TO_M) * 1e6)
    if (d := first("rocking_angle", "rocking_angles")) is not None:
        angles = np.asarray(d[()], float).ravel()
        raw.rocking_deg = np.degrees(angles) if _units(d).lower() in _RADIANS else angles
        raw.found("rocking", d.name)
    elif (d := first("rocking_step")) is not None:
        meta["rocking_step_deg"] = _scalar(d)
    if (d := first("material")) is not None:
        meta["material"] = _text(d)
    if (d := first("hkl")) is not None:
        meta["hkl"] = tuple(int(v) for v in np.asarray(d[()]).ravel())
    if (d := first("saturation_value")) is not None:
        meta["saturation"] = _scalar(d)
    if (d := first("mask", "pixel_mask")) is not None:
        raw.mask = np.asarray(d[()]) != 0
    for name in meta:
        raw.sources.setdefault(name, f"{Path(raw.source['path']).name} (HDF5 metadata)")


_RADIANS = ("rad", "radian", "radians")


def _nx_motors(f, raw: RawScan) -> None:
    """Motor positions from NXtransformations rotations and NXpositioner values (deg): fixed
    circles into raw.motors, the one rotation that varies frame by frame as the rocking motor."""
    import h5py

    n0 = raw.intensity.shape[0] if raw.intensity.ndim == 3 else 0
    rocking: dict[str, np.ndarray] = {}

    def angle(dset) -> np.ndarray:
        values = np.asarray(dset[()], float).ravel()
        return np.degrees(values) if _units(dset).lower() in _RADIANS else values

    def visit(name, obj):
        if not isinstance(obj, h5py.Group):
            return
        kind = _nx_class(obj)
        if kind == "NXtransformations":
            items = [
                (k, d)
                for k, d in obj.items()
                if isinstance(d, h5py.Dataset) and _attr(d, "transformation_type") == "rotation"
            ]
        elif kind == "NXpositioner" and isinstance(obj.get("value"), h5py.Dataset):
            items = [(name.rsplit("/", 1)[-1], obj["value"])]
        else:
            return
        for motor, dset in items:
            values = angle(dset)
            if values.size == n0 > 1 and np.ptp(values) > 0:
                rocking[motor] = values
            elif values.size:
                raw.motors[motor] = float(values[0])
            raw.found(f"motors.{motor}", dset.name)

    f.visititems(visit)
    for motor, values in rocking.items():
        raw.motors[motor] = float(values[0])
    if len(rocking) == 1:
        [(raw.rocking_motor, values)] = rocking.items()
        if raw.rocking_deg is None:
            raw.rocking_deg = values
            raw.found("rocking", raw.sources[f"motors.{raw.rocking_motor}"])


def _attr(obj, name: str) -> str:
    value = obj.attrs.get(name, b"")
    return value.decode() if isinstance(value, bytes) else str(value)


def _is_nexus(f) -> bool:
    return any(_nx_class(g) == "NXentry" for g in f.values())


def _nx_class(obj) -> str:
    return _attr(obj, "NX_class")


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
