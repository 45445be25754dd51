"""One reconstruction task: a frozen spec in, one result group in the store out.

Runs on a Dask worker (or in-process); reads its input from the store, writes its own result
group, and returns only a small summary.
"""

from __future__ import annotations

import time
from functools import lru_cache

import jax
import numpy as np
import xarray as xr
from pydantic import BaseModel, ConfigDict

from .config import DYNAMICAL_ONLY_PARAMS, NEUTRAL_PARAMS, ReconParams, stable_hash
from .data.dataset import GRID_DIMS, Measurement, from_xarray
from .errors import TaskFailed
from .provenance import now_iso, provenance
from .recon.pipeline import Checkpoint, Checkpointing, Reconstruction, reconstruct
from .store.zarr_store import Store


class TaskSpec(BaseModel):
    """Everything that defines one reconstruction; its hash is the task id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str
    fingerprint: str
    params: ReconParams
    seed: int
    generation: int = 0
    start: str | None = None  # id of a bred start object under STORE/starts/

    @property
    def task_id(self) -> str:
        """Stable 16-hex-digit id: the same spec gives the same id on any host, any run."""
        dump = self.model_dump(mode="json")
        for name, neutral in NEUTRAL_PARAMS.items():
            if dump["params"].get(name) == neutral:
                del dump["params"][name]
        if not self.params.uses_dynamical():
            for name in DYNAMICAL_ONLY_PARAMS:
                dump["params"].pop(name, None)
        return stable_hash(dump)


def device_description() -> dict:
    """The JAX device this process computes on (platform 'cpu' or 'gpu', and its kind)."""
    dev = jax.devices()[0]
    return {"platform": dev.platform, "device_kind": dev.device_kind, "count": jax.device_count()}


@lru_cache(maxsize=4)
def _measurement(store_path: str, dataset: str, fingerprint: str) -> Measurement:
    store = Store.open(store_path)
    stored = store.input_attrs(dataset).get("fingerprint")
    if stored != fingerprint:
        raise TaskFailed(
            f"input {dataset!r} in the store has fingerprint {stored}, the task expects "
            f"{fingerprint}: the dataset changed after the sweep was planned"
        )
    return from_xarray(store.read_input(dataset), f"inputs.{dataset}")


def result_dataset(
    spec: TaskSpec, rec: Reconstruction | None, attrs: dict, m: Measurement | None
) -> xr.Dataset:
    """Result group: amplitude, phase, support on the conjugate grid, loss histories, attrs."""
    variables = {}
    # no index coordinates: each would add two files per result on a parallel filesystem
    if rec is not None and m is not None:
        variables = {
            "amplitude": xr.Variable(GRID_DIMS, np.abs(rec.obj).astype(np.float32), {"units": "1"}),
            "phase": xr.Variable(GRID_DIMS, np.angle(rec.obj).astype(np.float32), {"units": "rad"}),
            "support": xr.Variable(GRID_DIMS, rec.support),
            "pr_error": xr.Variable(
                ("pr_log",),
                rec.pr_error,
                {"long_name": "normalised Fourier error per log interval"},
            ),
            "ad_loss": xr.Variable(("ad_step",), rec.ad_loss, {"long_name": "AD data loss"}),
        }
    return xr.Dataset(variables, attrs=attrs)


def checkpoint_dataset(c: Checkpoint) -> xr.Dataset:
    """A checkpoint as an xarray Dataset (one variable per array, stage and step in attrs)."""
    variables = {
        name: xr.Variable(tuple(f"{name}_{d}" for d in range(a.ndim)), a)
        for name, a in c.arrays.items()
    }
    return xr.Dataset(variables, attrs={"stage": c.stage, "step": c.step, "written_at": now_iso()})


def checkpoint_from(ds: xr.Dataset) -> Checkpoint:
    """Inverse of checkpoint_dataset."""
    arrays = {name: np.asarray(v.values) for name, v in ds.data_vars.items()}
    return Checkpoint(stage=ds.attrs["stage"], step=int(ds.attrs["step"]), arrays=arrays)


def task_key(spec: TaskSpec) -> jax.Array:
    """The task's PRNG key: its seed, folded with its generation after the first."""
    key = jax.random.key(spec.seed)
    return jax.random.fold_in(key, spec.generation) if spec.generation else key


def _start_object(store: Store, start_id: str | None) -> np.ndarray | None:
    if start_id is None:
        return None
    ds = store.read_start(start_id)
    return ds["amplitude"].values * np.exp(1j * ds["phase"].values)


def run_task(store_path: str, spec_json: str, checkpoint_every: int = 0) -> dict:
    """Run one task unless its result exists; write its result group; return a small summary.

    A failure with a reason in the data (TaskFailed) is written as a failed result. Any other
    exception propagates, so the scheduler retries the task and the store keeps no result.

    With checkpoint_every > 0 the task saves its state into the store every that many
    iterations and a rerun resumes from the latest checkpoint, so a killed task loses at most
    checkpoint_every iterations.
    """
    spec = TaskSpec.model_validate_json(spec_json)
    task_id = spec.task_id
    store = Store.open(store_path)
    if task_id in store.result_ids():
        return {"task_id": task_id, "status": "skipped"}
    started = now_iso()
    t0 = time.perf_counter()
    rec = m = None
    reason = None
    stored = store.read_checkpoint(task_id)
    resume = checkpoint_from(stored) if stored is not None else None
    checkpointing = Checkpointing(
        every=checkpoint_every,
        resume=resume,
        save=lambda c: store.write_checkpoint(task_id, checkpoint_dataset(c)),
    )
    try:
        m = _measurement(str(store.path), spec.dataset, spec.fingerprint)
        rec = reconstruct(
            m.intensity,
            m.mask,
            m.geometry,
            spec.params,
            key=task_key(spec),
            checkpointing=checkpointing,
            start=_start_object(store, spec.start),
        )
        status = "done"
    except TaskFailed as exc:  # a reason in the data: recorded, and not retried
        status, reason = "failed", exc.reason
    wall = time.perf_counter() - t0
    metrics = rec.metrics if rec is not None else {}
    attrs = {
        "kind": "dyncdi-result",
        "task_id": task_id,
        "status": status,
        "reason": reason,
        "spec": spec.model_dump(mode="json"),
        "metrics": metrics,
        "started_at": started,
        "wall_s": wall,
        "checkpoint_every": checkpoint_every,
        "resumed_from": None if resume is None else {"stage": resume.stage, "step": resume.step},
        "device": device_description(),
        "provenance": provenance(),
    }
    written = store.write_result(task_id, result_dataset(spec, rec, attrs, m))
    store.discard_checkpoint(task_id)
    return {
        "task_id": task_id,
        "status": status if written else "duplicate",
        "reason": reason,
        "error": metrics.get("error"),
        "loss": metrics.get("loss"),
        "wall_s": wall,
    }
