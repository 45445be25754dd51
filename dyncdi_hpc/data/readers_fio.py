"""Scans recorded at PETRA III P10: a .fio scan file and the Eiger HDF5 master -> RawScan.

The .fio layout assumed is DESY's SPECTRA/Sardana one (as xrayutilities' `io.spectra` and
bcdi's `LoaderP10` read it): lines starting with `!` are comments; `%c` opens the comment block,
whose first line is the scan command (`dscan om -0.5 0.5 100 1.0`: the rocked motor is its
second word); `%p` opens the parameter block, one `name = value` per motor (degrees; the energy
motor `fmbenergy` in eV, as the preset says); `%d` opens the data block, ` Col <i> <name>
<TYPE>` lines naming the columns, then one line per point: the rocked motor's column holds its
value at each frame. The file is `<sample>_<scan:05d>.fio`, which gives the scan number.

The frames are in the Eiger master file (files.fio.master, relative to the folder holding the
scan folders, or FRAMES itself when it is a file): `entry/data/data_000001`, `data_000002`, ...
(points, rows, columns), each dataset or external link compressed with bitshuffle/LZ4, so
`hdf5plugin` is imported before h5py reads them (Dectris, "EIGER HDF5 file format" / the NeXus
NXmx application definition). The distance is `entry/instrument/detector/detector_distance`
(m) and the pixel pitch `entry/instrument/detector/x_pixel_size` (m) when the master has them.
The frames cover the whole chip unless `roi` says otherwise.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ..config.beamline import Beamline
from ..errors import DyncdiError
from .readers import RawScan, motor_readings, tidy

FIO_FILES = {
    "master": "{sample}_{scan:05d}/e4m/{sample}_{scan:05d}_master.h5",
    "data": "entry/data",
    "detector_distance": "entry/instrument/detector/detector_distance",
    "pixel_size": "entry/instrument/detector/x_pixel_size",
}


def read_fio_scan(frames_path: Path, fio_path: Path, scan: int | None, preset: Beamline):
    """The frames of the scan's Eiger master and the geometry of its .fio file (see the
    module doc). Returns a RawScan."""
    names = {**FIO_FILES, **preset.files.get("fio", {})}
    fio_path = Path(fio_path)
    if not fio_path.is_file():
        raise DyncdiError("--spec", f"no such file {str(fio_path)!r}", "check the path")
    command, params, columns = parse_fio(fio_path)
    match = re.fullmatch(r"(.+)_(\d+)", fio_path.stem)
    sample, number = (match.group(1), int(match.group(2))) if match else (fio_path.stem, None)
    if scan is not None and number is not None and scan != number:
        raise DyncdiError(
            "--scan",
            f"{fio_path.name} is scan {number}, not {scan}",
            "give the .fio file of that scan, or drop --scan",
        )
    scan = scan if scan is not None else number
    master = Path(frames_path)
    if master.is_dir():
        if scan is None:
            raise DyncdiError("--scan", f"no scan number in {fio_path.name}", "give --scan N")
        master = master / names["master"].format(sample=sample, scan=scan)
    raw = _read_master(master, names)
    raw.source.update({"fio": str(fio_path), "scan": scan, "command": command})
    raw.motors = {k: v for k, v in params.items() if isinstance(v, float)}
    raw.found("motors", f"{fio_path.name}: %p")
    motor_readings(raw, preset, f"{fio_path.name}: %p")
    words = command.split()
    motor = words[1] if len(words) > 1 else ""
    if motor not in columns:
        raise DyncdiError(
            "--spec",
            f"{fio_path.name}: the scan {command!r} rocks {motor!r} but its data have no such "
            f"column ({', '.join(columns) or 'none'})",
            "give the .fio file of a rocking scan",
        )
    values = columns[motor]
    if values.size != raw.intensity.shape[0]:
        raise DyncdiError(
            "FRAMES",
            f"{raw.intensity.shape[0]} frames in {master.name} but {fio_path.name} recorded "
            f"{values.size} points",
            "give the master file of this scan",
        )
    raw.rocking_motor, raw.rocking_deg = motor, values
    raw.found("rocking", f"{fio_path.name}: command {command!r}, column {motor}")
    return raw


def parse_fio(path: Path) -> tuple[str, dict, dict[str, np.ndarray]]:
    """(scan command, {parameter: float or str}, {column: values (points,)}) of a .fio file."""
    command, params, names, rows = "", {}, [], []
    block = None
    for line in Path(path).read_text().splitlines():
        text = line.strip()
        if not text or text.startswith("!"):
            continue
        if text in ("%c", "%p", "%d"):
            block = text
            continue
        if block == "%c" and not command:
            command = text
        elif block == "%p" and "=" in text:
            key, value = (t.strip() for t in text.split("=", 1))
            try:
                params[key] = float(value)
            except ValueError:
                params[key] = value
        elif block == "%d" and text.startswith("Col "):
            names.append(text.split()[2])
        elif block == "%d":
            rows.append([float(v) for v in text.split()])
    if not names:
        raise DyncdiError("--spec", f"{Path(path).name}: no %d data columns", "give a .fio file")
    table = np.asarray(rows, float).reshape(len(rows), len(names))
    return command, params, {n: table[:, i] for i, n in enumerate(names)}


def _read_master(master: Path, names: dict) -> RawScan:
    import h5py
    import hdf5plugin  # noqa: F401  (Eiger frames are bitshuffle/LZ4 compressed)

    if not master.is_file():
        raise DyncdiError("FRAMES", f"no Eiger master file {str(master)!r}", "check the path")
    with h5py.File(master, "r") as f:
        group = f.get(names["data"])
        keys = sorted(k for k in (group or {}) if k.startswith("data_"))
        if not keys:
            raise DyncdiError(
                "FRAMES",
                f"{master.name} has no {names['data']}/data_NNNNNN frames",
                "give the scan's Eiger master file (or check files.fio.data in the preset)",
            )
        raw = RawScan(np.concatenate([np.asarray(group[k][()]) for k in keys]), None)
        raw.source = {"format": "fio+eiger", "path": str(master), "datasets": keys}
        for field, where, scale in (
            ("detector_distance_m", names["detector_distance"], 1.0),
            ("pixel_size_um", names["pixel_size"], 1e6),
        ):
            if where in f:
                raw.metadata[field] = tidy(float(np.asarray(f[where][()])) * scale)
                raw.found(field, f"{master.name}: {where} (m)")
    return raw
