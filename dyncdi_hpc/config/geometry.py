"""The scan geometry as a user writes it (keV, degrees, micrometres, metres): the idealised
symmetric geometry of simulations, or a measured one named by its beamline preset and the
motor positions at the Bragg peak."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, model_serializer, model_validator

from ..errors import DyncdiError, field_path
from ..physics.diffractometer import LabFrame, measured_frame
from ..physics.geometry import Geometry, make_geometry
from .base import Frozen

MEASURED_FIELDS = (
    "beamline",
    "detector",
    "motors",
    "rocking_motor",
    "centre_channel",
    "roi",
    "binning",
)


class GeometryConfig(Frozen):
    """Scan geometry in the units a beamline scientist writes down.

    Without `beamline` it is the idealised symmetric geometry (physics/geometry.py). With it,
    the q steps come from the preset's diffractometer at the given motor positions (those of
    the array's centre frame, where the Bragg peak is) and the chip pixel of the array's
    centre (from roi and binning).
    """

    energy_kev: float = Field(gt=0, description="photon energy (keV)")
    material: str = Field("Au", description="crystal (xraydb name), e.g. Au, Pt, Si, GaAs")
    hkl: tuple[int, int, int] = Field((1, 1, 1), description="the reflection's Miller indices")
    shape: tuple[int, int, int] = Field(description="(rocking angles, detector rows, columns)")
    rocking_step_deg: float = Field(gt=0, description="rocking step between the array's frames")
    pixel_size_um: float | None = Field(
        None, gt=0, description="detector pixel pitch (um); a preset's detector gives it"
    )
    detector_distance_m: float = Field(gt=0, description="sample-detector distance (m)")
    polarisation: Literal["sigma", "pi"] = Field(
        "sigma", description="polarisation of the incident beam against the scattering plane"
    )
    beamline: str | None = Field(
        None, description="beamline preset (name or YAML path): a measured geometry"
    )
    detector: str | None = Field(None, description="detector of the preset (default: its own)")
    motors: dict[str, float] | None = Field(
        None, description="every circle's position (deg) at the array's centre frame, by name"
    )
    rocking_motor: str | None = Field(None, description="the sample circle rocked in the scan")
    centre_channel: tuple[float, float] | None = Field(
        None, description="chip pixel (row, column) of the direct beam at zero detector angles"
    )
    roi: tuple[int, int, int, int] | None = Field(
        None,
        description="chip pixels the array covers: row_start, row_stop, col_start, col_stop "
        "(default: the whole chip from 0)",
    )
    binning: tuple[int, int] = Field((1, 1), description="chip pixels per array row, column")

    @model_serializer(mode="wrap")
    def _without_unused(self, handler):
        # fields added for measured geometries leave the dump (and so every fingerprint and
        # task id of the simulations written before them) when they are at their defaults
        data = handler(self)
        for name in MEASURED_FIELDS:
            if name in data and getattr(self, name) == type(self).model_fields[name].default:
                del data[name]
        return data

    @model_validator(mode="after")
    def _complete(self) -> GeometryConfig:
        if self.beamline is None:
            extra = [
                n
                for n in ("detector", "motors", "rocking_motor", "centre_channel", "roi")
                if getattr(self, n) is not None
            ]
            if extra:
                raise ValueError(f"{', '.join(extra)} need a beamline (set beamline: NAME)")
            if self.pixel_size_um is None:
                raise ValueError("pixel_size_um is required without a beamline preset")
        else:
            if self.motors is None or self.rocking_motor is None:
                raise ValueError("a beamline geometry needs motors and rocking_motor")
        if min(self.binning) < 1:
            raise ValueError(f"binning {list(self.binning)}: give positive integers")
        return self

    def build(self, field_prefix: str = "geometry") -> Geometry:
        """The physics Geometry (validated: material, reflection, Bragg cutoff, the preset's
        circles and motors); a problem is an error whose field is field_prefix.<parameter>."""
        with field_path(field_prefix):
            frame, pixel_um = self._measured() if self.beamline else (None, self.pixel_size_um)
            return make_geometry(
                energy_kev=self.energy_kev,
                material=self.material,
                hkl=self.hkl,
                shape=self.shape,
                rocking_step_rad=math.radians(self.rocking_step_deg),
                pixel_size_m=pixel_um * 1e-6,
                detector_distance_m=self.detector_distance_m,
                polarisation=self.polarisation,
                frame=frame,
            )

    def peak_pixel(self, chip: tuple[int, int]) -> tuple[float, float]:
        """Chip pixel (row, column) of the array's centre, where the Bragg peak is."""
        roi = self.roi or (0, self.shape[1] * self.binning[0], 0, self.shape[2] * self.binning[1])
        if not (0 <= roi[0] < roi[1] <= chip[0] and 0 <= roi[2] < roi[3] <= chip[1]):
            raise DyncdiError(
                "roi",
                f"{list(roi)} is outside the {chip[0]} x {chip[1]} chip",
                "give row_start, row_stop, col_start, col_stop within the chip",
            )
        b_row, b_col = self.binning
        return (
            roi[0] + b_row * (self.shape[1] // 2) + (b_row - 1) / 2,
            roi[2] + b_col * (self.shape[2] // 2) + (b_col - 1) / 2,
        )

    def _measured(self) -> tuple[LabFrame, float]:
        from .beamline import load_beamline

        preset = load_beamline(self.beamline)
        detector = preset.detector(self.detector)
        pixel_um = self.pixel_size_um or detector.pixel_size_um[0]
        plane = detector.plane(self.detector_distance_m, self.centre_channel)
        if self.pixel_size_um is not None:
            pitch = 1e-6 * self.pixel_size_um
            plane = type(plane)(**{**plane.__dict__, "pixel_size_m": (pitch, pitch)})
        motors = {k.lower(): v for k, v in (self.motors or {}).items()}
        missing = [
            c.name
            for c in preset.circles
            if c.name.lower() not in motors and (c.mnemonic or "").lower() not in motors
        ]
        if missing:
            raise DyncdiError(
                "motors",
                f"no position for {', '.join(missing)} ({preset.name})",
                "give every circle's angle in degrees (motors: {NAME: DEG})",
            )

        def angle(c) -> float:
            value = motors.get(c.name.lower(), motors.get((c.mnemonic or "").lower()))
            return value - c.offset_deg

        rocking = preset.circle(self.rocking_motor)
        if rocking not in preset.sample_circles:
            raise DyncdiError(
                "rocking_motor",
                f"{self.rocking_motor!r} is a detector circle",
                f"rock a sample circle: {', '.join(c.name for c in preset.sample_circles)}",
            )
        frame = measured_frame(
            preset.diffractometer,
            plane,
            tuple(angle(c) for c in preset.sample_circles),
            tuple(angle(c) for c in preset.detector_circles),
            preset.sample_circles.index(rocking),
            self.rocking_step_deg,
            self.energy_kev,
            self.peak_pixel(detector.chip),
            self.binning,
        )
        return frame, pixel_um * self.binning[0]
