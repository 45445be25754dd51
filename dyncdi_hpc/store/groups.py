"""The schema of every group in the store: one encode/decode pair per kind, with units, dims
and kind tags in one place, so that a group opens in any xarray tool without our code.

Kinds: input (intensities in the detector frame, mask, simulated truth), result (one
reconstruction on the conjugate grid, one complex array), start (an object bred for a later
generation), checkpoint (a task's resumable arrays), merged (an ensemble's mean object, its
spreads and per-member scores), multi (a displacement vector field on the sample grid). Physics
objects enter only through what they write down (a geometry's to_attrs(), real_basis, rocking
angles), so this module imports no physics.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import xarray as xr

from ..provenance import now_iso, provenance

DETECTOR_DIMS = ("rocking", "row", "col")
GRID_DIMS = ("x0", "x1", "x2")
SAMPLE_DIMS = ("x", "y", "z")

INPUT, RESULT, START, MERGED, MULTI = (
    "dyncdi-input",
    "dyncdi-result",
    "dyncdi-start",
    "dyncdi-merged",
    "dyncdi-multi",
)


class GeometryLike(Protocol):
    """What an input group records of a scan geometry (physics.geometry.Geometry)."""

    shape: tuple[int, int, int]

    @property
    def rocking_angles_rad(self) -> np.ndarray: ...

    @property
    def real_basis(self) -> np.ndarray: ...

    def to_attrs(self) -> dict: ...


def complex_object(ds: xr.Dataset) -> np.ndarray:
    """The complex object of a result (its object array), start or merged group (amplitude
    exp(i phase))."""
    if "object" in ds:
        return ds["object"].values
    return ds["amplitude"].values * np.exp(1j * ds["phase"].values)


def grid_coords(shape: tuple[int, ...], real_basis_nm: np.ndarray | None = None) -> dict:
    """Coordinates of a conjugate grid of shape (N0, N1, N2): position along each real-space
    step a_i (nm, 0 at the centre voxel N_i // 2) when real_basis_nm (3, 3; columns a_i) is
    given, else voxel indices. The steps' directions live in attrs (real_basis_nm)."""
    if real_basis_nm is None:
        steps, units = np.ones(len(shape)), "voxel"
    else:
        steps, units = np.linalg.norm(np.asarray(real_basis_nm, float), axis=0), "nm"
    return {
        dim: xr.DataArray(
            (np.arange(n) - n // 2) * step if units == "nm" else np.arange(n),
            dims=dim,
            attrs={"units": units, "long_name": f"position along real-space step a{i}"},
        )
        for i, (dim, n, step) in enumerate(zip(GRID_DIMS, shape, steps, strict=True))
    }


def sample_coords(axes_nm: list[np.ndarray]) -> dict:
    """Coordinates x, y, z (nm) of an orthogonal sample-frame grid, CF axis attributes."""
    return {
        name: xr.DataArray(
            axis,
            dims=name,
            attrs={"units": "nm", "long_name": f"sample-frame {name}", "axis": name.upper()},
        )
        for name, axis in zip(SAMPLE_DIMS, axes_nm, strict=True)
    }


# ------------------------------------------------------------------------------------ inputs

TRUTH_VARIABLES = {
    "amplitude": ("truth_amplitude", {"units": "1"}),
    "phase": ("truth_phase", {"units": "rad"}),
    "support": ("truth_support", {}),
    "displacement_nm": ("truth_displacement", {"units": "nm", "long_name": "u along h"}),
}


def encode_input(
    intensity: np.ndarray,
    geometry: GeometryLike,
    *,
    source: dict,
    fingerprint: str,
    mask: np.ndarray | None = None,
    truth: Mapping[str, np.ndarray] | None = None,
    mask_cause: np.ndarray | None = None,
    mask_cause_attrs: Mapping | None = None,
) -> xr.Dataset:
    """Input group: intensity (+ mask, + truth on the conjugate grid) with units, geometry and
    provenance in attrs. truth: arrays by TRUTH_VARIABLES' keys (amplitude, phase, ...);
    mask_cause: why each voxel is masked (N0, N1, N2) uint8, 0 = measured, its CF flag
    attributes (flag_values, flag_meanings) in mask_cause_attrs (data/causes.py)."""
    coords = {
        "rocking": xr.DataArray(
            np.degrees(geometry.rocking_angles_rad),
            dims="rocking",
            attrs={"units": "degree", "long_name": "rocking angle relative to the Bragg angle"},
        ),
        "row": xr.DataArray(np.arange(geometry.shape[1]), dims="row", attrs={"units": "pixel"}),
        "col": xr.DataArray(np.arange(geometry.shape[2]), dims="col", attrs={"units": "pixel"}),
    }
    coords.update(grid_coords(geometry.shape, geometry.real_basis))
    variables = {
        "intensity": xr.Variable(
            DETECTOR_DIMS, intensity, attrs={"units": "counts", "long_name": "diffracted intensity"}
        )
    }
    if mask is not None:
        variables["mask"] = xr.Variable(
            DETECTOR_DIMS, mask.astype(bool), attrs={"long_name": "pixel ignored in every fit"}
        )
    if mask_cause is not None:
        variables["mask_cause"] = xr.Variable(
            DETECTOR_DIMS, np.asarray(mask_cause, np.uint8), attrs=dict(mask_cause_attrs or {})
        )
    if truth is not None:
        for key, (name, attrs) in TRUTH_VARIABLES.items():
            variables[name] = xr.Variable(GRID_DIMS, truth[key], attrs)
    return xr.Dataset(
        variables,
        coords=coords,
        attrs={
            "kind": INPUT,
            "geometry": geometry.to_attrs(),
            "real_basis_nm": geometry.real_basis.tolist(),
            "source": source,
            "fingerprint": fingerprint,
            "provenance": provenance(),
        },
    )


@dataclass(frozen=True)
class InputGroup:
    """An input group's arrays: intensity (N0, N1, N2), mask (True = ignored) or None, the
    geometry's attrs, the truth's arrays by TRUTH_VARIABLES' keys or None, all attrs, and
    why each voxel is masked (uint8, N0, N1, N2; its meanings in its flag attributes) or None
    (simulations, and scans loaded before it was stored)."""

    intensity: np.ndarray
    mask: np.ndarray | None
    geometry: dict
    truth: dict[str, np.ndarray] | None
    attrs: dict
    mask_cause: np.ndarray | None = None


def decode_input(ds: xr.Dataset) -> InputGroup:
    """The arrays and attributes of an input group (encode_input's inverse)."""
    truth = None
    if "truth_amplitude" in ds:
        truth = {key: ds[name].values for key, (name, _) in TRUTH_VARIABLES.items()}
        truth["support"] = truth["support"].astype(bool)
    return InputGroup(
        intensity=np.asarray(ds["intensity"].values),
        mask=np.asarray(ds["mask"].values, bool) if "mask" in ds else None,
        geometry=dict(ds.attrs["geometry"]),
        truth=truth,
        attrs=dict(ds.attrs),
        mask_cause=np.asarray(ds["mask_cause"].values, np.uint8) if "mask_cause" in ds else None,
    )


# ------------------------------------------------------------------ results, starts, checkpoints


def encode_result(
    obj: np.ndarray | None,
    pr_error: np.ndarray | None,
    ad_loss: np.ndarray | None,
    attrs: dict,
) -> xr.Dataset:
    """Result group: the complex object (N0, N1, N2) on the conjugate grid in one chunk file,
    the loss histories and everything else in attrs (kind, status, metrics, spec, ...); a
    failed task (obj None) has attrs only. Three files per result: the group's zarr.json,
    the array's, and its one chunk; decode_result restores amplitude, phase and histories."""
    variables = {}
    histories = {}
    if obj is not None:
        histories = {"pr_error": _floats(pr_error), "ad_loss": _floats(ad_loss)}
        variables["object"] = xr.Variable(
            GRID_DIMS,
            np.asarray(obj, np.complex64),
            {"long_name": "reconstructed object S exp(i phase), crystal centred"},
            encoding={"chunks": np.shape(obj), "chunk_key_encoding": SINGLE_FILE_CHUNKS},
        )
    return xr.Dataset(variables, attrs={"kind": RESULT, **attrs, **histories})


# one chunk per array named "0.0.0" beside its zarr.json: no nested chunk folders
SINGLE_FILE_CHUNKS = {"name": "v2", "separator": "."}


def _floats(values: np.ndarray | None) -> list[float]:
    return [] if values is None else [float(v) for v in np.asarray(values).ravel()]


def decode_result(ds: xr.Dataset) -> xr.Dataset:
    """A result group with amplitude and phase (float32, conjugate grid) and the pr_error and
    ad_loss histories as variables, as every result looked before results were one array."""
    if "object" not in ds:
        return ds
    obj = ds["object"].values
    out = ds.assign(
        amplitude=(GRID_DIMS, np.abs(obj).astype(np.float32), {"units": "1"}),
        phase=(GRID_DIMS, np.angle(obj).astype(np.float32), {"units": "rad"}),
        pr_error=(
            ("pr_log",),
            np.asarray(ds.attrs.get("pr_error", []), np.float32),
            {"long_name": "normalised Fourier error per log interval"},
        ),
        ad_loss=(
            ("ad_step",),
            np.asarray(ds.attrs.get("ad_loss", []), np.float32),
            {"long_name": "AD data loss"},
        ),
    )
    return out


def encode_start(obj: np.ndarray, parents: dict, rule: str) -> xr.Dataset:
    """Start group: a bred start object (amplitude, phase) and how it was made."""
    return xr.Dataset(
        {
            "amplitude": (GRID_DIMS, np.abs(obj).astype(np.float32)),
            "phase": (GRID_DIMS, np.angle(obj).astype(np.float32), {"units": "rad"}),
        },
        attrs={"kind": START, "parents": parents, "rule": rule},
    )


def encode_checkpoint(stage: str, step: int, arrays: Mapping[str, np.ndarray]) -> xr.Dataset:
    """Checkpoint group: one variable per array (own dims), stage and step in attrs."""
    variables = {
        name: xr.Variable(tuple(f"{name}_{d}" for d in range(a.ndim)), a)
        for name, a in arrays.items()
    }
    return xr.Dataset(variables, attrs={"stage": stage, "step": step, "written_at": now_iso()})


def decode_checkpoint(ds: xr.Dataset) -> tuple[str, int, dict[str, np.ndarray]]:
    """(stage, step, arrays) of a checkpoint group."""
    arrays = {name: np.asarray(v.values) for name, v in ds.data_vars.items()}
    return ds.attrs["stage"], int(ds.attrs["step"]), arrays


# ------------------------------------------------------------------------------------ merged

MERGED_FIELDS = {
    "amplitude": ("1", "amplitude of the merged object (interior ~ 1)"),
    "phase": ("rad", "phase -h.u of the merged object"),
    "displacement": ("nm", "displacement along h (-phase / |h|, unwrapped, zero mean)"),
    "strain": ("1", "strain along h (d u_h / d z, from the gradient of exp(i phi))"),
    "amplitude_std": ("1", "std over members of the amplitude"),
    "phase_std": ("rad", "circular std over members of the phase"),
    "support_probability": ("1", "fraction of members whose support holds the voxel"),
}
SPREADS = {
    "std": "std over members",
    "sem": "bootstrap standard error",
}
SPREAD_FIELDS = {
    "amplitude": ("1", "of the amplitude"),
    "phase": ("rad", "of the phase (circular)"),
    "displacement": ("nm", "of the displacement along h"),
    "strain": ("1", "of the strain along h"),
}
MEMBER_FIELDS = {
    "member_score": {"long_name": "selection metric of each selected result"},
    "member_phase_rms": {
        "units": "rad",
        "long_name": "phase RMS against the majority (median) object",
    },
    "member_dice": {"units": "1", "long_name": "support Dice against the majority support"},
    "member_outlier": {"long_name": "excluded as disagreeing with the majority"},
}


def _field_attrs(name: str) -> dict:
    """Units and long name of a merged volume field, spreads (<field>_std, _sem) included."""
    if name in MERGED_FIELDS:
        units, long_name = MERGED_FIELDS[name]
        return {"units": units, "long_name": long_name}
    field, suffix = name.rsplit("_", 1)
    units, what = SPREAD_FIELDS[field]
    return {"units": units, "long_name": f"{SPREADS[suffix]} {what}"}


def encode_merged(
    fields: Mapping[str, np.ndarray],
    support: np.ndarray,
    members: Mapping[str, np.ndarray],
    *,
    metric: str,
    prtf: np.ndarray,
    q_nm: np.ndarray,
    attrs: dict,
) -> xr.Dataset:
    """Merged group: volume fields (MERGED_FIELDS and <field>_std / _sem spreads) and the
    support on the conjugate grid, per-member arrays (MEMBER_FIELDS), the PRTF in q shells."""
    variables = {
        name: (GRID_DIMS, np.asarray(values, np.float32), _field_attrs(name))
        for name, values in fields.items()
    }
    variables["support"] = (GRID_DIMS, support, {"long_name": "support of the merged object"})
    for name, values in members.items():
        extra = {"metric": metric} if name == "member_score" else {}
        variables[name] = (("member",), np.asarray(values), {**extra, **MEMBER_FIELDS[name]})
    variables["prtf"] = (
        ("q_shell",),
        prtf,
        {"units": "1", "long_name": "phase-retrieval transfer function |<F_k>| / sqrt(I)"},
    )
    n_members = len(next(iter(members.values())))
    return xr.Dataset(
        variables,
        coords={
            **grid_coords(support.shape, attrs.get("real_basis_nm")),
            "member": np.arange(n_members),
            "q_shell": ("q_shell", q_nm, {"units": "nm^-1", "long_name": "|q|"}),
        },
        attrs={"kind": MERGED, **attrs},
    )


# -------------------------------------------------------------------------------------- multi


def encode_displacement(
    displacement_nm: np.ndarray,
    support: np.ndarray,
    axes_nm: list[np.ndarray],
    *,
    strain: np.ndarray | None = None,
    attrs: dict,
) -> xr.Dataset:
    """u (component, x, y, z) nm, NaN outside support, [+ strain (i, j, x, y, z)] and support
    on a sample-frame grid with coordinates in nm."""
    support = np.asarray(support, bool)
    u = np.where(support, displacement_nm, np.nan)
    ds = xr.Dataset(
        {
            "displacement": (
                ("component", *SAMPLE_DIMS),
                u.astype(np.float32),
                {"units": "nm", "long_name": "displacement vector u (zero mean in the support)"},
            ),
            "support": (SAMPLE_DIMS, support),
        },
        coords={**sample_coords(axes_nm), "component": list(SAMPLE_DIMS)},
        attrs=attrs,
    )
    if strain is not None:
        ds = ds.assign_coords(i=list(SAMPLE_DIMS), j=list(SAMPLE_DIMS))
        ds["strain"] = (
            ("i", "j", *SAMPLE_DIMS),
            strain.astype(np.float32),
            {"units": "1", "long_name": "strain tensor (du_i/dr_j + du_j/dr_i) / 2"},
        )
    return ds


def encode_multi(
    ds: xr.Dataset,
    *,
    shape: np.ndarray,
    independent_nm: np.ndarray,
    projections_nm: np.ndarray,
    reflections: list[str],
    joint_loss: np.ndarray,
    attrs: dict,
) -> xr.Dataset:
    """Multi group: encode_displacement's joint u (and tensor) with the joint shape, the
    independent route's u and per-reflection projections, and the joint loss history."""
    dims = ds["support"].dims
    ds = ds.copy()
    ds["shape"] = (dims, shape.astype(np.float32), {"units": "1", "long_name": "shape S"})
    ds["displacement_independent"] = (
        ("component", *dims),
        independent_nm.astype(np.float32),
        {"units": "nm", "long_name": "u of the independent route (per-voxel least squares)"},
    )
    ds["projection_independent"] = (
        ("reflection", *dims),
        projections_nm.astype(np.float32),
        {"units": "nm", "long_name": "h_j.u / |h_j| of each aligned reconstruction"},
    )
    ds = ds.assign_coords(reflection=reflections)
    ds["joint_loss"] = (("joint_step",), joint_loss, {"long_name": "joint AD data loss"})
    ds.attrs.update(kind=MULTI, **attrs)
    return ds
