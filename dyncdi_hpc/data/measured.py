"""The measured geometry of a scan loaded through a beamline preset: every circle's position,
the rocking motor's value at each frame, and, once the data are binned and cropped, the
GeometryConfig fields of the stored array (motors at its centre frame, the chip pixels it
covers, its binning); and the check of the measured |Q| against the material's d-spacing.

Where the positions come from: the YAML (a --geometry file or a sweep dataset's `geometry:
motors:`), else the scan's files. A YAML value of the rocking motor is its value at the given
array's centre frame (as GeometryConfig's `motors` says), the others step by the rocking step
from it; otherwise the files' per-frame values are used.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..config.beamline import Beamline
from ..errors import DyncdiError
from ..physics.geometry import Geometry
from .prepare import Record
from .readers import RawScan

STRAIN_WARNING = 0.005  # |d measured / d material - 1| above which the load warns


@dataclass(frozen=True)
class ScanMotors:
    """Every circle's position (deg, by the preset's circle names), the rocked circle and its
    value at each frame in the order the data are stored (N0,), and each position's origin."""

    positions: dict[str, float]
    rocking_motor: str
    rocking_deg: np.ndarray
    sources: dict[str, str]


def scan_motors(
    raw: RawScan, values: dict, from_yaml: dict, preset: Beamline, descending: bool
) -> ScanMotors:
    """The circles' positions of a scan (see the module doc); descending: the frames are
    stored reversed (the rocking motor decreased)."""
    given = {k.lower(): float(v) for k, v in (from_yaml.get("motors") or {}).items()}
    in_files = {k.lower(): float(v) for k, v in raw.motors.items()}
    positions, sources = {}, {}
    for circle in preset.circles:
        keys = [circle.name.lower(), *([circle.mnemonic.lower()] if circle.mnemonic else [])]
        for origin, table in (("yaml", given), ("file", in_files)):
            hit = next((table[k] for k in keys if k in table), None)
            if hit is not None:
                positions[circle.name], sources[circle.name] = hit, origin
                break
    missing = [c.name for c in preset.circles if c.name not in positions]
    if missing:
        where = raw.source.get("spec") or raw.source.get("fio") or raw.source.get("path")
        raise DyncdiError(
            "motors",
            f"{where} gives no position for {', '.join(missing)}, named by the preset "
            f"{preset.name} (motors in the files: {', '.join(sorted(raw.motors)) or 'none'})",
            "fix the preset's circle names, or give them in --geometry's motors: {NAME: DEG}",
        )
    if values.get("rocking_motor") is None:
        raise DyncdiError(
            "rocking_motor",
            "the files do not say which motor was rocked",
            "give rocking_motor in --geometry (one of "
            f"{', '.join(c.name for c in preset.sample_circles)})",
        )
    rocking = _rocking_circle(preset, values["rocking_motor"])
    n0 = raw.intensity.shape[0]
    same = raw.rocking_motor is not None and preset.circle(rocking) == _circle_or_none(
        preset, raw.rocking_motor
    )
    per_frame = raw.rocking_deg if same else None
    if sources[rocking] == "yaml" or per_frame is None:
        step = float(values["rocking_step_deg"])
        per_frame = positions[rocking] + (np.arange(n0) - n0 // 2) * step
        sources[rocking] = f"{sources[rocking]} (centre frame) and the rocking step"
    elif descending:
        per_frame = per_frame[::-1]
    return ScanMotors(positions, rocking, np.asarray(per_frame, float), sources)


def _circle_or_none(preset: Beamline, name: str):
    try:
        return preset.circle(name)
    except DyncdiError:
        return None


def _rocking_circle(preset: Beamline, name: str) -> str:
    try:
        circle = preset.circle(name)
    except DyncdiError:
        raise DyncdiError(
            "rocking_motor",
            f"the scan rocks {name!r}, which is not a circle of the preset {preset.name}",
            f"add it to the preset's circles (name or mnemonic), or rock one of "
            f"{', '.join(c.name for c in preset.sample_circles)}",
        ) from None
    if circle not in preset.sample_circles:
        raise DyncdiError(
            "rocking_motor",
            f"the scan rocks {circle.name}, a detector circle of {preset.name}",
            f"rock a sample circle: {', '.join(c.name for c in preset.sample_circles)}",
        )
    return circle.name


def stored_fields(
    motors: ScanMotors,
    frames_roi: tuple[int, int, int, int],
    chip: tuple[int, int],
    binning: int,
    start: tuple[int, int, int],
    shape: tuple[int, int, int],
) -> dict:
    """GeometryConfig fields of the stored array: start is the index (binned pixels, frames)
    of its first voxel in the binned data (negative where it is padded), shape its shape."""
    roi = []
    for axis, (first, size, chip_size) in enumerate(
        zip(frames_roi[::2], shape[1:], chip, strict=True), start=1
    ):
        lo = first + binning * start[axis]
        hi = lo + binning * size
        if lo < 0 or hi > chip_size:
            axis_name = ("rows", "columns")[axis - 1]
            raise DyncdiError(
                "--shape",
                f"the stored array would cover chip {axis_name} [{lo}, {hi}), past the chip's "
                f"{chip_size} (its padding lies off the detector)",
                "give a smaller --shape along the detector axes",
            )
        roi.extend([lo, hi])
    centre = start[0] + shape[0] // 2
    return {
        "motors": {**motors.positions, motors.rocking_motor: float(motors.rocking_deg[centre])},
        "rocking_motor": motors.rocking_motor,
        "roi": tuple(roi),
        "binning": (binning, binning),
    }


def check_strain(geometry: Geometry, record: Record) -> None:
    """Warn when the measured |Q| disagrees with the material's d-spacing by more than
    STRAIN_WARNING (the energy, distance, centre channel or motors may be wrong)."""
    strain = geometry.lattice_strain
    if abs(strain) > STRAIN_WARNING:
        d_measured = 2 * np.pi / geometry.h_nm
        record.note(
            "geometry",
            f"the measured |Q| {geometry.h_nm:.4f} nm^-1 implies d = {d_measured:.5f} nm, a "
            f"lattice strain of {100 * strain:+.2f}% against {geometry.material} "
            f"{''.join(str(i) for i in geometry.hkl)} (d = {geometry.d_spacing_nm:.5f} nm): "
            "check the energy, the distance, the centre channel and the motors",
            lattice_strain=strain,
        )
