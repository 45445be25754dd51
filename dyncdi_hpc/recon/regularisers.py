"""Regularisers, composed into an objective as (weight, function) pairs.

A fit keeps its terms static (a tuple of functions, part of its hashable configuration) and
their weights traced (a tuple of arrays in its Hyper), so a sweep over weights compiles once;
a term whose weight is 0 is left out of the tuple, not computed.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp

from ..physics.objects import CrystalParams, shape_of

Regulariser = Callable[..., jax.Array]


def total_variation(x: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Isotropic, smoothed total variation of a real 3D array (periodic), mean per voxel."""
    grads = [jnp.roll(x, -1, axis=a) - x for a in range(x.ndim)]
    return jnp.mean(jnp.sqrt(sum(g**2 for g in grads) + eps**2))


def shape_tv(params: CrystalParams) -> jax.Array:
    """Total variation of the shape function S."""
    return total_variation(shape_of(params))


# the single-crystal fit's terms, by the ReconParams field that holds their weight
REGULARISERS: dict[str, Regulariser] = {"tv_weight": shape_tv}


def regularised(
    loss: jax.Array, terms: Sequence[Regulariser], weights: Sequence[jax.Array], *args
) -> jax.Array:
    """loss + sum_k weights[k] * terms[k](*args)."""
    total = loss
    for weight, term in zip(weights, terms, strict=True):
        total = total + weight * term(*args)
    return total
