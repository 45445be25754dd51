"""One reconstruction task: a frozen spec in, one result group in the store out.

Runs on a Dask worker (or in-process); reads its input from the store, writes its own result
group, and returns only a small summary.
"""

from __future__ import annotations

import time
from functools import lru_cache

import jax
import numpy as np

from .config import TaskSpec
from .data.measurement import Measurement, read_measurement
from .errors import TaskFailed
from .provenance import now_iso, provenance
from .recon.checkpoint import Checkpoint, Checkpointing
from .recon.pipeline import reconstruct
from .store.groups import complex_object, decode_checkpoint, encode_checkpoint, encode_result
from .store.integrity import DamagedGroup
from .store.leases import Leases, new_driver_id
from .store.space import StoreFull, is_full
from .store.zarr_store import Store


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
    return read_measurement(store.read_input(dataset), f"inputs.{dataset}")


def task_key(spec: TaskSpec) -> jax.Array:
    """The task's PRNG key: its seed, folded with its generation after the first."""
    key = jax.random.key(spec.seed)
    return jax.random.fold_in(key, spec.generation) if spec.generation else key


def _start_object(store: Store, start_id: str | None) -> np.ndarray | None:
    if start_id is None:
        return None
    return complex_object(store.read_start(start_id))


def _resume_point(store: Store, task_id: str) -> Checkpoint | None:
    """The task's latest checkpoint; a damaged one is quarantined and the task starts over."""
    try:
        stored = store.read_checkpoint(task_id)
    except DamagedGroup as exc:
        store.quarantine("checkpoints", task_id, exc.reason)
        return None
    return Checkpoint(*decode_checkpoint(stored)) if stored is not None else None


def run_task(
    store_path: str, spec_json: str, checkpoint_every: int = 0, driver: str | None = None
) -> dict:
    """Run one task unless its result exists or another process holds it; write its result
    group; return a small summary (status done, failed, skipped, held or duplicate).

    A failure with a reason in the data (TaskFailed) is written as a failed result. Any other
    exception propagates, so the scheduler retries the task and the store keeps no result; a
    full disk comes back as an "error" summary marked full (the driver stops at once).
    The task is claimed first (store/leases.py): a task another driver's worker is computing
    comes back as "held" with its holder, uncomputed; driver: the claiming driver's id (its
    own retries take a lease over at once).

    With checkpoint_every > 0 the task saves its state into the store every that many
    iterations and a rerun resumes from the latest checkpoint, so a killed task loses at most
    checkpoint_every iterations.
    """
    spec = TaskSpec.model_validate_json(spec_json)
    task_id = spec.task_id
    store = Store.open(store_path)
    if store.has_result(task_id):
        return {"task_id": task_id, "status": "skipped"}
    leases = Leases(store.path)
    try:
        holder = leases.claim(task_id, driver or new_driver_id())
        if holder is not None:
            return {"task_id": task_id, "status": "held", "holder": holder.describe()}
        with leases.holding(task_id):
            if store.has_result(task_id):  # finished by its last holder just before the claim
                return {"task_id": task_id, "status": "skipped"}
            return _compute(store, spec, checkpoint_every)
    except (StoreFull, OSError) as exc:  # no room: retrying it elsewhere cannot help
        if not (isinstance(exc, StoreFull) or is_full(exc)):
            raise
        return {"task_id": task_id, "status": "error", "reason": str(exc), "full": True}


def _compute(store: Store, spec: TaskSpec, checkpoint_every: int) -> dict:
    task_id = spec.task_id
    started = now_iso()
    t0 = time.perf_counter()
    rec = None
    reason = None
    resume = _resume_point(store, task_id)

    def save(c: Checkpoint) -> None:
        store.write_checkpoint(task_id, encode_checkpoint(c.stage, c.step, c.arrays))

    checkpointing = Checkpointing(every=checkpoint_every, resume=resume, save=save)
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
    if rec is None:
        group = encode_result(None, None, None, attrs)
    else:
        group = encode_result(rec.obj, rec.pr_error, rec.ad_loss, attrs)
    written = store.write_result(task_id, group)
    store.discard_checkpoint(task_id)
    return {
        "task_id": task_id,
        "status": status if written else "duplicate",
        "reason": reason,
        "error": metrics.get("error"),
        "loss": metrics.get("loss"),
        "wall_s": wall,
    }
