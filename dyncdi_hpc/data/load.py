"""Measured BCDI scans from files -> input group (store/groups.py).

`load_scan` reads the intensities (rocking angle, detector row, detector column), an optional
pixel mask and whatever geometry the files hold: a CXI/NeXus/HDF5 file, .npy/.npz or TIFF
frames (readers.py), or, through a beamline preset, a spec file with TIFF frames
(readers_spec.py), a BLISS HDF5 file (readers_bliss.py) or a .fio file with its Eiger master
(readers_fio.py). It completes the geometry (a flag wins, then the --geometry YAML or a sweep
dataset's geometry, then the files, then the preset, then a default; each value's origin is
recorded), corrects the detector (corrections.py, with a preset: gaps, seams, dark, flat,
hot and dead pixels, saturation, threshold; without one the NaN, saturated and file-masked
pixels are masked), validates the counts, bins detector pixels, and crops (or pads, with
masked voxels) to an FFT-friendly shape with the Bragg peak at the array centre (prepare.py);
aliens are masked once it is centred. Why each voxel is masked (causes.py) follows the mask
through every step and is stored beside it as `mask_cause`. An array that is already
FFT-friendly with its peak within CENTRE_TOLERANCE voxels of its centre is kept as it is.
With a preset the stored geometry is the measured one (measured.py): motors at the stored
centre frame, the chip pixels it covers and its binning, so `GeometryConfig(**attrs).build()`
gives its q steps.

Every choice is a LoadWarning (when it changes or drops data) and an entry of the input group's
provenance attrs (`provenance.load`); every problem that has no safe automatic answer is a
DyncdiError naming the field and the fix, raised before anything is written.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xarray as xr

from ..config import GeometryConfig, validate
from ..config.beamline import Beamline, load_beamline
from ..errors import DyncdiError
from ..identity import array_digest, stable_hash
from ..physics.geometry import Geometry
from ..provenance import provenance
from ..store.groups import encode_input
from .causes import bin_causes, cause_counts, code, flag_attrs, window_causes
from .measured import ScanMotors, check_strain, scan_motors, stored_fields
from .prepare import (
    FRAME_FIELDS,
    Record,
    bin_detector,
    check_counts,
    check_peak,
    fft_friendly,
    find_peak,
    geometry_fields,
    invalid_causes,
    read_geometry_yaml,
    resolve_geometry,
    target_shape,
    window,
)
from .readers import HDF5_SUFFIXES, RawScan, read_image, read_scan
from .validate import check_intensity

CENTRE_TOLERANCE = 2  # voxels: an FFT-friendly array whose peak is this close is kept as it is
MEASURED_ATTRS = ("beamline", "detector", "motors", "rocking_motor", "centre_channel", "roi")


@dataclass(frozen=True)
class LoadOptions:
    """What a load is asked to do besides reading the files.

    geometry_yaml: a YAML file of GeometryConfig fields; geometry: such fields as data (a
    sweep dataset's `geometry:`), used like the YAML; explicit: fields given as flags (None
    values ignored); key: the dataset (HDF5) or array (.npz); scan_file, scan: a spec or .fio
    file and the scan number (BLISS: the entry N.1); dark, flat: full-chip images; threshold:
    counts below it set to 0; bin_factor: N x N detector binning; shape: the stored shape
    (crop/pad around the peak); saturation: counts at and above which a pixel is masked.

    The geometry's fields describe the data as read: `shape` must be the files' shape, `roi`
    the chip pixels the frames cover, `motors` the circles' positions (the rocking motor's
    at the frames' centre frame, data/measured.py); the loader writes the stored array's.
    """

    geometry_yaml: Path | None = None
    geometry: dict | None = None
    explicit: dict | None = None
    key: str | None = None
    scan_file: Path | None = None
    scan: int | None = None
    dark: Path | None = None
    flat: Path | None = None
    threshold: float | None = None
    bin_factor: int = 1
    shape: tuple[int, int, int] | None = None
    saturation: float | None = None


@dataclass(frozen=True)
class Loaded:
    """An input group and its geometry."""

    group: xr.Dataset
    geometry: Geometry


def load_scan(path: Path, **options) -> xr.Dataset:
    """Read, correct, validate and shape a measured scan into an input group (see the module
    doc); options are LoadOptions' fields. Warnings (LoadWarning) say what was masked, cropped
    or assumed; errors are DyncdiError."""
    return load_input(Path(path), LoadOptions(**options)).group


def load_input(
    path: Path, options: LoadOptions, check_raw: Callable[[RawScan], None] | None = None
) -> Loaded:
    """load_scan's work, returning the geometry too; check_raw(raw) may refuse the data as
    read, before anything is corrected or masked."""
    record = Record()
    if options.bin_factor < 1:
        raise DyncdiError("--bin", f"{options.bin_factor}", "give a positive integer")
    from_yaml = _yaml_fields(options)
    explicit = {k: v for k, v in (options.explicit or {}).items() if v not in (None, ())}
    name = explicit.get("beamline") or from_yaml.get("beamline")
    preset = load_beamline(name) if name else None
    detector_name = explicit.get("detector") or from_yaml.get("detector")
    raw = read_input(Path(path), options, preset, detector_name)
    _check_array(raw)
    if check_raw is not None:
        check_raw(raw)
    values, sources = resolve_geometry(raw, from_yaml, explicit, record, preset)
    descending = values.pop("_descending")
    if preset is not None:
        motors = scan_motors(raw, values, from_yaml, preset, descending)
        sources["motors"] = motors.sources
    else:
        motors = _idealised(values, sources, from_yaml, raw, record)
    data, causes, corrections = _correct(raw, values, options, preset, record)
    if descending:
        data, causes = data[::-1], causes[::-1]
        record.note("rocking", "rocking angles decrease: frames reversed", warn=False)
    mask = causes > 0
    check_counts(data, mask, record, flat_fielded=options.flat is not None)
    if options.bin_factor > 1:
        data, mask = bin_detector(data, mask, options.bin_factor, record)
        causes = bin_causes(causes, options.bin_factor)
    if mask.all():
        raise DyncdiError("mask", "every pixel is masked", "check the mask and saturation")
    if not np.any(data[~mask] > 0):
        raise DyncdiError(
            "intensity",
            "no counts: every unmasked pixel of every frame is zero",
            "check the frames (scan number, ROI, exposure), the dark field and the threshold",
        )
    peak = find_peak(data, mask)
    check_peak(data, mask, peak)
    start, data, mask = _centre(data, mask, peak, options.shape, record)
    causes = window_causes(causes, start, data.shape)
    if preset is not None:
        mask = _aliens(data, mask, causes, corrections, record)
    cfg = _config(values, data.shape, options.bin_factor, preset, motors, start)
    geometry = cfg.build("geometry")
    if preset is not None:
        check_strain(geometry, record)
    ds = _group(data, causes, geometry, cfg, raw, preset)
    ds.attrs["provenance"] = {
        **provenance(),
        "load": {
            "raw_shape": list(raw.intensity.shape),
            "raw_dtype": str(raw.intensity.dtype),
            "bin": options.bin_factor,
            "peak_before_crop": list(peak),
            "masked_voxels": int(mask.sum()),
            "sources": sources,
            "found": dict(raw.sources),
            "choices": record.choices,
            "rocking_step_deg": math.degrees(geometry.rocking_step_rad),
        },
    }
    if corrections is not None:
        # the corrections count the frames as read; these, the stored array (binned, cropped)
        corrections["masked_stored"] = cause_counts(causes)
        ds.attrs["corrections"] = corrections
    return Loaded(ds, geometry)


def _yaml_fields(options: LoadOptions) -> dict:
    fields = read_geometry_yaml(options.geometry_yaml) if options.geometry_yaml else {}
    if options.geometry:
        fields |= geometry_fields(options.geometry, "geometry")
    return fields


def read_input(
    path: Path, options: LoadOptions, preset: Beamline | None, detector: str | None
) -> RawScan:
    """The reader a scan's files need: a spec or .fio scan file (a preset's), a BLISS file
    (a preset with files.bliss), else the generic readers."""
    if options.scan_file is not None:
        if preset is None:
            raise DyncdiError(
                "--spec",
                "a scan file is read through a beamline preset",
                "give --beamline NAME or PRESET.yaml (`dyncdi beamlines` lists them)",
            )
        if Path(options.scan_file).suffix.lower() == ".fio":
            from .readers_fio import read_fio_scan

            return read_fio_scan(path, options.scan_file, options.scan, preset)
        from .readers_spec import read_spec_scan

        return read_spec_scan(path, options.scan_file, options.scan, preset)
    if preset is not None and "bliss" in preset.files and _is_bliss(path):
        from .readers_bliss import read_bliss_scan

        return read_bliss_scan(path, options.scan, preset, detector)
    return read_scan(path, options.key)


def _is_bliss(path: Path) -> bool:
    """An HDF5 file whose top-level groups are BLISS scan entries (N.1)."""
    import h5py

    if path.suffix.lower() not in HDF5_SUFFIXES or not path.is_file():
        return False
    with h5py.File(path, "r") as f:
        return any(k.endswith(".1") and k.rsplit("_", 1)[-1][:-2].isdigit() for k in f)


def _idealised(values: dict, sources: dict, from_yaml: dict, raw: RawScan, record: Record):
    """Without a preset the geometry is the idealised one: measured fields given as flags or
    in the YAML are refused, motors found in the files are noted and left out. Returns None."""
    given = [k for k in FRAME_FIELDS if sources.get(k) in ("flag", "yaml")]
    given += ["motors"] if from_yaml.get("motors") else []
    if given:
        raise DyncdiError(
            given[0] if sources.get(given[0]) != "flag" else "--" + given[0].replace("_", "-"),
            f"{', '.join(given)} describe a measured geometry, which needs a beamline preset",
            "give --beamline NAME or PRESET.yaml (or beamline in the geometry), or remove them",
        )
    if raw.motors:
        record.note(
            "geometry",
            f"motors found in the files ({', '.join(sorted(raw.motors))}) are not used without "
            "a beamline preset: the geometry is the idealised symmetric one",
            warn=False,
        )


def _check_array(raw: RawScan) -> None:
    if raw.intensity.ndim != 3:
        raise DyncdiError(
            "FRAMES",
            f"the intensities have {raw.intensity.ndim} dimensions {list(raw.intensity.shape)}",
            "give a 3D scan (rocking angle, detector row, detector column)",
        )
    if not np.issubdtype(raw.intensity.dtype, np.number) or np.iscomplexobj(raw.intensity):
        raise DyncdiError("FRAMES", f"intensities of type {raw.intensity.dtype}", "give counts")
    if raw.intensity.size == 0:
        raise DyncdiError(
            "FRAMES",
            f"the scan is empty (shape {list(raw.intensity.shape)})",
            "give frames that hold counts (check the file, the scan number or the ROI)",
        )


def _correct(
    raw: RawScan, values: dict, options: LoadOptions, preset: Beamline | None, record: Record
) -> tuple[np.ndarray, np.ndarray, dict | None]:
    """(data float64, cause map uint8 (causes.py), corrections record or None): the preset's
    detector corrections, or, without a preset, NaN, saturated and file-masked pixels masked."""
    saturation = options.saturation
    if preset is None:
        for flag, value in (("--dark", options.dark), ("--flat", options.flat)):
            if value is not None:
                raise DyncdiError(
                    flag,
                    "detector corrections need the detector's chip",
                    "give --beamline NAME or PRESET.yaml",
                )
        if options.threshold is not None:
            raise DyncdiError("--threshold", "needs a beamline preset", "give --beamline NAME")
        saturation = saturation if saturation is not None else raw.metadata.get("saturation")
        causes = invalid_causes(raw, saturation, record)
        return np.where(causes > 0, 0.0, raw.intensity.astype(np.float64)), causes, None
    from .corrections import correct_frames_by_cause

    detector = preset.detector(values["detector"])
    if saturation is not None:
        detector = detector.model_copy(update={"saturation": float(saturation)})
    values["roi"] = _frames_roi(values.get("roi"), raw.intensity.shape[1:], detector.chip)
    data, causes, corrections = correct_frames_by_cause(
        raw.intensity,
        detector=detector,
        roi=values["roi"],
        dark=read_image(options.dark, "--dark") if options.dark else None,
        flat=read_image(options.flat, "--flat") if options.flat else None,
        threshold=options.threshold,
        mask=raw.mask,
    )
    masked = int(np.count_nonzero(causes))
    by_cause = ", ".join(f"{k} {v}" for k, v in corrections.get("masked", {}).items() if v)
    zeroed = corrections.get("zeroed", {}).get("threshold", 0)
    record.note(
        "corrections",
        f"detector corrections ({values['detector']}): {masked} voxels masked"
        + (f" ({by_cause})" if by_cause else "")
        + (f"; {zeroed} voxels below --threshold {options.threshold:g} set to 0" if zeroed else ""),
        warn=bool(masked),
        masked=masked,
    )
    return data, causes, corrections


def _frames_roi(roi, frames: tuple[int, ...], chip: tuple[int, int]) -> tuple[int, ...]:
    """The chip pixels the frames cover: the given ROI, else the whole chip when the frames
    are that size (where a smaller frame lies on the chip cannot be guessed)."""
    if roi is not None:
        return tuple(int(v) for v in roi)
    if tuple(frames) != tuple(chip):
        raise DyncdiError(
            "--roi",
            f"the frames are {frames[0]} x {frames[1]} pixels of the {chip[0]} x {chip[1]} chip "
            "and the files do not say which",
            "give --roi R0 R1 C0 C1 (roi in --geometry): the chip rows and columns they cover",
        )
    return (0, chip[0], 0, chip[1])


def _centre(
    data: np.ndarray, mask: np.ndarray, peak: tuple, shape: tuple | None, record: Record
) -> tuple[tuple[int, int, int], np.ndarray, np.ndarray]:
    """(start, data, mask) cropped or padded with the peak at the centre; start: the index of
    the stored first voxel in the given data (negative where padded)."""
    near = all(abs(p - n // 2) <= CENTRE_TOLERANCE for p, n in zip(peak, data.shape, strict=True))
    if shape is None and near and all(fft_friendly(n) for n in data.shape):
        if tuple(peak) != tuple(n // 2 for n in data.shape):
            record.note(
                "crop",
                f"peak at {list(peak)}, within {CENTRE_TOLERANCE} voxels of the centre of the "
                f"FFT-friendly {list(data.shape)}: kept as it is",
                warn=False,
            )
        return (0, 0, 0), data, mask
    target = target_shape(data.shape, peak, shape, record)
    start = tuple(int(p - t // 2) for p, t in zip(peak, target, strict=True))
    data, mask = window(data, mask, peak, target, record)
    return start, data, mask


def _aliens(
    data: np.ndarray, mask: np.ndarray, causes: np.ndarray, corrections: dict, record: Record
) -> np.ndarray:
    """Mask aliens (corrections.mask_aliens) about the stored array's centre, where the peak
    now is, marking them in causes (in place); suspects it did not mask are listed (a
    warning), for a person to look at."""
    from .corrections import mask_aliens

    centre = tuple(n // 2 for n in data.shape)
    new_mask, aliens = mask_aliens(data, mask, centre)
    causes[new_mask & ~mask] = code("alien")
    corrections["aliens"] = aliens
    masked = [a for a in aliens if a["masked"]]
    suspects = [a for a in aliens if not a["masked"]]
    if masked:
        added = int(new_mask.sum() - mask.sum())
        record.note(
            "aliens",
            f"{len(masked)} aliens (bright features without a Friedel partner) masked: "
            f"{added} voxels",
            voxels=added,
        )
    if suspects:
        boxes = "; ".join(f"frames, rows, columns {a['bbox']}" for a in suspects[:3])
        record.note(
            "aliens",
            f"{len(suspects)} suspected aliens left unmasked (one-sided but not compact): "
            f"{boxes}; look at them in the report, mask them with a mask file if they are",
        )
    return new_mask


def _config(
    values: dict,
    shape: tuple[int, ...],
    bin_factor: int,
    preset: Beamline | None,
    motors: ScanMotors | None,
    start: tuple[int, int, int],
) -> GeometryConfig:
    """The stored array's GeometryConfig: measured through the preset, else idealised (the
    pixel size scaled by the binning)."""
    fields = {k: v for k, v in values.items() if v is not None}
    fields["shape"] = list(shape)
    if preset is None:
        fields = {k: v for k, v in fields.items() if k not in FRAME_FIELDS}
        fields["pixel_size_um"] = fields["pixel_size_um"] * bin_factor
    else:
        chip = preset.detector(values["detector"]).chip
        fields |= stored_fields(motors, values["roi"], chip, bin_factor, start, shape)
    return validate(GeometryConfig, fields, "geometry")


def _group(
    data: np.ndarray,
    causes: np.ndarray,
    geometry: Geometry,
    cfg: GeometryConfig,
    raw: RawScan,
    preset: Beamline | None,
) -> xr.Dataset:
    """The input group; its fingerprint hashes the data, the mask (if any) and the geometry,
    not the mask's causes: a cause map added to a scan loaded before keeps its fingerprint."""
    mask = causes > 0
    intensity = data.astype(np.float32)
    check_intensity(intensity, geometry, "intensity", mask)
    attrs = geometry.to_attrs()
    if preset is not None:
        dump = cfg.model_dump(mode="json")
        attrs |= {k: dump[k] for k in MEASURED_ATTRS} | {"binning": list(cfg.binning)}
    content = {"data": array_digest(intensity), "geometry": attrs}
    if mask.any():
        content["mask"] = array_digest(np.packbits(mask))
    ds = encode_input(
        intensity,
        geometry,
        source={"kind": "file", **raw.source},
        fingerprint=stable_hash(content),
        mask=mask if mask.any() else None,
        mask_cause=causes if mask.any() else None,
        mask_cause_attrs=flag_attrs(),
    )
    ds.attrs["geometry"] = attrs
    return ds


def load_summary(name: str, ds: xr.Dataset, path: Path) -> str:
    """What `dyncdi load` prints: the stored shape, counts, mask and geometry."""
    g = ds.attrs["geometry"]
    masked = int(ds["mask"].values.sum()) if "mask" in ds else 0
    line = (
        f"wrote inputs/{name} ({list(ds['intensity'].shape)}, peak "
        f"{float(ds['intensity'].max()):.0f} counts, {masked} masked voxels; "
        f"{g['material']} {g['hkl']} at {g['energy_kev']} keV, voxel "
        f"{', '.join(f'{v:.1f}' for v in g['voxel_size_nm'])} nm) into {path}"
    )
    if "beamline" in g:
        line += (
            f"\nmeasured geometry: {g['beamline']} {g['detector']}, rocking {g['rocking_motor']} "
            f"{math.degrees(g['rocking_step_rad']):.5g} deg per frame, roi {g['roi']}, binning "
            f"{g['binning']}, lattice strain {100 * g['lattice_strain']:+.2f}%"
        )
    return line
