"""Regularisers on the crystal parameters, composed into the objective with their weights."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..physics.kinematic import CrystalParams, shape_of


def total_variation(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Isotropic, smoothed total variation of a real 3D array (periodic), mean per voxel."""
    grads = [jnp.roll(x, -1, axis=a) - x for a in range(x.ndim)]
    return jnp.mean(jnp.sqrt(sum(g**2 for g in grads) + eps**2))


def shape_tv(params: CrystalParams) -> jax.Array:
    """Total variation of the shape function S."""
    return total_variation(shape_of(params))


# name -> function of the (confined) crystal; its weight is Hyper.<name>_weight
REGULARISERS = {"tv": shape_tv}
