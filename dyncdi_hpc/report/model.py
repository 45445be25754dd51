"""The report's model of the data: the intensity a merged object predicts on the measured grid,
under the forward model and the nuisances its members were fitted with, scaled to the counts,
and its Fourier error in the tasks' own normalisation."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ..data.measurement import Measurement
from ..physics.dynamical import DynamicalOptions, support_box
from ..physics.kinematical import centred_far_field
from ..physics.models import Nuisance, forward_model
from ..physics.objects import CrystalParams, logits_of
from ..recon.coherence import blur
from ..store.zarr_store import Store


def modelled_intensity(
    obj: np.ndarray,
    measured: np.ndarray,
    mask: np.ndarray | None,
    model: str = "kinematical",
    m: Measurement | None = None,
    offset_rad: float = 0.0,
    widths: np.ndarray | None = None,
) -> np.ndarray:
    """The intensity of a centred object (N0, N1, N2) under the forward model it was fitted
    with, peak-centred, blurred by the coherence widths (3,) px when given, and scaled to the
    measured counts (least squares over unmasked voxels). The dynamical model (m's geometry,
    the members' rocking offset) marches the box of the object's support."""
    if model == "kinematical" or m is None:
        intensity = np.abs(centred_far_field(obj)) ** 2
    else:
        amplitude = np.abs(obj) / max(float(np.abs(obj).max()), 1e-30)
        crystal = CrystalParams(
            np.asarray(logits_of(np.clip(amplitude, 0.0, 1.0 - 1e-6)), np.float32),
            np.asarray(np.angle(obj), np.float32),
        )
        box = support_box(amplitude > 0.1, margin=2)
        forward = forward_model(model, options=DynamicalOptions(box=box))
        nuisance = Nuisance(np.float32(offset_rad))
        intensity = np.fft.fftshift(np.asarray(forward(crystal, m.geometry, nuisance), float))
    if widths is not None:  # recon/coherence.py blurs in FFT order, as the fit did
        fft_order = jnp.asarray(np.fft.ifftshift(intensity), jnp.float32)
        intensity = np.fft.fftshift(np.asarray(blur(fft_order, jnp.asarray(widths)), float))
    valid = np.ones(measured.shape, bool) if mask is None else ~mask
    scale = float(
        np.sum(measured[valid] * intensity[valid]) / max(np.sum(intensity[valid] ** 2), 1e-300)
    )
    return scale * intensity


def fourier_error(model: np.ndarray, measured: np.ndarray, mask: np.ndarray | None) -> float:
    """sum((sqrt(model) - sqrt(measured))^2) / sum(measured) over unmasked voxels: a task's
    final error metric (recon/pipeline.py) for a modelled intensity (N0, N1, N2) in counts."""
    valid = np.ones(measured.shape, bool) if mask is None else ~mask
    data = np.maximum(measured[valid].astype(float), 0.0)
    num = np.sum((np.sqrt(np.maximum(model[valid], 0.0)) - np.sqrt(data)) ** 2)
    return float(num / max(float(data.sum()), 1e-300))


def members_offset(store: Store, attrs: dict) -> float:
    """Median rocking offset (rad) the merged members fitted (0 when none did)."""
    offsets = [store.result_attrs(t)["metrics"].get("rocking_offset_rad") for t in attrs["members"]]
    offsets = [o for o in offsets if o is not None]
    return float(np.median(offsets)) if offsets else 0.0


def members_widths(store: Store, attrs: dict) -> np.ndarray | None:
    """Median coherence widths (3,) px (rocking, row, column) the merged members fitted, or
    None when they were fitted fully coherent."""
    widths = []
    for t in attrs["members"]:
        metrics = store.result_attrs(t)["metrics"]
        if all(f"coherence_width_{j}" in metrics for j in range(3)):
            widths.append([float(metrics[f"coherence_width_{j}"]) for j in range(3)])
    return np.median(np.asarray(widths), axis=0).astype(np.float32) if widths else None
