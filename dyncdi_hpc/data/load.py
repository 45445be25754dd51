"""Measured BCDI scans from files: CXI/NeXus/plain HDF5, .npy/.npz, TIFF frames -> input group.

`load_scan` reads the intensities (rocking angle, detector row, detector column), an optional
pixel mask and whatever geometry the file holds; completes the geometry from a YAML file of
GeometryConfig fields and from explicit values (explicit values win, then the file, then the
YAML); validates the counts; masks pixels that cannot be trusted (NaN, saturated, masked in
the file); bins detector pixels; and crops (or pads, with masked voxels) to an FFT-friendly
shape with the Bragg peak at the array centre. Every choice is a LoadWarning (when it changes
or drops data) and an entry of the input group's provenance attrs (`provenance.load`); every
problem that has no safe automatic answer is a DyncdiError naming the field and the fix.

HDF5 metadata is found by dataset name anywhere in the file (CXI and NeXus names):
``energy`` / ``incident_energy`` (units attr J, eV or keV; CXI's default is J),
``distance`` / ``detector_distance`` (m or mm), ``x_pixel_size`` / ``pixel_size`` (m, mm or um),
``rocking_angle(s)`` (deg or rad, one per frame) or ``rocking_step`` (deg), ``material``,
``hkl``, ``mask`` / ``pixel_mask`` (nonzero = ignored; 2D masks apply to every frame),
``saturation_value``. The intensities are CXI's ``entry_1/data_1/data`` or
``entry_1/instrument_1/detector_1/data``, a NeXus NXdata group's signal, the only 3D dataset,
or the dataset named by `key`.
"""

from __future__ import annotations

import hashlib
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import xarray as xr
from scipy.ndimage import uniform_filter

from ..config import GeometryConfig, read_yaml, stable_hash, validate
from ..errors import DyncdiError
from ..provenance import provenance
from .dataset import to_xarray
from .validate import check_intensity

HDF5_SUFFIXES = (".h5", ".hdf5", ".hdf", ".nxs", ".nx5", ".cxi")
TIFF_SUFFIXES = (".tif", ".tiff")
GEOMETRY_FIELDS = (
    "energy_kev",
    "material",
    "hkl",
    "rocking_step_deg",
    "pixel_size_um",
    "detector_distance_m",
    "polarisation",
)
EV_PER_JOULE = 1.0 / 1.602176634e-19
EDGE_FRACTION = 8  # the peak must lie at least N // 8 (and 4) voxels from each edge
ROCKING_TAIL = 0.1  # first and last frames must hold less than this of the brightest frame


class LoadWarning(UserWarning):
    """A problem in a loaded scan that was handled; the message says what was done."""


@dataclass
class RawScan:
    """What a file holds: intensities (N0, N1, N2), mask (True = ignored), geometry found."""

    intensity: np.ndarray
    mask: np.ndarray | None
    metadata: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)


@dataclass
class _Record:
    """Choices made while loading, for the provenance attrs and the user."""

    choices: list[dict] = field(default_factory=list)

    def note(self, step: str, message: str, warn: bool = True, **details) -> None:
        self.choices.append({"step": step, "message": message, **details})
        if warn:
            warnings.warn(message, LoadWarning, stacklevel=3)


# --- readers --------------------------------------------------------------------------------


def read_scan(path: Path, key: str | None = None) -> RawScan:
    """Read intensities, mask and geometry metadata from a file (or a folder of TIFF frames)."""
    path = Path(path)
    if not path.exists():
        raise DyncdiError("FILE", f"no such file {str(path)!r}", "check the path")
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in TIFF_SUFFIXES:
        return _read_tiff(path)
    if suffix in (".npy", ".npz"):
        return _read_numpy(path, key)
    if suffix in HDF5_SUFFIXES:
        return _read_hdf5(path, key)
    raise DyncdiError(
        "FILE",
        f"unknown format {suffix!r}",
        "give a .cxi/.nxs/.h5/.hdf5, .npy/.npz, .tif/.tiff file or a folder of TIFF frames",
    )


def _read_numpy(path: Path, key: str | None) -> RawScan:
    try:
        loaded = np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise DyncdiError("FILE", f"cannot read {path.name}: {exc}") from None
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
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in TIFF_SUFFIXES)
        if not files:
            raise DyncdiError("FILE", f"no .tif/.tiff frames in {str(path)!r}", "check the folder")
        frames = [tifffile.imread(f) for f in files]
        shapes = {f.shape for f in frames}
        if len(shapes) != 1 or frames[0].ndim != 2:
            raise DyncdiError(
                "FILE",
                f"TIFF frames have shapes {sorted(shapes)}",
                "give one 2D frame per rocking angle, all of one size",
            )
        data = np.stack(frames)
        source = {"format": "tiff-frames", "path": str(path), "frames": [f.name for f in files]}
    else:
        data = tifffile.imread(path)
        source = {"format": "tiff", "path": str(path)}
    return RawScan(np.asarray(data), None, {}, source)


def _units(dset) -> str:
    units = dset.attrs.get("units", "")
    return (units.decode() if isinstance(units, bytes) else str(units)).strip()


def _scalar(dset) -> float:
    return float(np.asarray(dset[()]).ravel()[0])


def _tidy(value: float) -> float:
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
        meta: dict = {}

        def first(*names):
            for n in names:
                for p in found.get(n, []):
                    if p != data_path:
                        return f[p]
            return None

        if (d := first("energy", "incident_energy")) is not None:
            meta["energy_kev"] = _tidy(_energy_kev(d))
        if (d := first("distance", "detector_distance")) is not None:
            meta["detector_distance_m"] = _tidy(_length(d, "m", _TO_M))
        if (d := first("x_pixel_size", "pixel_size")) is not None:
            meta["pixel_size_um"] = _tidy(_length(d, "m", _TO_M) * 1e6)
        if (d := first("rocking_angle", "rocking_angles")) is not None:
            angles = np.asarray(d[()], float).ravel()
            meta["rocking_angles_deg"] = (
                np.degrees(angles) if _units(d).lower() in ("rad", "radian") else angles
            )
        elif (d := first("rocking_step")) is not None:
            meta["rocking_step_deg"] = _scalar(d)
        if (d := first("material")) is not None:
            meta["material"] = _text(d)
        if (d := first("hkl")) is not None:
            meta["hkl"] = tuple(int(v) for v in np.asarray(d[()]).ravel())
        if (d := first("saturation_value")) is not None:
            meta["saturation"] = _scalar(d)
        mask = None
        if (d := first("mask", "pixel_mask")) is not None:
            mask = np.asarray(d[()]) != 0
        fmt = "cxi" if "cxi_version" in found else "nexus" if _is_nexus(f) else "hdf5"
    return RawScan(data, mask, meta, {"format": fmt, "path": str(path), "dataset": data_path})


def _is_nexus(f) -> bool:
    return any(_nx_class(g) == "NXentry" for g in f.values())


def _nx_class(obj) -> str:
    value = obj.attrs.get("NX_class", b"")
    return value.decode() if isinstance(value, bytes) else str(value)


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


# --- geometry --------------------------------------------------------------------------------


def resolve_geometry(raw: RawScan, yaml_path: Path | None, explicit: dict, record: _Record) -> dict:
    """Geometry fields from explicit values, else the file, else the YAML; checks the shape."""
    from_yaml: dict = {}
    if yaml_path is not None:
        from_yaml = read_yaml(yaml_path, "--geometry")
        unknown = sorted(set(from_yaml) - set(GeometryConfig.model_fields))
        if unknown:
            raise DyncdiError(
                f"{yaml_path}: {', '.join(unknown)}",
                "unknown key (check its spelling or remove it)",
                f"use GeometryConfig fields: {', '.join(GeometryConfig.model_fields)}",
            )
        if "shape" in from_yaml and tuple(from_yaml["shape"]) != raw.intensity.shape:
            raise DyncdiError(
                "geometry.shape",
                f"the geometry says {list(from_yaml['shape'])} but the data have shape "
                f"{list(raw.intensity.shape)} (rocking angles, rows, columns)",
                "fix geometry.shape (or remove it: the data's shape is used)",
            )
    meta = dict(raw.metadata)
    angles = meta.pop("rocking_angles_deg", None)
    if angles is not None:
        if angles.size != raw.intensity.shape[0]:
            raise DyncdiError(
                "rocking_angle",
                f"the file has {angles.size} rocking angles but {raw.intensity.shape[0]} frames",
                "give one rocking angle per frame",
            )
        steps = np.diff(angles)
        if steps.size and np.ptp(steps) > 0.01 * np.abs(steps).mean():
            raise DyncdiError(
                "rocking_angle",
                f"rocking steps vary from {steps.min():.4g} to {steps.max():.4g} deg",
                "interpolate onto even steps before loading",
            )
        if steps.size:
            meta["rocking_step_deg"] = _tidy(float(np.abs(steps.mean())))
            meta["rocking_descending"] = bool(steps.mean() < 0)
    values, sources = {}, {}
    for name in GEOMETRY_FIELDS:
        for origin, table in (("flag", explicit), ("file", meta), ("yaml", from_yaml)):
            if table.get(name) is not None:
                values[name], sources[name] = table[name], origin
                break
        if sources.get(name) == "file" and name in from_yaml:
            if _differs(from_yaml[name], values[name]):
                record.note(
                    "geometry",
                    f"geometry.{name}: the file says {values[name]!r}, the YAML says "
                    f"{from_yaml[name]!r}; the file's value is used (a flag overrides both)",
                )
    for name, default in (("material", "Au"), ("hkl", (1, 1, 1)), ("polarisation", "sigma")):
        if name not in values:
            values[name], sources[name] = default, "default"
            if name != "polarisation":
                record.note("geometry", f"geometry.{name} not given; assuming {default!r}")
    missing = [n for n in GEOMETRY_FIELDS if n not in values]
    if missing:
        flags = ", ".join("--" + n.replace("_", "-") for n in missing)
        raise DyncdiError(
            "geometry",
            f"{', '.join(missing)} not found in the file",
            f"give {flags}, or the fields in --geometry YAML",
        )
    values["hkl"] = tuple(int(v) for v in values["hkl"])
    record.choices.append({"step": "geometry", "sources": sources})
    values["_descending"] = meta.get("rocking_descending", False)
    return values


def _differs(a, b) -> bool:
    if isinstance(a, str) or isinstance(b, str):
        return str(a) != str(b)
    return not np.allclose(np.asarray(a, float), np.asarray(b, float), rtol=1e-6)


# --- checks and shaping ----------------------------------------------------------------------


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


def _mask_invalid(raw: RawScan, saturation: float | None, record: _Record) -> np.ndarray:
    data = raw.intensity
    mask = np.zeros(data.shape, bool)
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
        mask |= file_mask
        record.note(
            "mask",
            f"{int(mask.sum())} pixels masked by the file's mask; kept in the input's mask "
            "variable (ignored in every fit)",
            warn=bool(mask.any()),
            pixels=int(mask.sum()),
        )
    if saturation is None and np.issubdtype(data.dtype, np.integer):
        saturation = float(np.iinfo(data.dtype).max)
    if saturation is not None:
        saturated = (data >= saturation) & ~mask
        if saturated.any():
            mask |= saturated
            record.note(
                "saturation",
                f"{int(saturated.sum())} saturated pixels (>= {saturation:.6g} counts) masked",
                pixels=int(saturated.sum()),
                saturation=saturation,
            )
    if np.issubdtype(data.dtype, np.floating):
        bad = ~np.isfinite(data) & ~mask
        if bad.any():
            mask |= bad
            record.note(
                "invalid",
                f"{int(bad.sum())} NaN or infinite pixels masked",
                pixels=int(bad.sum()),
            )
    return mask


def _check_counts(data: np.ndarray, mask: np.ndarray, record: _Record) -> None:
    valid = data[~mask]
    negative = int(np.count_nonzero(valid < 0))
    if negative:
        raise DyncdiError(
            "intensity",
            f"{negative} negative counts (min {float(valid.min()):.4g})",
            "subtract the background without going below zero, or mark those pixels in the "
            "file's mask",
        )
    if valid.size and np.any(np.abs(valid - np.round(valid)) > 1e-6):
        record.note(
            "counts",
            "counts are not integers (normalised or corrected data?); kept as they are: the "
            "Poisson loss assumes photon counts, so use loss: amplitude or rescale to photons",
        )


def _bin(data: np.ndarray, mask: np.ndarray, factor: int, record: _Record):
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


def _check_peak(data: np.ndarray, mask: np.ndarray, peak: tuple[int, ...]) -> None:
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


def _window(data, mask, peak, target, record: _Record):
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


def _target_shape(data_shape, peak, shape, record: _Record) -> tuple[int, ...]:
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


# --- the whole load ------------------------------------------------------------------------


def load_scan(
    path: Path,
    *,
    geometry_yaml: Path | None = None,
    explicit: dict | None = None,
    key: str | None = None,
    bin_factor: int = 1,
    shape: tuple[int, int, int] | None = None,
    saturation: float | None = None,
) -> xr.Dataset:
    """Read, validate and shape a measured scan into an input group (see the module doc).

    explicit: GeometryConfig fields given on the command line (None values are ignored).
    Warnings (LoadWarning) say what was masked, cropped or assumed; errors are DyncdiError.
    """
    record = _Record()
    raw = read_scan(Path(path), key)
    if raw.intensity.ndim != 3:
        raise DyncdiError(
            "FILE",
            f"the intensities have {raw.intensity.ndim} dimensions {list(raw.intensity.shape)}",
            "give a 3D scan (rocking angle, detector row, detector column)",
        )
    if not np.issubdtype(raw.intensity.dtype, np.number) or np.iscomplexobj(raw.intensity):
        raise DyncdiError("FILE", f"intensities of type {raw.intensity.dtype}", "give counts")
    values = resolve_geometry(raw, geometry_yaml, {**(explicit or {})}, record)
    descending = values.pop("_descending")
    mask = _mask_invalid(
        raw, saturation if saturation is not None else raw.metadata.get("saturation"), record
    )
    data = np.where(mask, 0.0, raw.intensity.astype(np.float64))
    if descending:
        data, mask = data[::-1], mask[::-1]
        record.note("rocking", "rocking angles decrease: frames reversed", warn=False)
    _check_counts(data, mask, record)
    if bin_factor < 1:
        raise DyncdiError("--bin", f"{bin_factor}", "give a positive integer")
    if bin_factor > 1:
        data, mask = _bin(data, mask, bin_factor, record)
        values["pixel_size_um"] = values["pixel_size_um"] * bin_factor
    if mask.all():
        raise DyncdiError("mask", "every pixel is masked", "check the mask and saturation")
    peak = find_peak(data, mask)
    _check_peak(data, mask, peak)
    target = _target_shape(data.shape, peak, shape, record)
    data, mask = _window(data, mask, peak, target, record)
    cfg = validate(GeometryConfig, {**values, "shape": list(data.shape)}, "geometry")
    geometry = cfg.build("geometry")
    intensity = data.astype(np.float32)
    check_intensity(intensity, geometry, "intensity", mask)
    digest = hashlib.sha256(np.ascontiguousarray(intensity).tobytes()).hexdigest()
    mask_digest = hashlib.sha256(np.packbits(mask).tobytes()).hexdigest() if mask.any() else None
    fingerprint = stable_hash(
        {"data": digest, "mask": mask_digest, "geometry": geometry.to_attrs()}
    )
    ds = to_xarray(
        intensity,
        geometry,
        source={"kind": "file", **raw.source},
        fingerprint=fingerprint,
        mask=mask if mask.any() else None,
    )
    ds.attrs["provenance"] = {
        **provenance(),
        "load": {
            "raw_shape": list(raw.intensity.shape),
            "raw_dtype": str(raw.intensity.dtype),
            "bin": bin_factor,
            "peak_before_crop": list(peak),
            "masked_voxels": int(mask.sum()),
            "choices": record.choices,
            "rocking_step_deg": math.degrees(geometry.rocking_step_rad),
        },
    }
    return ds
