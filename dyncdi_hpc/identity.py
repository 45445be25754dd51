"""Stable identities: content hashes that name datasets, tasks, starts and multi sets.

A hash is the SHA-256 of the canonical JSON of its payload (sorted keys, no spaces), so the
same payload gives the same id on any host, in any run, with any Python. Ids of stored groups
must never change with the code: fields added to the reconstruction parameters after stores
were written enter a task id only when they leave their neutral value.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

# Parameters added after stores were written, hashed into task ids only when not at these
# values, so that a rerun of an older sweep finds its results under the same ids.
NEUTRAL_PARAMS: dict[str, Any] = {
    "stages": [],
    "saturation": None,
    "free_fraction": 0.0,
    "lr_schedule": "constant",
    "optimiser": "adam",
    "dynamical_start_threshold": 0.5,
    "coarse_to_fine": False,
}

# Parameters that change nothing unless an AD stage runs the dynamical model: left out of the
# ids of tasks that do not, so that kinematical ids stay put when such a field is added or set.
DYNAMICAL_ONLY_PARAMS = ("dynamical_start", "dynamical_start_threshold")

# How a task runs, not what it computes (the same result to rounding): in no task id.
EXECUTION_PARAMS = ("devices",)


def stable_hash(payload: Any, length: int = 16) -> str:
    """Hex digest of the canonical JSON of payload (sorted keys): stable across runs and hosts."""
    text = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=_json_default)
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"not JSON-serialisable: {type(value).__name__}")


def task_id(spec: dict, *, dynamical: bool) -> str:
    """The id of a task from its JSON dump (dataset, fingerprint, params, seed, ...);
    dynamical: whether any of its AD stages runs the dynamical model."""
    params = dict(spec["params"])
    for name, neutral in NEUTRAL_PARAMS.items():
        if params.get(name) == neutral:
            del params[name]
    if not dynamical:
        for name in DYNAMICAL_ONLY_PARAMS:
            params.pop(name, None)
    for name in EXECUTION_PARAMS:
        params.pop(name, None)
    return stable_hash({**spec, "params": params})


def array_digest(array: np.ndarray) -> str:
    """SHA-256 hex digest of an array's bytes in C order (its values, not its dtype or shape)."""
    return hashlib.sha256(np.ascontiguousarray(array).tobytes()).hexdigest()
