"""Preparation of a raw scan for reconstruction: the geometry completed from the file, a YAML
and explicit values; invalid, saturated and file-masked pixels masked; counts checked; pixels
binned; the peak found and the data cropped (or padded, masked) to FFT-friendly sizes with the
peak at the centre. Every choice is noted in a Record (for the provenance and the user).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy.ndimage import uniform_filter

from ..config import GeometryConfig, read_yaml
from ..errors import DyncdiError
from .causes import mark
from .readers import RawScan, tidy

GEOMETRY_FIELDS = (
    "energy_kev",
    "material",
    "hkl",
    "rocking_step_deg",
    "pixel_size_um",
    "detector_distance_m",
    "polarisation",
)
ROCKING_STEP_SPREAD = 0.01  # rocking steps may vary by 1% of their mean (motor readback)
EDGE_FRACTION = 8  # the peak must lie at least N // 8 (and 4) voxels from each edge
ROCKING_TAIL = 0.1  # first and last frames must hold less than this of the brightest frame


class LoadWarning(UserWarning):
    """A problem in a loaded scan that was handled; the message says what was done."""


@dataclass
class Record:
    """Choices made while loading, for the provenance attrs and the user."""

    choices: list[dict] = field(default_factory=list)

    def note(self, step: str, message: str, warn: bool = True, **details) -> None:
        """Record a choice; warn: also a LoadWarning (it changed or dropped data)."""
        self.choices.append({"step": step, "message": message, **details})
        if warn:
            warnings.warn(message, LoadWarning, stacklevel=3)


def geometry_fields(data: dict, where: str) -> dict:
    """GeometryConfig fields given as data (a --geometry YAML, a sweep dataset's geometry);
    unknown keys are a DyncdiError naming them and `where`."""
    unknown = sorted(set(data) - set(GeometryConfig.model_fields))
    if unknown:
        raise DyncdiError(
            f"{where}: {', '.join(unknown)}",
            "unknown key (check its spelling or remove it)",
            f"use GeometryConfig fields: {', '.join(GeometryConfig.model_fields)}",
        )
    if "binning" in data:
        raise DyncdiError(
            f"{where}: binning", "the loader sets it from --bin", "give --bin N (or bin: N)"
        )
    return dict(data)


def read_geometry_yaml(path: Path) -> dict:
    """The GeometryConfig fields of a --geometry YAML file (see geometry_fields)."""
    return geometry_fields(read_yaml(path, "--geometry"), str(path))


def resolve_geometry(
    raw: RawScan, from_yaml: dict, explicit: dict, record: Record, preset=None
) -> tuple[dict, dict]:
    """Geometry values and their origins ("flag", "yaml", "file", "preset", "default"): a flag
    wins, then the YAML (or a sweep dataset's geometry), then the scan's files, then the
    beamline preset, then a default. Checks the YAML's shape against the data's.

    Returns (values, sources): values holds GEOMETRY_FIELDS and FRAME_FIELDS (None where the
    preset's detector gives the pixel size) and `_descending` (the rocking motor decreases).
    """
    if "shape" in from_yaml and tuple(from_yaml["shape"]) != raw.intensity.shape:
        raise DyncdiError(
            "geometry.shape",
            f"the geometry says {list(from_yaml['shape'])} but the data have shape "
            f"{list(raw.intensity.shape)} (rocking angles, rows, columns)",
            "fix geometry.shape (or remove it: the data's shape is used)",
        )
    found = _found_in_files(raw)
    values, sources = {}, {}
    for name in (*GEOMETRY_FIELDS, *FRAME_FIELDS):
        for origin, table in (("flag", explicit), ("yaml", from_yaml), ("file", found)):
            if table.get(name) is not None:
                values[name], sources[name] = table[name], origin
                break
        if sources.get(name) == "yaml" and found.get(name) is not None:
            if _differs(found[name], values[name]):
                record.note(
                    "geometry",
                    f"geometry.{name}: the files say {found[name]!r}, the YAML says "
                    f"{values[name]!r}; the YAML's value is used (a flag overrides both)",
                )
    _defaults(values, sources, record, preset)
    missing = [n for n in GEOMETRY_FIELDS if n not in values]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise DyncdiError(
            "geometry",
            f"{', '.join(missing)} not found in the files",
            f"give {flags}, or the fields in --geometry YAML (a sweep dataset's geometry)",
        )
    values["hkl"] = tuple(int(v) for v in values["hkl"])
    record.choices.append({"step": "geometry", "sources": sources})
    values["_descending"] = found.get("rocking_descending", False)
    return values, sources


FRAME_FIELDS = ("beamline", "detector", "rocking_motor", "centre_channel", "roi")


def _found_in_files(raw: RawScan) -> dict:
    """The geometry values a scan's files hold, the rocking step from its per-frame angles."""
    found = {**raw.metadata, "detector": raw.detector, "roi": raw.roi}
    found["rocking_motor"] = raw.rocking_motor
    angles = raw.rocking_deg
    if angles is None:
        return found
    if angles.size != raw.intensity.shape[0]:
        raise DyncdiError(
            "rocking_angle",
            f"the files have {angles.size} rocking angles but {raw.intensity.shape[0]} frames",
            "give one rocking angle per frame",
        )
    steps = np.diff(angles)
    if steps.size and np.ptp(steps) > ROCKING_STEP_SPREAD * np.abs(steps).mean():
        raise DyncdiError(
            "rocking_angle",
            f"rocking steps vary from {steps.min():.4g} to {steps.max():.4g} deg",
            "interpolate onto even steps before loading",
        )
    if steps.size:
        found["rocking_step_deg"] = tidy(float(np.abs(steps.mean())))
        found["rocking_descending"] = bool(steps.mean() < 0)
    return found


def _defaults(values: dict, sources: dict, record: Record, preset) -> None:
    """Fill what nothing gave: the preset's detector, centre channel and pixel size, then
    the material, reflection and polarisation defaults."""
    if preset is not None:
        detector = preset.detector(values.get("detector"))
        if "detector" not in values:
            values["detector"], sources["detector"] = preset.default_detector, "preset"
        if "centre_channel" not in values:
            values["centre_channel"] = tuple(detector.centre_channel)
            sources["centre_channel"] = "preset"
        if "pixel_size_um" not in values:
            values["pixel_size_um"], sources["pixel_size_um"] = None, "preset"
    for name, default in (("material", "Au"), ("hkl", (1, 1, 1)), ("polarisation", "sigma")):
        if name not in values:
            values[name], sources[name] = default, "default"
            if name != "polarisation":
                record.note("geometry", f"geometry.{name} not given; assuming {default!r}")


def _differs(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) != str(b)
    return not np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6)


def fft_friendly(n: int) -> bool:
    """Even and 5-smooth (2^a 3^b 5^c), the sizes FFTs handle best."""
    if n < 4 or n % 2:
        return False
    for p in (2, 3, 5):
        while n % p == 0:
            n //= p
    return n == 1


def largest_fft_size(limit: int) -> int:
    """The largest FFT-friendly size <= limit (>= 4)."""
    return next(n for n in range(limit, 3, -1) if fft_friendly(n))


def invalid_causes(raw: RawScan, saturation: float | None, record: Record) -> np.ndarray:
    """The cause map (N0, N1, N2) uint8 of the pixels masked without a preset (causes.py codes,
    0 = measured; the mask is the map > 0): the file's mask, saturated and non-finite pixels."""
    data = raw.intensity
    causes = np.zeros(data.shape, np.uint8)
    if raw.mask is not None:
        file_mask = raw.mask
        if file_mask.shape == data.shape[1:]:
            file_mask = np.broadcast_to(file_mask, data.shape)
        if file_mask.shape != data.shape:
            raise DyncdiError(
                "mask",
                f"mask shape {list(raw.mask.shape)} fits neither the data {list(data.shape)} "
                "nor one frame",
                "give a mask of the data's shape or of one detector frame",
            )
        pixels = int(mark(causes, file_mask, "file").sum())
        record.note(
            "mask",
            f"{pixels} pixels masked by the file's mask; kept in the input's mask "
            "variable (ignored in every fit)",
            warn=bool(pixels),
            pixels=pixels,
        )
    if saturation is None and np.issubdtype(data.dtype, np.integer):
        saturation = float(np.iinfo(data.dtype).max)
    if saturation is not None:
        saturated = int(mark(causes, data >= saturation, "saturated").sum())
        if saturated:
            record.note(
                "saturation",
                f"{saturated} saturated pixels (>= {saturation:.6g} counts) masked",
                pixels=saturated,
                saturation=saturation,
            )
    if np.issubdtype(data.dtype, np.floating):
        bad = int(mark(causes, ~np.isfinite(data), "invalid").sum())
        if bad:
            record.note("invalid", f"{bad} NaN or infinite pixels masked", pixels=bad)
    return causes


def check_counts(
    data: np.ndarray, mask: np.ndarray, record: Record, flat_fielded: bool = False
) -> None:
    """Refuse negative counts outside the mask; note counts that are not integers (a warning
    unless a flat field made them so)."""
    valid = data[~mask]
    negative = int(np.count_nonzero(valid < 0))
    if negative:
        raise DyncdiError(
            "intensity",
            f"{negative} negative counts (min {float(valid.min()):.4g})",
            "subtract the background without going below zero, or mark those pixels in the "
            "file's mask",
        )
    if flat_fielded:
        record.note(
            "counts",
            "counts divided by the flat field are not integers; kept as they are (the Poisson "
            "loss stays a good model: the pixel sensitivities are near 1)",
            warn=False,
        )
    elif valid.size and np.any(np.abs(valid - np.round(valid)) > 1e-6):
        record.note(
            "counts",
            "counts are not integers (normalised or corrected data?); kept as they are: the "
            "Poisson loss assumes photon counts, so use loss: amplitude or rescale to photons",
        )


def bin_detector(
    data: np.ndarray, mask: np.ndarray, factor: int, record: Record
) -> tuple[np.ndarray, np.ndarray]:
    """Sum factor x factor detector pixels (trimmed to a multiple); a binned pixel is masked
    when any of its pixels is. Returns (N0, N1 // factor, N2 // factor) data and mask."""
    n1, n2 = (s - s % factor for s in data.shape[1:])
    if (n1, n2) != data.shape[1:]:
        record.note(
            "bin",
            f"detector trimmed from {list(data.shape[1:])} to {[n1, n2]} pixels, a multiple "
            f"of --bin {factor}",
        )
    shape = (data.shape[0], n1 // factor, factor, n2 // factor, factor)
    data = np.where(mask, 0, data)[:, :n1, :n2].reshape(shape).sum(axis=(2, 4))
    mask = mask[:, :n1, :n2].reshape(shape).any(axis=(2, 4))
    record.note(
        "bin",
        f"detector binned {factor} x {factor}: {[n1, n2]} -> {[n1 // factor, n2 // factor]} "
        "pixels; a binned pixel is masked when any of its pixels is",
        warn=False,
        factor=factor,
    )
    return data, mask


def find_peak(data: np.ndarray, mask: np.ndarray) -> tuple[int, int, int]:
    """Index of the Bragg peak: maximum of the 3x3x3-averaged unmasked intensity."""
    smooth = uniform_filter(np.where(mask, 0.0, data), size=3, mode="constant")
    return tuple(int(i) for i in np.unravel_index(int(np.argmax(smooth)), data.shape))


AXES = ("rocking", "row", "col")


def check_peak(data: np.ndarray, mask: np.ndarray, peak: tuple[int, ...]) -> None:
    """Refuse a scan whose rocking curve is cut at either end or whose peak is near an edge."""
    curve = np.where(mask, 0.0, data).sum(axis=(1, 2))
    top = curve.max()
    for end, value in (("first", curve[0]), ("last", curve[-1])):
        if value > ROCKING_TAIL * top:
            raise DyncdiError(
                "rocking",
                f"the rocking scan does not cover the peak: its {end} frame holds "
                f"{100 * value / top:.0f}% of the brightest frame's intensity "
                f"(at most {100 * ROCKING_TAIL:.0f}% allowed)",
                "extend the rocking range past the peak on both sides",
            )
    for axis, (p, n) in enumerate(zip(peak, data.shape, strict=True)):
        margin = max(4, n // EDGE_FRACTION)
        if min(p, n - 1 - p) < margin:
            raise DyncdiError(
                AXES[axis],
                f"the Bragg peak at {AXES[axis]} index {p} is {min(p, n - 1 - p)} voxels from "
                f"the edge of {n}; at least {margin} needed to hold the peak",
                "re-centre the detector or the scan on the peak, or give data that contain it",
            )


def window(
    data: np.ndarray,
    mask: np.ndarray,
    peak: tuple[int, ...],
    target: tuple[int, ...],
    record: Record,
) -> tuple[np.ndarray, np.ndarray]:
    """Crop/pad to target (per axis) with the peak at index target // 2; padding is masked."""
    out = np.zeros(target, data.dtype)
    out_mask = np.ones(target, bool)
    src, dst = [], []
    for p, n, t in zip(peak, data.shape, target, strict=True):
        start = p - t // 2
        lo, hi = max(start, 0), min(start + t, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - start, hi - start))
    out[tuple(dst)] = data[tuple(src)]
    out_mask[tuple(dst)] = mask[tuple(src)]
    kept = np.where(mask, 0.0, data)[tuple(src)].sum()
    total = np.where(mask, 0.0, data).sum()
    padded = int(np.prod(target) - np.prod([s.stop - s.start for s in src]))
    changed = tuple(target) != data.shape or any(s.start for s in src)
    if changed:
        lost = 1.0 - kept / total if total > 0 else 0.0
        record.note(
            "crop",
            f"cropped/padded {list(data.shape)} -> {list(target)} around the peak at "
            f"{list(peak)} (FFT-friendly sizes, peak at the centre): {100 * lost:.2f}% of the "
            f"counts left out, {padded} padded voxels masked",
            source_slices=[[s.start, s.stop] for s in src],
            peak=list(peak),
            counts_left_out=float(lost),
            padded_voxels=padded,
        )
    return out, out_mask


def target_shape(
    data_shape: tuple[int, ...],
    peak: tuple[int, ...],
    shape: tuple[int, int, int] | None,
    record: Record,
) -> tuple[int, ...]:
    """The shape to crop to: the given one (FFT-friendly sizes checked), else per axis the
    largest FFT-friendly window around the peak that fits in the data."""
    if shape is not None:
        bad = [n for n in shape if not fft_friendly(int(n))]
        if bad:
            raise DyncdiError(
                "--shape", f"{list(shape)}: {bad} not FFT-friendly", "use even 5-smooth sizes"
            )
        return tuple(int(n) for n in shape)
    target = []
    for p, n in zip(peak, data_shape, strict=True):
        # the largest window with the peak at its index t // 2 that fits inside the data
        limit = min(2 * p, 2 * (n - p))
        target.append(largest_fft_size(min(limit, n)))
    return tuple(target)
