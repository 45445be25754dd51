"""Aliens: bright compact features of a centred BCDI scan that have no Friedel partner.

The kinematical diffraction of a crystal obeys |F(q)| ≈ |F(-q)| about its Bragg peak (exactly
for a real density). A stray reflection from another grain, a slit edge's scatter or a zinger
lies on one side only. Inversion about the peak commutes with any linear map through the peak,
so the test runs in the detector frame (rocking angle, row, column) without gridding to q.
This automates what users of bcdi (interactive alien masking) and cohere (`aliens` boxes in
config_data) do by eye.

Friedel symmetry alone is not enough on measured data: a strain phase makes fringes lopsided,
and dynamical diffraction (refraction, extinction: this project's subject) moves whole parts of
the pattern. On the Au(111) scan 54 of APS 34-ID-C the facet streaks on one side run about 9
pixels away from the mirror of those on the other, so their fringes have no partner at the
mirrored voxel (ratios of 20 to 200). What tells them from aliens is that they belong to an
extended structure: their immediate surroundings are as bright as they are. Hence rule 4.

The rule (`mask_aliens`; thresholds are module constants):

1. Centre: the voxel `peak` refined to half a voxel as the maximum of the autoconvolution
   sum_x I(x) I(s - x) over a box of CENTRE_BOX_HALF voxels around the peak, s = 2 x centre
   searched within CENTRE_SEARCH of 2 x peak, i.e. the centre within 3 voxels of `peak` (a
   mirror off by one voxel misaligns steep fringes; the array centre may be given as `peak`
   when the peak lies within a voxel or two of it).
2. Only voxels whose mirror s - x lies inside the array, both unmasked, are tested; the rest
   cannot be judged and are left as they are.
3. Counts are summed over BOX^3 boxes (B at x, B_m at its mirror) so fringe minima and Poisson
   noise do not pass for asymmetry. A voxel is a candidate when B > RATIO x B_m and B - B_m >
   SIGMA x sqrt(B + B_m + 1): RATIO = 10 leaves out most of the lopsidedness of strained
   fringes (factors of a few; rule 4 deals with the rest); SIGMA = 6 keeps Poisson noise out
   over the ~1e7 voxels of a scan.
4. Connected candidates (26-neighbours) form a feature. It is an alien when its counts are at
   least MIN_COUNTS and RATIO times its mirror's, and it is compact: its mean count is at least
   ISOLATION times the 90th percentile of the counts in the shell 1 to SHELL voxels around it.
   Blobs on a weak background score 3 to 17 in simulations (with and without strain); the
   fringes, lopsided lobes and streak segments of a crystal's own pattern score 1.0 at most
   (scan 54, and simulated crystals with up to 12 rad of phase), so ISOLATION = 2.
5. Each alien is masked grown by GROW voxels (its tails), and listed with "masked": True.
   A feature that fails only the compactness test of rule 4 but whose mean count is
   DIFFUSE_CONTRAST times the mean of the shell SHELL + 1 to FAR voxels around it is listed
   as a suspect with "masked": False: a broad one-sided spot, for a person to look at (and to
   mask with a file mask if it is an alien). On scan 54 one such spot (rocking frames 152-176,
   rows 56-69, columns 98-108 of the ROI, ~2400 counts, 65 frames and 65 rows from the peak)
   scores 7.8 (26 after cohere's threshold of 2 counts); the crystal's features 5.1 at most.

Not found: an alien no brighter than the fringes it lies on (it is not compact against them),
and one whose mirror falls outside the data or in the mask.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import binary_dilation, find_objects, label, uniform_filter

BOX = 3
RATIO = 10.0
SIGMA = 6.0
MIN_COUNTS = 100.0
ISOLATION = 2.0
SHELL = 2
DIFFUSE_CONTRAST = 6.0
FAR = 5
GROW = 1
CENTRE_BOX_HALF = 8
CENTRE_SEARCH = 6  # half-voxel steps: the centre is searched within 3 voxels of `peak`
MAX_LISTED = 50  # features listed, brightest first (all aliens are masked)
_CUBE = np.ones((3, 3, 3), bool)


def mask_aliens(
    data: np.ndarray, mask: np.ndarray, peak: tuple[int, int, int]
) -> tuple[np.ndarray, list[dict]]:
    """Mask aliens (see the module doc) of centred data (N0, N1, N2) counts, mask (N0, N1, N2)
    bool True = ignored, peak the Bragg peak voxel.

    Returns the new mask (N0, N1, N2) bool and the features found, brightest first, each
    {"bbox": [[start, stop] per axis], "voxels", "counts", "mirror_counts", "ratio",
    "isolation", "contrast", "masked": bool, "masked_voxels", "centre": the symmetry centre
    used (voxels, halves allowed)}.
    """
    data = np.asarray(data)
    mask = np.asarray(mask, bool)
    if data.shape != mask.shape or data.ndim != 3:
        raise ValueError(f"data {data.shape} and mask {mask.shape}: give two equal 3D shapes")
    if any(not 0 <= p < n for p, n in zip(peak, data.shape, strict=True)):
        raise ValueError(f"peak {list(peak)} lies outside the data {list(data.shape)}")
    values = np.array(data, np.float64)
    values[mask | ~np.isfinite(values) | (values < 0)] = 0.0
    twice = _centre(values, tuple(int(p) for p in peak))
    inside = _mirror(np.ones(data.shape, bool), twice, False)
    # tested is its own mirror image, so the mirror's box sums are the box sums mirrored
    tested = inside & ~mask & ~_mirror(mask, twice, True)
    own = np.where(tested, values, 0.0)
    mirrored = _mirror(own, twice, 0.0)
    box = uniform_filter(own, BOX, mode="constant") * BOX**3
    box_mirror = _mirror(box, twice, 0.0)
    candidate = (
        tested
        & (box > RATIO * box_mirror)
        & (box - box_mirror > SIGMA * np.sqrt(np.maximum(box + box_mirror, 0.0) + 1.0))
    )
    labels, _ = label(candidate, structure=_CUBE)
    found = []
    new_mask = mask.copy()
    for index, where in enumerate(find_objects(labels), start=1):
        if where is None:
            continue
        region = tuple(
            slice(max(w.start - FAR - 1, 0), min(w.stop + FAR + 1, n))
            for w, n in zip(where, data.shape, strict=True)
        )
        feature = labels[region] == index
        record = _judge(feature, own[region], mirrored[region], tested[region])
        if record is None:
            continue
        record["bbox"] = [[w.start, w.stop] for w in where]
        record["centre"] = [t / 2 for t in twice]
        record["masked_voxels"] = 0
        if record["masked"]:
            grown = np.zeros(data.shape, bool)
            grown[region] = binary_dilation(feature, _CUBE, iterations=GROW)
            record["masked_voxels"] = int(np.count_nonzero(grown & ~new_mask))
            new_mask |= grown
        found.append(record)
    found.sort(key=lambda a: -a["counts"])
    return new_mask, found[:MAX_LISTED]


def _judge(feature, own, mirrored, tested) -> dict | None:
    """The record of a candidate feature (boolean and count arrays of a region around it) if
    it is an alien or a suspect (rules 4 and 5 of the module doc), else None."""
    counts = float(own[feature].sum())
    mirror_counts = float(mirrored[feature].sum())
    if counts < MIN_COUNTS or counts < RATIO * mirror_counts:
        return None
    level = float(own[feature].mean())
    near = binary_dilation(feature, _CUBE, iterations=SHELL)
    far = binary_dilation(near, _CUBE, iterations=FAR - SHELL) & ~near & tested
    near &= ~feature & tested
    top_near = float(np.percentile(own[near], 90)) if near.any() else 0.0
    mean_far = float(own[far].mean()) if far.any() else 0.0
    isolation = level / top_near if top_near > 0 else None
    contrast = level / mean_far if mean_far > 0 else None
    alien = isolation is None or isolation >= ISOLATION
    if not alien and (contrast is not None and contrast < DIFFUSE_CONTRAST):
        return None
    return {
        "voxels": int(feature.sum()),
        "counts": counts,
        "mirror_counts": mirror_counts,
        "ratio": counts / mirror_counts if mirror_counts > 0 else None,
        "isolation": isolation,
        "contrast": contrast,
        "masked": alien,
    }


def _centre(values: np.ndarray, peak: tuple[int, int, int]) -> tuple[int, int, int]:
    """2 x the symmetry centre: the s near 2 x peak that maximises sum_x I(x) I(s - x), x
    within CENTRE_BOX_HALF of the peak."""
    half, search = CENTRE_BOX_HALF, CENTRE_SEARCH
    pad = half + search
    cube = np.zeros((2 * pad + 1,) * 3)
    src, dst = [], []
    for p, n in zip(peak, values.shape, strict=True):
        lo, hi = max(p - pad, 0), min(p + pad + 1, n)
        src.append(slice(lo, hi))
        dst.append(slice(lo - p + pad, hi - p + pad))
    cube[tuple(dst)] = values[tuple(src)]
    core = cube[search:-search, search:-search, search:-search]
    width = 2 * half + 1
    best, best_score = (0, 0, 0), -1.0
    steps = range(-search, search + 1)
    for d in ((d0, d1, d2) for d0 in steps for d1 in steps for d2 in steps):
        # cube at pad + d - u for u in [-half, half]: the flipped slice from search + d
        part = cube[tuple(slice(search + k, search + k + width) for k in d)]
        score = float((core * np.flip(part)).sum())
        if score > best_score:
            best, best_score = d, score
    return tuple(2 * p + k for p, k in zip(peak, best, strict=True))


def _mirror(array: np.ndarray, twice: tuple[int, ...], fill) -> np.ndarray:
    """out[x] = array[twice - x] (inversion about twice / 2), fill where that lies outside."""
    out = np.full(array.shape, fill, array.dtype)
    dst, src = [], []
    for s, n in zip(twice, array.shape, strict=True):
        lo, hi = max(0, s - (n - 1)), min(n - 1, s)
        if hi < lo:
            return out
        dst.append(slice(lo, hi + 1))
        src.append(slice(s - hi, s - lo + 1))
    out[tuple(dst)] = np.flip(array[tuple(src)])
    return out
