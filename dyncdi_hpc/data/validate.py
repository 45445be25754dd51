"""Checks on measured or simulated intensities before anything is submitted."""

from __future__ import annotations

import numpy as np

from ..errors import DyncdiError
from ..physics.geometry import Geometry


def check_intensity(
    intensity: np.ndarray, geometry: Geometry, field: str, mask: np.ndarray | None = None
) -> None:
    """Raise a DyncdiError for a wrong shape, NaN/inf, negative counts, an empty dataset or a
    rocking scan whose brightest frame is its first or last (the scan misses the peak)."""
    if intensity.ndim != 3 or tuple(intensity.shape) != tuple(geometry.shape):
        raise DyncdiError(
            field,
            f"intensity has shape {list(intensity.shape)} but the geometry says "
            f"{list(geometry.shape)} (rocking angles, rows, columns)",
            "set geometry.shape to the data's shape, or crop the data",
        )
    if mask is not None and mask.shape != intensity.shape:
        raise DyncdiError(
            field,
            f"mask shape {list(mask.shape)} != intensity shape {list(intensity.shape)}",
            "give a mask of the intensities' shape",
        )
    valid = check_values(intensity, field, mask)
    frames = np.where(valid, intensity, 0.0).sum(axis=(1, 2))
    brightest = int(np.argmax(frames))
    if intensity.shape[0] > 2 and brightest in (0, intensity.shape[0] - 1):
        edge = "first" if brightest == 0 else "last"
        raise DyncdiError(
            field,
            f"the rocking scan misses the Bragg peak: its brightest frame is the {edge} of "
            f"{intensity.shape[0]}",
            "centre the rocking range on the peak (crop or re-measure), or check the frame order",
        )


def check_values(intensity: np.ndarray, field: str, mask: np.ndarray | None = None) -> np.ndarray:
    """Raise a DyncdiError for NaN/inf or negative values outside the mask, or no counts at
    all; returns the unmasked voxels (True = valid), any shape."""
    valid = np.ones(intensity.shape, bool) if mask is None else ~mask
    n_bad = int(np.count_nonzero(~np.isfinite(intensity) & valid))
    if n_bad:
        raise DyncdiError(
            field,
            f"{n_bad} NaN or infinite intensity values",
            "mask those pixels or repair the data",
        )
    n_neg = int(np.count_nonzero((intensity < 0) & valid))
    if n_neg:
        raise DyncdiError(
            field,
            f"{n_neg} negative intensity values (min {float(np.nanmin(intensity)):.3g})",
            "subtract the background without going below zero, or mask those pixels",
        )
    if not np.any(intensity[valid] > 0):
        raise DyncdiError(field, "all intensities are zero", "check the file")
    return valid
