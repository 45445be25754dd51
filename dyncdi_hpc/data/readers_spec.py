"""Scans recorded by spec with area-detector TIFF frames (APS 34-ID-C) -> RawScan.

The spec file is parsed by xrayutilities (`xrayutilities.io.SPECFile`). The layout assumed is
spec's standard data file format (Certified Scientific Software, spec manual, "Standard Data
File Format": `#O`/`#o` motor names and mnemonics, `#S n command`, `#P` motor positions at the
scan's start, `#L` column names, one data line per point) with the areaDetector headers that
34-ID-C's spec macros write (as cohere's 34-ID-C reader, cohere-ui `beamlines/aps_34idc`, and
bcdi's `Loader34ID` read them):

- the rocked motor is the scan command's second word, a mnemonic (`ascan th ...`) matched to a
  circle of the preset through its `mnemonic` (or name); its value at each frame is the data
  column of that circle's motor name (`Theta`);
- every circle's position is its motor's `#P` entry (the scan's start; the rocking motor's
  per-frame values replace its own);
- energy and distance are the preset's `energy` and `distance` motors in the `#P` lines,
  converted from their units;
- the detector is the header `files.spec.detector_header` (`#UIMDET 34idcTIM2:`); the chip
  pixels the frames cover are the header `files.spec.roi_header` (`#UIMR5 minX sizeX minY
  sizeY ...`, X the column, Y the row);
- the frames are the TIFFs of the FRAMES folder whose names match `files.spec.frames`
  (a glob after formatting with the scan number), in frame-number order; when none match,
  every TIFF of the folder in name order. Their count must equal the scan's recorded points.
"""

from __future__ import annotations

import re
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from ..config.beamline import Beamline
from ..errors import DyncdiError
from .readers import RawScan, motor_readings, read_frames, tiff_files

SPEC_FILES = {
    "detector_header": "UIMDET",
    "roi_header": "UIMR5",
    "frames": "*_S{scan:04d}_*.tif",
}


def read_spec_scan(frames_path: Path, spec_path: Path, scan: int | None, preset: Beamline):
    """The frames of `frames_path` (a folder) and the geometry of scan number `scan` of the
    spec file, read through the preset's names (see the module doc). Returns a RawScan."""
    import xrayutilities as xu

    names = {**SPEC_FILES, **preset.files.get("spec", {})}
    spec_path = Path(spec_path)
    if not spec_path.is_file():
        raise DyncdiError("--spec", f"no such file {str(spec_path)!r}", "check the path")
    if scan is None:
        raise DyncdiError("--scan", "no scan number", "give --scan N (the spec file's #S N)")
    with _quiet(xu):
        entry = _scan(xu.io.SPECFile(str(spec_path)), scan, spec_path)
        entry.ReadData()
    if entry.data is None or not len(entry.data):
        raise DyncdiError(
            "--scan",
            f"scan {scan} of {spec_path.name} has no data points (aborted?)",
            "give a scan that recorded its points",
        )
    rocking, values = _rocking(entry, preset, scan)
    files = _frame_files(Path(frames_path), names["frames"], scan)
    if len(files) != len(values):
        raise DyncdiError(
            "FRAMES",
            f"{len(files)} frames in {str(frames_path)!r} but scan {scan} of {spec_path.name} "
            f"recorded {len(values)} points",
            "give the folder of this scan's frames (one per point), or the right --scan",
        )
    raw = RawScan(read_frames(files), None)
    raw.source = {
        "format": "spec+tiff",
        "path": str(frames_path),
        "spec": str(spec_path),
        "scan": scan,
        "command": entry.command,
        "frames": [f.name for f in files],
    }
    raw.rocking_motor, raw.rocking_deg = rocking, values
    raw.found(
        "rocking", f"{spec_path.name} scan {scan}: command {entry.command!r}, column {rocking}"
    )
    raw.motors = {k.removeprefix("INIT_MOPO_"): float(v) for k, v in entry.init_motor_pos.items()}
    raw.found("motors", f"{spec_path.name} scan {scan}: #P lines (the scan's start)")
    motor_readings(raw, preset, f"{spec_path.name}: #P")
    _headers(raw, entry, names, spec_path.name)
    return raw


@contextmanager
def _quiet(xu):
    """xrayutilities prints what it parses unless its verbosity is 0."""
    before = xu.config.VERBOSITY
    xu.config.VERBOSITY = 0
    try:
        yield
    finally:
        xu.config.VERBOSITY = before


def _scan(spec_file, scan: int, spec_path: Path):
    numbers = [s.nr for s in spec_file.scan_list]
    for entry in spec_file.scan_list:
        if entry.nr == scan:
            return entry
    listed = f"scans {numbers[0]}-{numbers[-1]}" if numbers else "no scans"
    raise DyncdiError(
        "--scan",
        f"{spec_path.name} has no scan {scan} ({listed})",
        "give the number of a #S line of the spec file",
    )


def _rocking(entry, preset: Beamline, scan: int) -> tuple[str, np.ndarray]:
    """The rocked circle's name and its value at each point (deg), from the scan command."""
    words = entry.command.split()
    word = words[1] if len(words) > 1 else ""
    try:
        circle = preset.circle(word)
    except DyncdiError:
        raise DyncdiError(
            "--beamline",
            f"scan {scan} ({entry.command.strip()!r}) rocks {word!r}, which is not a circle "
            f"(name or mnemonic) of the preset {preset.name}",
            f"give the circle its mnemonic {word!r} in the preset, or load a rocking scan",
        ) from None
    if circle not in preset.sample_circles:
        raise DyncdiError(
            "--scan",
            f"scan {scan} rocks {circle.name}, a detector circle of {preset.name}",
            "load a rocking scan of a sample circle",
        )
    columns = entry.data.dtype.names or ()
    column = next((c for c in columns if c.lower() == circle.name.lower()), None)
    if column is None:
        raise DyncdiError(
            "--spec",
            f"scan {scan} has no data column {circle.name!r} (columns: {', '.join(columns)})",
            "check the preset's circle names against the spec file's #O lines",
        )
    return circle.name, np.asarray(entry.data[column], float)


def _frame_files(folder: Path, pattern: str, scan: int) -> list[Path]:
    if not folder.is_dir():
        raise DyncdiError("FRAMES", f"no such folder {str(folder)!r}", "give the frames' folder")
    try:
        matching = list(folder.glob(pattern.format(scan=scan)))
    except (KeyError, IndexError, ValueError):
        raise DyncdiError(
            "--beamline",
            f"files.spec.frames {pattern!r} is not a glob with {{scan}} as its only field",
            'write it like "*_S{scan:04d}_*.tif"',
        ) from None
    if not matching:
        return tiff_files(folder)

    def number(path: Path) -> int:
        digits = re.findall(r"\d+", path.stem)
        return int(digits[-1]) if digits else -1

    return sorted(matching, key=lambda p: (number(p), p.name))


def _headers(raw: RawScan, entry, names: dict, file_name: str) -> None:
    """The detector's name and the chip pixels the frames cover, from the scan's headers."""
    detector = entry.getheader_element(names["detector_header"])
    if detector:
        raw.detector = detector.strip().rstrip(":")
        raw.found("detector", f"{file_name}: #{names['detector_header']}")
    roi = entry.getheader_element(names["roi_header"])
    if roi:
        try:
            min_x, size_x, min_y, size_y = (int(v) for v in roi.split()[:4])
        except ValueError:
            raise DyncdiError(
                "--spec",
                f"#{names['roi_header']} {roi.strip()!r} is not minX sizeX minY sizeY",
                "check files.spec.roi_header in the preset, or give --roi",
            ) from None
        raw.roi = (min_y, min_y + size_y, min_x, min_x + size_x)
        raw.found("roi", f"{file_name}: #{names['roi_header']} (minX sizeX minY sizeY)")
