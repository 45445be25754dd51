"""The q-space steps of a scan measured on a real diffractometer, from its circles, its
detector and the motor positions at the Bragg peak (computed with xrayutilities).

Frames (every vector here is in one of them):

* Laboratory frame, CXI convention: z along the incident beam (downstream), y vertical up,
  x = y cross z (horizontal, completing a right-handed frame). A diffractometer described in
  another frame names its beam and vertical directions; vectors are turned into this frame.
* Sample frame: the frame of the sample stage with every sample circle at zero (what
  xrayutilities' `QConversion.area` returns); a crystal mounted once is fixed in it, so scans
  of several reflections of one crystal share it.
* Crystal frame: z along the measured scattering vector Q at the peak, x in the plane of
  k_i and Q (along the part of k_i normal to Q), y = z cross x. For the symmetric
  geometry it is physics/geometry.py's sample frame (x in the scattering plane, y the
  rocking axis).

The dataset is indexed (rocking step, detector row, detector column); its q steps b0, b1, b2
are the changes of Q from one rocking step, one row and one column at the peak pixel.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..errors import ParameterError

AXES = ("x+", "x-", "y+", "y-", "z+", "z-")


@dataclass(frozen=True)
class Diffractometer:
    """Circles in xrayutilities notation ('y+': right-handed about +y), outer to inner, in a
    frame whose incident beam and vertical directions are `beam` and `up`."""

    sample_circles: tuple[str, ...]
    detector_circles: tuple[str, ...]
    beam: str = "z+"
    up: str = "y+"


@dataclass(frozen=True)
class DetectorPlane:
    """Where the detector's pixels point: row and column directions at zero detector angles
    (xrayutilities notation, in the diffractometer's frame), pixel pitch (m), distance (m),
    the direct-beam pixel at zero angles (chip row, column; may be fractional or off the
    chip), chip size (pixels) and the rotation and tilt of the detector plane (deg)."""

    row_direction: str
    column_direction: str
    pixel_size_m: tuple[float, float]
    distance_m: float
    centre_channel: tuple[float, float]
    chip: tuple[int, int]
    rotation_deg: float = 0.0
    tilt_deg: float = 0.0
    tilt_azimuth_deg: float = 0.0


@dataclass(frozen=True)
class LabFrame:
    """A measured scan's q steps and frames at the Bragg peak (hashable: static under jit).

    q_steps_lab: columns b0 (rocking step), b1 (detector row), b2 (detector column), nm^-1;
    q_peak_lab: Q at the peak pixel and angles, nm^-1; sample_to_lab: rotation taking sample
    frame vectors to the laboratory frame at the peak angles. All in the CXI laboratory frame.
    """

    q_steps_lab: tuple[tuple[float, float, float], ...]
    q_peak_lab: tuple[float, float, float]
    sample_to_lab: tuple[tuple[float, float, float], ...]

    @property
    def q_nm(self) -> float:
        """|Q| at the peak (nm^-1)."""
        return float(np.linalg.norm(self.q_peak_lab))

    @property
    def crystal_to_lab(self) -> np.ndarray:
        """Rotation (3, 3) whose columns are the crystal frame's axes in the lab frame."""
        z = np.asarray(self.q_peak_lab) / self.q_nm
        k_in = np.array([0.0, 0.0, 1.0])
        x = k_in - (k_in @ z) * z
        x /= np.linalg.norm(x)
        return np.stack([x, np.cross(z, x), z], axis=1)

    @property
    def q_steps_crystal(self) -> np.ndarray:
        """q steps b0, b1, b2 as (3, 3) columns in the crystal frame (nm^-1)."""
        return self.crystal_to_lab.T @ np.asarray(self.q_steps_lab)

    def to_attrs(self) -> dict:
        """JSON-serialisable lists (nested, rows of the matrices)."""
        return {
            "q_basis_lab": [list(r) for r in self.q_steps_lab],
            "q_peak_lab": list(self.q_peak_lab),
            "sample_to_lab": [list(r) for r in self.sample_to_lab],
        }

    @classmethod
    def from_attrs(cls, attrs: dict) -> LabFrame:
        """Inverse of to_attrs."""
        return lab_frame(attrs["q_basis_lab"], attrs["q_peak_lab"], attrs["sample_to_lab"])


def lab_frame(q_steps_lab, q_peak_lab, sample_to_lab) -> LabFrame:
    """A LabFrame from array-likes (3, 3), (3,), (3, 3)."""

    def matrix(a) -> tuple[tuple[float, float, float], ...]:
        return tuple(tuple(float(v) for v in row) for row in np.asarray(a, float))

    return LabFrame(
        matrix(q_steps_lab), tuple(float(v) for v in np.asarray(q_peak_lab)), matrix(sample_to_lab)
    )


def _unit(axis: str) -> np.ndarray:
    if axis not in AXES:
        raise ParameterError("axis", repr(axis), f"use one of {', '.join(AXES)}")
    v = np.zeros(3)
    v["xyz".index(axis[0])] = 1.0 if axis[1] == "+" else -1.0
    return v


def to_cxi(diffractometer: Diffractometer) -> np.ndarray:
    """Rotation (3, 3) from the diffractometer's frame to the CXI laboratory frame."""
    beam, up = _unit(diffractometer.beam), _unit(diffractometer.up)
    if abs(beam @ up) > 0:
        raise ParameterError(
            "up", f"{diffractometer.up} is not normal to the beam {diffractometer.beam}", ""
        )
    return np.stack([np.cross(up, beam), up, beam])


def measured_frame(
    diffractometer: Diffractometer,
    detector: DetectorPlane,
    sample_deg: tuple[float, ...],
    detector_deg: tuple[float, ...],
    rocking_circle: int,
    rocking_step_deg: float,
    energy_kev: float,
    peak_pixel: tuple[float, float],
    binning: tuple[int, int] = (1, 1),
) -> LabFrame:
    """q steps (nm^-1) at chip pixel peak_pixel (row, column; fractional between pixels) and
    the given motor positions (deg, one per circle, outer to inner); the rocking step turns
    sample circle `rocking_circle` by rocking_step_deg; a row or column step spans `binning`
    chip pixels."""
    import xrayutilities as xu

    if len(sample_deg) != len(diffractometer.sample_circles):
        raise ParameterError(
            "sample_angles",
            f"{len(sample_deg)} angles for {len(diffractometer.sample_circles)} sample circles",
            "give one angle per circle",
        )
    if len(detector_deg) != len(diffractometer.detector_circles):
        raise ParameterError(
            "detector_angles",
            f"{len(detector_deg)} angles for {len(diffractometer.detector_circles)} circles",
            "give one angle per circle",
        )
    if not 0 <= rocking_circle < len(sample_deg):
        raise ParameterError("rocking_circle", str(rocking_circle), "name a sample circle")
    qc = xu.experiment.QConversion(
        list(diffractometer.sample_circles),
        list(diffractometer.detector_circles),
        tuple(_unit(diffractometer.beam)),
        en=1e3 * energy_kev,
    )
    row, col = (int(np.floor(p)) for p in peak_pixel)
    frac = (peak_pixel[0] - row, peak_pixel[1] - col)

    def q_sample(rocking: float, d_row: float, d_col: float) -> np.ndarray:
        # a fractional pixel is reached by moving the centre channel the other way
        qc.init_area(
            detector.row_direction,
            detector.column_direction,
            cch1=detector.centre_channel[0] - d_row - frac[0],
            cch2=detector.centre_channel[1] - d_col - frac[1],
            Nch1=max(detector.chip[0], row + 1, 1),
            Nch2=max(detector.chip[1], col + 1, 1),
            distance=detector.distance_m,
            pwidth1=detector.pixel_size_m[0],
            pwidth2=detector.pixel_size_m[1],
            detrot=detector.rotation_deg,
            tiltazimuth=detector.tilt_azimuth_deg,
            tilt=detector.tilt_deg,
            roi=(row, row + 1, col, col + 1),
        )
        sample = list(sample_deg)
        sample[rocking_circle] += rocking
        qx, qy, qz = qc.area(*sample, *detector_deg, deg=True)
        return 10.0 * np.array([qx[0, 0], qy[0, 0], qz[0, 0]])

    # central differences: the steps at the peak, not beside it (O(step^2) from the tangent)
    half = 0.5 * rocking_step_deg
    steps_sample = np.stack(
        [
            q_sample(half, 0, 0) - q_sample(-half, 0, 0),
            q_sample(0, 0.5 * binning[0], 0) - q_sample(0, -0.5 * binning[0], 0),
            q_sample(0, 0, 0.5 * binning[1]) - q_sample(0, 0, -0.5 * binning[1]),
        ],
        axis=1,
    )
    at_peak = q_sample(0, 0, 0)
    to_lab = to_cxi(diffractometer) @ _sample_to_lab(qc, sample_deg)
    return lab_frame(to_lab @ steps_sample, to_lab @ at_peak, to_lab)


def _sample_to_lab(qc, sample_deg: tuple[float, ...]) -> np.ndarray:
    columns = [qc.transformSample2Lab(e, *sample_deg) for e in np.eye(3)]
    return np.stack([np.asarray(c, float) for c in columns], axis=1)


SYMMETRIC = Diffractometer(sample_circles=("x-",), detector_circles=("x-",))


def symmetric_frame(
    energy_kev: float,
    bragg_angle_rad: float,
    rocking_step_rad: float,
    pixel_size_m: float,
    detector_distance_m: float,
) -> LabFrame:
    """The idealised symmetric geometry as one case of the general one: a vertical
    scattering plane, the crystal rocked about the horizontal x axis at the Bragg angle, the
    detector at twice it, the peak on its centre channel, rows up at zero angles."""
    detector = DetectorPlane(
        row_direction="y+",
        column_direction="x+",
        pixel_size_m=(pixel_size_m, pixel_size_m),
        distance_m=detector_distance_m,
        centre_channel=(0.0, 0.0),
        chip=(2, 2),
    )
    tb = float(np.degrees(bragg_angle_rad))
    return measured_frame(
        SYMMETRIC,
        detector,
        (tb,),
        (2 * tb,),
        0,
        float(np.degrees(rocking_step_rad)),
        energy_kev,
        (0, 0),
    )
