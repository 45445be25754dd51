"""Resumable state of a reconstruction: what is saved every so many iterations, and how.

A checkpoint holds host copies of arrays only; the store writes it (store/groups.py) and a
rerun hands it back, so a killed task loses at most `every` iterations and its resumed run
gives the same result as an unbroken one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np


@dataclass(frozen=True)
class Checkpoint:
    """Resumable state of a reconstruction after `step` iterations of `stage`: "pr", or "ad"
    for the first AD stage and "ad<k>" for stage k of ReconParams.schedule().

    arrays holds host copies: for "pr" psi, support, pr_error (and coherence_widths with
    partial coherence); for "ad" also the AD parameter and optimiser-state leaves (ad_leaf_<i>)
    and ad_loss.
    """

    stage: str
    step: int
    arrays: dict[str, np.ndarray]


@dataclass(frozen=True)
class Checkpointing:
    """Where a reconstruction resumes from, and how often (iterations) it saves its state."""

    every: int = 0
    resume: Checkpoint | None = None
    save: Callable[[Checkpoint], None] | None = None

    def due(self, before: int, after: int) -> bool:
        """True when a multiple of `every` lies in (before, after]."""
        if self.every <= 0 or self.save is None:
            return False
        return after // self.every > before // self.every


def stage_name(k: int) -> str:
    """The checkpoint name of AD stage k."""
    # "ad" for the first stage keeps checkpoints of single-stage runs readable
    return "ad" if k == 0 else f"ad{k}"


def stage_index(name: str) -> int:
    """Inverse of stage_name."""
    return 0 if name == "ad" else int(name.removeprefix("ad"))


def flatten(tree) -> dict[str, np.ndarray]:
    """The leaves of a pytree as host arrays named ad_leaf_<i>."""
    return {f"ad_leaf_{i}": np.asarray(x) for i, x in enumerate(jax.tree_util.tree_leaves(tree))}


def unflatten(template, arrays: dict[str, np.ndarray]):
    """A pytree shaped like template from flatten's arrays, in template's dtypes."""
    leaves, treedef = jax.tree_util.tree_flatten(template)
    loaded = [jnp.asarray(arrays[f"ad_leaf_{i}"], dtype=x.dtype) for i, x in enumerate(leaves)]
    return jax.tree_util.tree_unflatten(treedef, loaded)
