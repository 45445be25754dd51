"""The forward models a reconstruction can name in its spec: forward(crystal, geometry) -> I."""

from __future__ import annotations

from collections.abc import Callable

import jax

from .dynamical3d import forward as dynamical_forward
from .geometry import Geometry
from .kinematic import CrystalParams
from .kinematic import forward as kinematical_forward

ForwardModel = Callable[[CrystalParams, Geometry], jax.Array]

FORWARD_MODELS: dict[str, ForwardModel] = {
    "kinematical": kinematical_forward,
    "dynamical": dynamical_forward,
}
