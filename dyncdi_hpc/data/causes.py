"""Why each voxel of a loaded scan is masked: a uint8 code per voxel, 0 for a measured voxel
and MASK_CAUSES.index(cause) + 1 for a masked one, under the first cause that masked it.

The detector corrections (corrections.py) and the checks without a preset (prepare.py) write
the codes; the load (load.py) carries the map beside the mask through the flips, the binning,
the crop or padding and the alien masking, so that it stays the mask's twin (mask == (cause
> 0)), and stores it in the input group as `mask_cause` with CF flag attributes.
"""

from __future__ import annotations

import numpy as np

CAUSES = ("invalid", "file", "gap", "seam", "hot", "dead", "saturated")  # detector corrections
MASK_CAUSES = (*CAUSES, "alien", "padding")
MEASURED = 0
NOT_MASKED = 255  # stands for "measured" while the lowest code of a binned pixel is found


def code(cause: str) -> int:
    """The uint8 code of a cause (a name of MASK_CAUSES)."""
    return MASK_CAUSES.index(cause) + 1


def mark(causes: np.ndarray, where: np.ndarray, cause: str) -> np.ndarray:
    """Mark the voxels of where (bool, broadcast to causes' shape) not masked yet with cause's
    code, in place; returns the voxels newly marked (bool, causes' shape)."""
    fresh = np.broadcast_to(where, causes.shape) & (causes == MEASURED)
    causes[fresh] = code(cause)
    return fresh


def bin_causes(causes: np.ndarray, factor: int) -> np.ndarray:
    """The causes of factor x factor binned detector pixels (N0, N1 // factor, N2 // factor),
    trimmed like prepare.bin_detector: a binned pixel is masked when any of its pixels is,
    under the lowest code among them (the codes follow the order the corrections run in)."""
    n1, n2 = (s - s % factor for s in causes.shape[1:])
    shape = (causes.shape[0], n1 // factor, factor, n2 // factor, factor)
    lifted = np.where(causes == MEASURED, NOT_MASKED, causes)[:, :n1, :n2]
    lowest = lifted.reshape(shape).min(axis=(2, 4))
    return np.where(lowest == NOT_MASKED, MEASURED, lowest).astype(np.uint8)


def window_causes(
    causes: np.ndarray, start: tuple[int, int, int], shape: tuple[int, ...]
) -> np.ndarray:
    """The causes of the window of shape whose first voxel is causes' index start (negative
    where it pads, as prepare.window): voxels outside causes are padding."""
    out = np.full(shape, code("padding"), np.uint8)
    src, dst = [], []
    for s, n, t in zip(start, causes.shape, shape, strict=True):
        lo, hi = max(s, 0), min(s + t, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - s, hi - s))
    out[tuple(dst)] = causes[tuple(src)]
    return out


def cause_counts(causes: np.ndarray) -> dict[str, int]:
    """Voxels per cause (every name of MASK_CAUSES) of a cause map."""
    counts = np.bincount(np.asarray(causes, np.uint8).ravel(), minlength=len(MASK_CAUSES) + 1)
    return {cause: int(counts[code(cause)]) for cause in MASK_CAUSES}


def flag_attrs() -> dict:
    """CF flag attributes of a cause map: flag_values 0..len(MASK_CAUSES) and their meanings."""
    return {
        "long_name": "why the voxel is masked (0: measured), under its first cause",
        "flag_values": list(range(len(MASK_CAUSES) + 1)),
        "flag_meanings": " ".join(("measured", *MASK_CAUSES)),
    }
