"""Scans recorded by BLISS in one HDF5 file (ESRF ID01) -> RawScan.

The layout assumed is that of the BLISS NeXus writer (ESRF's `blisswriter`, "Bliss
NeXus-compliant HDF5 file writer", https://pypi.org/project/blisswriter/), as ID01's own tools
read it (bcdi's `LoaderID01BLISS`, cdiutils' `ID01Loader`, ID01's `id01lib`):

- one NXentry per scan, named `<scan>.1` (or `<sample>_<scan>.1`); its `title` is the scan
  command (`ascan eta 10.0 11.0 100 0.1`): the rocked motor is its second word;
- `instrument/positioners/<motor>` (files.bliss.positioners): every motor's position in degrees,
  a scalar for a fixed motor and one value per point for a scanned one; the scanned motor's
  values are also in `measurement/<motor>`, which is read first;
- `measurement/<detector>` (files.bliss.detector_data): the frames (points, rows, columns), the
  detector one of the preset's (the first found, or the one named by `detector`);
- the energy is the preset's energy motor among the positioners (`mononrj`, keV); the distance
  is `instrument/<detector>/distance` (files.bliss.detector_distance, m, written when the
  detector is calibrated), else the preset's distance motor among the positioners;
- the frames cover the whole chip unless `roi` says otherwise (BLISS saves whole frames).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..config.beamline import Beamline
from ..errors import DyncdiError
from .readers import RawScan, motor_readings, tidy

BLISS_FILES = {
    "positioners": "instrument/positioners",
    "detector_data": "measurement/{detector}",
    "detector_distance": "instrument/{detector}/distance",
    "title": "title",
}


def read_bliss_scan(path: Path, scan: int | None, preset: Beamline, detector: str | None):
    """Scan number `scan` of a BLISS HDF5 file through the preset's names (see the module
    doc). Returns a RawScan."""
    import h5py
    import hdf5plugin  # noqa: F401  (BLISS and Lima compress frames with bitshuffle/LZ4)

    names = {**BLISS_FILES, **preset.files.get("bliss", {})}
    path = Path(path)
    with h5py.File(path, "r") as f:
        key = _entry(f, scan, path)
        entry = f[key]
        detector = detector or _detector(entry, preset, names, path, key)
        data_path = names["detector_data"].format(detector=detector)
        if data_path not in entry:
            raise DyncdiError(
                "detector",
                f"{path.name}: no frames {key}/{data_path}",
                f"name a detector of {key}/measurement in --geometry's detector",
            )
        raw = RawScan(np.asarray(entry[data_path][()]), None)
        raw.source = {"format": "bliss", "path": str(path), "entry": key, "dataset": data_path}
        raw.detector = detector
        raw.found("detector", f"{path.name}: {key}/{data_path}")
        title = _text(entry.get(names["title"]))
        raw.source["command"] = title
        _positioners(raw, entry, names["positioners"], title, f"{path.name}: {key}")
        motor_readings(raw, preset, f"{path.name}: {key}/{names['positioners']}/")
        distance = names["detector_distance"].format(detector=detector)
        if distance in entry:
            raw.metadata["detector_distance_m"] = tidy(float(np.asarray(entry[distance][()])))
            raw.found("detector_distance_m", f"{path.name}: {key}/{distance} (m)")
    return raw


def _entry(f, scan: int | None, path: Path) -> str:
    entries = [k for k in f if k.endswith(".1")]
    if scan is None:
        if len(entries) == 1:
            return entries[0]
        raise DyncdiError(
            "--scan", f"{path.name} holds {len(entries)} scans", "give --scan N (entry N.1)"
        )
    for k in entries:
        if k == f"{scan}.1" or k.endswith(f"_{scan}.1"):
            return k
    raise DyncdiError(
        "--scan",
        f"{path.name} has no scan {scan} (entries {', '.join(sorted(entries)) or 'none'})",
        "give the number of one of its N.1 entries",
    )


def _detector(entry, preset: Beamline, names: dict, path: Path, key: str) -> str:
    for name in preset.detectors:
        if names["detector_data"].format(detector=name) in entry:
            return name
    raise DyncdiError(
        "detector",
        f"{path.name}: none of {preset.name}'s detectors ({', '.join(preset.detectors)}) in "
        f"{key}/measurement",
        "name the detector in --geometry's detector, or add it to the preset",
    )


def _positioners(raw: RawScan, entry, where: str, title: str, label: str) -> None:
    """Motors and the rocked motor's values from the positioners and the scan title."""
    group = entry.get(where)
    if group is None:
        raise DyncdiError("FRAMES", f"{label} has no {where}", "check files.bliss.positioners")
    n0 = raw.intensity.shape[0] if raw.intensity.ndim == 3 else 0
    for motor, dset in group.items():
        values = np.asarray(dset[()], float).ravel()
        if values.size:
            raw.motors[motor] = float(values[0])
    raw.found("motors", f"{label}/{where}")
    words = title.split()
    motor = words[1] if len(words) > 1 else None
    if motor is None:
        return
    for place in (f"measurement/{motor}", f"{where}/{motor}"):
        values = np.asarray(entry[place][()], float).ravel() if place in entry else None
        if values is not None and values.size == n0:
            raw.rocking_motor, raw.rocking_deg = motor, values
            raw.found("rocking", f"{label}: title {title!r}, {place}")
            return
    raise DyncdiError(
        "FRAMES",
        f"{label}: the scan {title!r} rocks {motor!r} but no {n0} values of it were found",
        f"check {label}/measurement/{motor}",
    )


def _text(dset) -> str:
    if dset is None:
        return ""
    value = dset[()]
    return value.decode() if isinstance(value, bytes) else str(value)
