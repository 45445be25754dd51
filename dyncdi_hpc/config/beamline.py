"""Beamline presets: a diffractometer's circles, the motor names in its files and its
detectors, as data (packaged YAML files under dyncdi_hpc/beamlines/, or a user's own file).

A new instrument is a YAML file of these fields passed by path; no code change. Circles are
written in xrayutilities notation ('y+': right-handed rotation about +y) in the frame that
`beam` and `up` name (the CXI frame, z downstream and y up, unless said otherwise), outer
circle first.
"""

from __future__ import annotations

from functools import cache
from importlib import resources
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from ..errors import DyncdiError
from ..physics.diffractometer import DetectorPlane, Diffractometer
from .base import Frozen, read_yaml, validate

Axis = Literal["x+", "x-", "y+", "y-", "z+", "z-"]


class Circle(Frozen):
    """One rotation stage: its motor's name in the beamline's files and its axis."""

    name: str = Field(description="motor name in the beamline's files (spec #O line, BLISS)")
    axis: Axis = Field(description="rotation axis and sense, xrayutilities notation")
    mnemonic: str | None = Field(None, description="short name in scan commands (spec: th)")
    offset_deg: float = Field(0.0, description="motor reading at the circle's zero (deg)")


class Rectangle(Frozen):
    """Chip pixels [row_start, row_stop) x [col_start, col_stop) (a gap, a seam)."""

    rows: tuple[int, int] = Field(description="row_start, row_stop (chip pixels)")
    cols: tuple[int, int] = Field(description="col_start, col_stop (chip pixels)")


class Detector(Frozen):
    """An area detector: chip, pixel pitch, pixel directions and the pixels it cannot use."""

    chip: tuple[int, int] = Field(description="rows, columns of the full chip (pixels)")
    pixel_size_um: tuple[float, float] = Field(description="row, column pitch (um)")
    row_direction: Axis = Field(description="where higher rows point at zero detector angles")
    column_direction: Axis = Field(description="where higher columns point at zero angles")
    centre_channel: tuple[float, float] = Field(
        description="chip pixel (row, column) of the direct beam at zero detector angles"
    )
    gaps: list[Rectangle] = Field(default_factory=list, description="insensitive gaps")
    seams: list[Rectangle] = Field(
        default_factory=list, description="enlarged pixels at chip boundaries (masked)"
    )
    saturation: float | None = Field(
        None, gt=0, description="counts at and above which a pixel is lost"
    )
    rotation_deg: float = Field(0.0, description="detector rotation about the beam (deg)")
    tilt_deg: float = Field(0.0, description="tilt of the detector plane (deg, xrayutilities)")
    tilt_azimuth_deg: float = Field(0.0, description="direction of that tilt (deg)")

    @model_validator(mode="after")
    def _orthogonal(self) -> Detector:
        if self.row_direction[0] == self.column_direction[0]:
            raise ValueError(
                f"row_direction {self.row_direction} and column_direction "
                f"{self.column_direction} are parallel; give two different axes"
            )
        return self

    def plane(self, distance_m: float, centre_channel: tuple[float, float] | None = None):
        """The physics DetectorPlane at a distance (m), with an optional centre channel."""
        return DetectorPlane(
            row_direction=self.row_direction,
            column_direction=self.column_direction,
            pixel_size_m=(1e-6 * self.pixel_size_um[0], 1e-6 * self.pixel_size_um[1]),
            distance_m=distance_m,
            centre_channel=tuple(centre_channel or self.centre_channel),
            chip=self.chip,
            rotation_deg=self.rotation_deg,
            tilt_deg=self.tilt_deg,
            tilt_azimuth_deg=self.tilt_azimuth_deg,
        )


class MotorReading(Frozen):
    """Where a value is found in the beamline's files, and its units."""

    motor: str = Field(description="its name among the files' motors or positioners")
    units: str = Field(description="units of the reading: keV, eV, m, mm or um")


class Beamline(Frozen):
    """A beamline preset (see the module doc)."""

    name: str = Field(description="the preset's name (--beamline NAME)")
    description: str = Field("", description="one line for `dyncdi beamlines`")
    beam: Axis = Field("z+", description="the incident beam's direction in the circles' frame")
    up: Axis = Field("y+", description="the vertical (up) direction in the circles' frame")
    sample_circles: list[Circle] = Field(min_length=1, description="sample circles, outer first")
    detector_circles: list[Circle] = Field(
        min_length=1, description="detector circles, outer first"
    )
    energy: MotorReading | None = Field(None, description="energy motor (units keV or eV)")
    distance: MotorReading | None = Field(None, description="detector distance motor (mm, m)")
    detectors: dict[str, Detector] = Field(
        min_length=1, description="the area detectors, by name in the files"
    )
    default_detector: str = Field(description="the detector used when the files name none")
    files: dict = Field(
        default_factory=dict, description="reader-specific names (spec headers, HDF5 paths)"
    )

    @model_validator(mode="after")
    def _consistent(self) -> Beamline:
        if self.default_detector not in self.detectors:
            raise ValueError(
                f"default_detector {self.default_detector!r} is not among the detectors "
                f"{sorted(self.detectors)}"
            )
        if self.beam[0] == self.up[0]:
            raise ValueError(f"beam {self.beam} and up {self.up} are parallel")
        names = [c.name for c in self.circles]
        if len(set(names)) != len(names):
            raise ValueError(f"circle names repeat: {names}")
        return self

    @property
    def circles(self) -> list[Circle]:
        """Sample circles then detector circles."""
        return [*self.sample_circles, *self.detector_circles]

    @property
    def diffractometer(self) -> Diffractometer:
        """The physics Diffractometer of this preset."""
        return Diffractometer(
            sample_circles=tuple(c.axis for c in self.sample_circles),
            detector_circles=tuple(c.axis for c in self.detector_circles),
            beam=self.beam,
            up=self.up,
        )

    def circle(self, name: str) -> Circle:
        """The circle of a motor, by name or mnemonic (case-insensitive)."""
        for c in self.circles:
            if name.lower() in (c.name.lower(), (c.mnemonic or "").lower()):
                return c
        raise DyncdiError(
            "rocking_motor",
            f"{name!r} is not a circle of {self.name}",
            f"use one of {', '.join(c.name for c in self.circles)}",
        )

    def detector(self, name: str | None) -> Detector:
        """A detector of the preset (None: the default one)."""
        key = name or self.default_detector
        for k, d in self.detectors.items():
            if k.rstrip(":").lower() == key.rstrip(":").lower():
                return d
        raise DyncdiError(
            "detector",
            f"{name!r} is not a detector of {self.name}",
            f"use one of {', '.join(self.detectors)}",
        )


def packaged_beamlines() -> dict[str, Path]:
    """The presets shipped with the package, by name."""
    folder = resources.files("dyncdi_hpc") / "beamlines"
    return {
        p.name.removesuffix(".yaml"): Path(str(p))
        for p in folder.iterdir()
        if p.name.endswith(".yaml")
    }


@cache
def _read(path: str) -> Beamline:
    return validate(Beamline, read_yaml(Path(path), "--beamline"), path)


def load_beamline(name_or_path: str | Path) -> Beamline:
    """A preset by packaged name (aps-34idc, esrf-id01, petra-p10) or YAML path."""
    packaged = packaged_beamlines()
    key = str(name_or_path)
    if key in packaged:
        return _read(str(packaged[key]))
    path = Path(key)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return _read(str(path.absolute()))
    raise DyncdiError(
        "beamline",
        f"unknown beamline {key!r}",
        f"use one of {', '.join(sorted(packaged))} or the path of a preset YAML "
        "(`dyncdi beamlines` lists them)",
    )
