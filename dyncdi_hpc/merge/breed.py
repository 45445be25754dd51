"""Generations of reconstructions: selection metrics and breeding of aligned members."""

from __future__ import annotations

import numpy as np

from ..physics.objects import support_of
from .align import align


def sharpness(obj: np.ndarray) -> float:
    """sum |a|^4 / (sum |a|^2)^2 of the amplitude: larger for a crisper, more compact object."""
    power = np.abs(obj) ** 2
    return float(np.sum(power**2) / np.sum(power) ** 2)


def rank(scores: dict[str, dict[str, float]], metrics: list[str]) -> list[str]:
    """Member ids best first; several metrics are combined by the sum of their ranks.

    scores[member][metric]; error, loss and support (voxels) are better small, sharpness large.
    """
    members = list(scores)
    total = dict.fromkeys(members, 0.0)
    for metric in metrics:
        sign = -1.0 if metric == "sharpness" else 1.0
        order = sorted(members, key=lambda m: (sign * scores[m][metric], m))
        for position, member in enumerate(order):
            total[member] += position
    return sorted(members, key=lambda m: (total[m], m))


def breed(alpha: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Child of the best member and another: sqrt of the amplitude product, mean phase.

    `other` is aligned onto `alpha` first (twin, shift, ramp, offset), so that the two are
    combined voxel by voxel in the same frame; the child of alpha with itself is alpha.
    """
    aligned = align(other, alpha).obj
    amplitude = np.sqrt(np.abs(alpha) * np.abs(aligned))
    phase = np.angle(np.exp(1j * np.angle(alpha)) + np.exp(1j * np.angle(aligned)))
    return amplitude * np.exp(1j * phase)


def member_scores(obj: np.ndarray, metrics: dict[str, float]) -> dict[str, float]:
    """Every selection metric of one result: its stored error and loss, sharpness, support."""
    return {
        "error": float(metrics["error"]),
        "loss": float(metrics["loss"]),
        "sharpness": sharpness(obj),
        "support": float(support_of(obj).sum()),
    }
