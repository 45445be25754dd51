"""Detector corrections of measured BCDI frames: invalid values, the file's mask, gaps and seams,
dark field, flat (white) field, saturation, hot pixels, intensity threshold (pure numpy, no I/O).

`correct_frames` applies them in that order to raw frames (N0, R, C) cut from chip pixels
[row_start, row_stop) x [col_start, col_stop) of a `Detector` and returns the corrected data,
the mask (True = ignored) and a JSON-serialisable record of what it did. Each masked voxel is
counted once, under the first cause that masked it, so the counts by cause add up to the mask:
nothing is dropped without a cause. `correct_frames_by_cause` gives, in place of the mask, that
first cause of each voxel as a map (causes.py codes). `mask_aliens` (aliens.py, re-exported
here) masks bright features without a Friedel partner once the data are centred.

Masking and thresholding differ: a masked voxel is removed from the fit (its value is unknown);
a voxel below the threshold is set to 0 and kept, a measured zero (noise suppressed, as
cohere's `intensity_threshold` does).

The rules and their thresholds (module constants, recorded in the output's `applied` list), in
the order they are applied:

- invalid: a non-finite or negative raw value, or an integer value at its type's maximum: the
  values detectors write for pixels they could not read (Pilatus -1 and -2, Eiger 2**n - 1).
- file: the reader's mask, of one frame (every frame) or of the stack.
- gaps and seams: the detector preset's rectangles (chip pixels) shifted by the ROI origin.
- dark field (full chip): subtracted from every frame, clipped at 0. A pixel whose dark count
  exceeds median + HOT_DARK_SIGMA x spread is hot, spread = max(1.4826 x MAD, 1 count): a
  robust width, at least the one count a counter resolves, since a photon counter's dark is
  mostly zeros (MAD 0). cohere's 34-ID-C Timepix reader masks dark > 1 (cohere-ui's
  cohere_ui/beamlines/aps_34idc/detectors.py, which uses the dark as a bad-pixel map); with
  median 0 the rule here masks dark > 10 (a stray photon or two in the dark is not a hot
  pixel), and a dark with an offset (a CCD's, in ADU) is judged by its own scatter.
- flat field (full chip): normalised to its median over sensitive pixels (finite, positive,
  outside gaps, seams and hot pixels), frames divided by it. A pixel whose normalised flat is
  non-finite or below DEAD_FLAT_FRACTION = 0.2 is dead: masked, not divided (dividing would
  multiply its counts and noise by more than 5). cohere (same file) zeroes the flat below its
  mean - 3 std (0.24 of the median on the 34-ID-C flat of scan 54); on that flat the pixels
  between 0.03 and 0.24 of the median form a flat floor of defective pixels below the
  sensitivity distribution, which 0.2 cuts through without reaching the distribution's tail.
- saturation: raw counts at and above `detector.saturation` (the voxel, not the pixel, as bcdi's
  Detector._saturation_correction).
- hot pixels from the data (bcdi's loader.check_pixels: zero variance along the rocking curve):
  a pixel with counts >= 1 in every unmasked frame and a variance along the rocking axis below
  HOT_VARIANCE_RATIO = 0.1 x its mean, on dark-subtracted counts before the flat (Poisson
  counts have variance = mean; a rocking curve has more). (N - 1) x variance / mean of a
  constant Poisson pixel is chi-square with N - 1 degrees of freedom, so the test needs
  HOT_MIN_FRAMES = 20 frames (there a Poisson pixel falls below 0.1 with probability 2e-7);
  fewer: skipped.
- threshold: corrected counts below it are set to 0 (counted in `zeroed`, not masked).
"""

from __future__ import annotations

import numpy as np

from ..config.beamline import Detector, Rectangle
from ..errors import DyncdiError
from .aliens import mask_aliens
from .causes import CAUSES, mark

__all__ = ["CAUSES", "correct_frames", "correct_frames_by_cause", "mask_aliens"]

HOT_DARK_SIGMA = 10.0
DEAD_FLAT_FRACTION = 0.2
HOT_VARIANCE_RATIO = 0.1
HOT_MIN_FRAMES = 20
HOT_LIST_CAP = 100  # hot pixels listed by position in the record; all are counted
MAD_TO_SIGMA = 1.4826  # MAD of a normal distribution x this = its standard deviation


class _Ledger:
    """The mask being built, with each newly masked voxel and pixel counted under its cause
    and its cause's code (causes.py) written in the cause map."""

    def __init__(self, shape: tuple[int, int, int], roi: tuple[int, int, int, int]) -> None:
        self.mask = np.zeros(shape, bool)
        self.causes = np.zeros(shape, np.uint8)
        self.roi = roi
        self.voxels = dict.fromkeys(CAUSES, 0)
        self.pixels = dict.fromkeys(CAUSES, 0)
        self.hot: list[list[int]] = []

    def add(self, cause: str, where: np.ndarray) -> int:
        """Mask `where` ((R, C): every frame, or (N0, R, C)); returns the voxels newly masked."""
        where = np.asarray(where, bool)
        if where.ndim == 2:
            # a pixel is newly masked when some of its voxels were not masked yet
            fresh_pixels = where & ~self.mask.all(axis=0)
            self.pixels[cause] += int(fresh_pixels.sum())
            if cause == "hot":
                r0, c0 = self.roi[0], self.roi[2]
                self.hot += [[int(r) + r0, int(c) + c0] for r, c in np.argwhere(fresh_pixels)]
            where = np.broadcast_to(where, self.mask.shape)
        fresh = int(np.count_nonzero(mark(self.causes, where, cause)))
        self.voxels[cause] += fresh
        self.mask |= where
        return fresh


def correct_frames(frames: np.ndarray, **options) -> tuple[np.ndarray, np.ndarray, dict]:
    """correct_frames_by_cause(frames, **options) with the mask (N0, R, C) bool, True =
    ignored, in place of the cause map: (data, mask, record)."""
    data, causes, record = correct_frames_by_cause(frames, **options)
    return data, causes > 0, record


def correct_frames_by_cause(
    frames: np.ndarray,
    *,
    detector: Detector,
    roi: tuple[int, int, int, int],
    dark: np.ndarray | None = None,
    flat: np.ndarray | None = None,
    threshold: float | None = None,
    mask: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, dict]:
    """Correct raw frames (N0, R, C) counts, any int or float dtype, of chip pixels roi =
    (row_start, row_stop, col_start, col_stop); dark and flat: full-chip (detector.chip) 2D
    arrays; threshold: counts; mask (N0, R, C) or (R, C), True = ignored.

    Returns data (N0, R, C) float64 (masked voxels 0), the cause map (N0, R, C) uint8 (0
    measured, else causes.code of the first cause; mask = causes > 0) and the record
    {"applied": [...], "masked": {cause: voxels}, "masked_pixels": {cause: pixels}, "zeroed":
    {"threshold": voxels}, "hot_pixels": [[chip row, col], ...], "counts": {...}} (module doc).
    """
    raw = _check_frames(frames)
    roi = _check_roi(roi, detector, raw.shape)
    file_mask = _check_mask(mask, raw.shape)
    threshold = _check_threshold(threshold)
    dark = _check_chip_array(dark, detector, "--dark", "dark field")
    flat = _check_chip_array(flat, detector, "--flat", "flat field")
    window = (slice(roi[0], roi[1]), slice(roi[2], roi[3]))
    ledger = _Ledger(raw.shape, roi)
    applied: list[dict] = []

    invalid = ~np.isfinite(raw) | (raw < 0)
    if np.issubdtype(raw.dtype, np.integer):
        invalid |= raw == np.iinfo(raw.dtype).max
    _step(applied, ledger, "invalid", invalid, rule="non-finite, negative or integer maximum")
    if file_mask is not None:
        _step(applied, ledger, "file", file_mask, rule="the file's mask (True = ignored)")
    chip_bad = np.zeros(detector.chip, bool)
    for cause, rects in (("gap", detector.gaps), ("seam", detector.seams)):
        if rects:
            chip = _rectangles(rects, detector.chip)
            chip_bad |= chip
            _step(
                applied,
                ledger,
                cause,
                chip[window],
                rectangles=[[*r.rows, *r.cols] for r in rects],
                frame="chip pixels [row_start, row_stop, col_start, col_stop]",
            )
    valid_raw = np.where(invalid, 0.0, raw.astype(np.float64))
    counts = valid_raw
    if dark is not None:
        hot, params = _hot_from_dark(dark)
        chip_bad |= hot
        _step(applied, ledger, "hot", hot[window], step="dark", **params)
        counts = np.clip(counts - np.where(hot, 0.0, dark)[window], 0.0, None)
    data = counts
    if flat is not None:
        response, dead, params = _flat_response(flat, chip_bad)
        _step(applied, ledger, "dead", dead[window], step="flat", **params)
        data = counts / np.where(dead, 1.0, response)[window]
    if detector.saturation is not None:
        over = raw >= detector.saturation
        _step(applied, ledger, "saturated", over, limit=float(detector.saturation))
    applied.append(_hot_from_data(counts, ledger))
    data = np.where(ledger.mask, 0.0, data)
    zeroed, removed = 0, 0.0
    if threshold is not None:
        low = (data > 0) & (data < threshold)
        zeroed, removed = int(np.count_nonzero(low)), float(data[low].sum())
        data[low] = 0.0
        applied.append(
            {
                "step": "threshold",
                "counts": threshold,
                "effect": "corrected counts below it set to 0 and kept (not masked)",
                "voxels_zeroed": zeroed,
            }
        )
    record = _record(applied, ledger, valid_raw, data, zeroed, removed)
    return data, ledger.causes, record


def _step(applied: list[dict], ledger: _Ledger, cause: str, where, step=None, **params) -> None:
    """Mask where under cause and note the step with its parameters and voxels masked."""
    voxels = ledger.add(cause, where)
    applied.append({"step": step or cause, "cause": cause, **params, "voxels_masked": voxels})


def _record(applied, ledger, valid_raw, data, zeroed, removed) -> dict:
    """The JSON-serialisable record of the corrections (see correct_frames)."""
    raw_total = float(valid_raw.sum())
    raw_masked = float(valid_raw[ledger.mask].sum())
    return {
        "applied": applied,
        "roi": list(ledger.roi),
        "masked": dict(ledger.voxels),
        "masked_total": int(ledger.mask.sum()),
        "masked_pixels": dict(ledger.pixels),
        "zeroed": {"threshold": zeroed},
        "hot_pixels": ledger.hot[:HOT_LIST_CAP],
        "hot_pixels_total": len(ledger.hot),
        "counts": {
            "raw": raw_total,
            "raw_in_masked": raw_masked,
            "corrected": float(data.sum()),
            "threshold_removed": removed,
        },
        "notes": (
            "masked: voxels removed from the fit, each counted under its first cause; "
            "masked_pixels: pixels masked in every frame by that cause; zeroed: voxels set to "
            "0 by the threshold and kept as measured zeros (not masked); hot_pixels: chip "
            f"[row, col], the first {HOT_LIST_CAP}"
        ),
    }


def _hot_from_dark(dark: np.ndarray) -> tuple[np.ndarray, dict]:
    """Hot pixels of a full-chip dark: non-finite, or above median + HOT_DARK_SIGMA x spread."""
    finite = np.isfinite(dark)
    values = dark[finite].astype(np.float64)
    if values.size == 0:
        raise DyncdiError("--dark", "the dark field has no finite value", "check the dark file")
    median = float(np.median(values))
    mad = float(np.median(np.abs(values - median)))
    spread = max(MAD_TO_SIGMA * mad, 1.0)
    limit = median + HOT_DARK_SIGMA * spread
    hot = ~finite | (np.where(finite, dark, 0) > limit)
    params = {
        "subtracted": True,
        "clipped_at": 0.0,
        "median": median,
        "mad": mad,
        "hot_above": limit,
        "rule": f"dark > median + {HOT_DARK_SIGMA:g} x max(1.4826 MAD, 1)",
        "hot_pixels_chip": int(hot.sum()),
    }
    return hot, params


def _flat_response(flat: np.ndarray, insensitive: np.ndarray) -> tuple[np.ndarray, ...]:
    """(response, dead, parameters): the full-chip flat over its median on sensitive pixels;
    dead where it is non-finite or below DEAD_FLAT_FRACTION."""
    finite = np.isfinite(flat)
    flat = np.where(finite, flat, 0.0).astype(np.float64)
    sensitive = finite & (flat > 0) & ~insensitive
    if not sensitive.any():
        raise DyncdiError(
            "--flat", "the flat field has no positive value on sensitive pixels", "check the file"
        )
    median = float(np.median(flat[sensitive]))
    response = flat / median
    dead = ~finite | (response < DEAD_FLAT_FRACTION)
    params = {
        "divided": True,
        "median": median,
        "dead_below": DEAD_FLAT_FRACTION,
        "rule": f"flat / median(flat on sensitive pixels) < {DEAD_FLAT_FRACTION:g} or non-finite",
        "dead_pixels_chip": int(dead.sum()),
    }
    return response, dead, params


def _hot_from_data(counts: np.ndarray, ledger: _Ledger) -> dict:
    """Mask pixels bright in every frame with no rocking-curve variation (see the module doc)."""
    step = {
        "step": "hot_from_data",
        "cause": "hot",
        "rule": f"counts >= 1 in every frame and variance < {HOT_VARIANCE_RATIO:g} x mean "
        "along the rocking axis",
        "variance_ratio": HOT_VARIANCE_RATIO,
        "min_frames": HOT_MIN_FRAMES,
    }
    kept = ~ledger.mask
    n = kept.sum(axis=0)
    if counts.shape[0] < HOT_MIN_FRAMES:
        return {**step, "skipped": f"fewer than {HOT_MIN_FRAMES} frames", "voxels_masked": 0}
    total = np.where(kept, counts, 0.0).sum(axis=0)
    mean = total / np.maximum(n, 1)
    spread = np.where(kept, (counts - mean) ** 2, 0.0).sum(axis=0) / np.maximum(n - 1, 1)
    lowest = np.where(kept, counts, np.inf).min(axis=0)
    hot = (n >= HOT_MIN_FRAMES) & (lowest >= 1) & (spread < HOT_VARIANCE_RATIO * mean)
    return {**step, "voxels_masked": ledger.add("hot", hot)}


def _rectangles(rects: list[Rectangle], chip: tuple[int, int]) -> np.ndarray:
    """The full-chip (rows, cols) mask of rectangles in chip pixels."""
    out = np.zeros(chip, bool)
    for r in rects:
        out[r.rows[0] : r.rows[1], r.cols[0] : r.cols[1]] = True
    return out


def _check_frames(frames) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim != 3 or not frames.size:
        raise DyncdiError(
            "frames",
            f"frames of shape {list(frames.shape)}, not (frames, rows, columns)",
            "give a stack of detector frames, one per rocking step",
        )
    if not (np.issubdtype(frames.dtype, np.integer) or np.issubdtype(frames.dtype, np.floating)):
        raise DyncdiError("frames", f"counts of type {frames.dtype}", "give int or float counts")
    return frames


def _check_roi(roi, detector: Detector, shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    rows, cols = detector.chip
    fix = f"give row_start, row_stop, col_start, col_stop within the {rows} x {cols} chip"
    if len(roi) != 4:
        raise DyncdiError("--roi", f"ROI {list(roi)} is not 4 numbers", fix)
    r0, r1, c0, c1 = (int(v) for v in roi)
    if not (0 <= r0 < r1 <= rows and 0 <= c0 < c1 <= cols):
        raise DyncdiError("--roi", f"ROI {[r0, r1, c0, c1]} lies outside the chip", fix)
    if (r1 - r0, c1 - c0) != tuple(shape[1:]):
        raise DyncdiError(
            "--roi",
            f"ROI {[r0, r1, c0, c1]} is {r1 - r0} x {c1 - c0} pixels but the frames are "
            f"{shape[1]} x {shape[2]}",
            "give the ROI the frames were cut from",
        )
    return r0, r1, c0, c1


def _check_mask(mask, shape: tuple[int, ...]) -> np.ndarray | None:
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.shape not in (tuple(shape), tuple(shape[1:])):
        raise DyncdiError(
            "--mask",
            f"mask shape {list(mask.shape)} fits neither the frames {list(shape)} nor one frame",
            "give a mask of the frames' shape or of one frame (True = ignored)",
        )
    return mask.astype(bool)


def _check_threshold(threshold) -> float | None:
    if threshold is None:
        return None
    if not np.isfinite(threshold) or threshold < 0:
        raise DyncdiError("--threshold", f"{threshold} is not >= 0 counts", "give counts >= 0")
    return float(threshold)


def _check_chip_array(array, detector: Detector, field: str, what: str) -> np.ndarray | None:
    if array is None:
        return None
    array = np.asarray(array)
    rows, cols = detector.chip
    if array.shape != (rows, cols):
        raise DyncdiError(
            field,
            f"{what} of shape {list(array.shape)}, not the detector's chip {rows} x {cols}",
            f"give the full-chip {what} ({rows} x {cols})",
        )
    if not (np.issubdtype(array.dtype, np.integer) or np.issubdtype(array.dtype, np.floating)):
        raise DyncdiError(field, f"{what} of type {array.dtype}", "give int or float values")
    return array
