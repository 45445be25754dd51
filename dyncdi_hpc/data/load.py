"""Measured BCDI scans from files -> input group (store/groups.py).

`load_scan` reads the intensities (rocking angle, detector row, detector column), an optional
pixel mask and whatever geometry the file holds (readers.py); completes the geometry from a
YAML file of GeometryConfig fields and from explicit values (explicit values win, then the
file, then the YAML); validates the counts; masks pixels that cannot be trusted (NaN,
saturated, masked in the file); bins detector pixels; and crops (or pads, with masked voxels)
to an FFT-friendly shape with the Bragg peak at the array centre (prepare.py). Every choice is
a LoadWarning (when it changes or drops data) and an entry of the input group's provenance
attrs (`provenance.load`); every problem that has no safe automatic answer is a DyncdiError
naming the field and the fix.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import xarray as xr

from ..config import GeometryConfig, validate
from ..errors import DyncdiError
from ..identity import array_digest, stable_hash
from ..provenance import provenance
from ..store.groups import encode_input
from .prepare import (
    Record,
    bin_detector,
    check_counts,
    check_peak,
    find_peak,
    mask_invalid,
    resolve_geometry,
    target_shape,
    window,
)
from .readers import read_scan
from .validate import check_intensity


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
    record = Record()
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
    mask = mask_invalid(
        raw, saturation if saturation is not None else raw.metadata.get("saturation"), record
    )
    data = np.where(mask, 0.0, raw.intensity.astype(np.float64))
    if descending:
        data, mask = data[::-1], mask[::-1]
        record.note("rocking", "rocking angles decrease: frames reversed", warn=False)
    check_counts(data, mask, record)
    if bin_factor < 1:
        raise DyncdiError("--bin", f"{bin_factor}", "give a positive integer")
    if bin_factor > 1:
        data, mask = bin_detector(data, mask, bin_factor, record)
        values["pixel_size_um"] = values["pixel_size_um"] * bin_factor
    if mask.all():
        raise DyncdiError("mask", "every pixel is masked", "check the mask and saturation")
    peak = find_peak(data, mask)
    check_peak(data, mask, peak)
    target = target_shape(data.shape, peak, shape, record)
    data, mask = window(data, mask, peak, target, record)
    cfg = validate(GeometryConfig, {**values, "shape": list(data.shape)}, "geometry")
    geometry = cfg.build("geometry")
    intensity = data.astype(np.float32)
    check_intensity(intensity, geometry, "intensity", mask)
    digest = array_digest(intensity)
    mask_digest = array_digest(np.packbits(mask)) if mask.any() else None
    fingerprint = stable_hash(
        {"data": digest, "mask": mask_digest, "geometry": geometry.to_attrs()}
    )
    ds = encode_input(
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
