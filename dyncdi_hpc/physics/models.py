"""The forward models a reconstruction can name, behind one signature.

A model is a frozen, hashable object (static under jit) holding its static options, called as
`model(crystal, geometry, nuisance) -> intensity` (FFT order, kinematical scale, shape
geometry.shape). `nuisance` is a pytree of the traced parameters the physics needs besides
the crystal (the absolute rocking offset of a dynamical curve); a model ignores what it has
no use for. Global scale, background and coherence blur act on any model's output and live
with the optimiser.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar, NamedTuple, Protocol

import jax

from ..errors import ParameterError
from . import dynamical, kinematical
from .geometry import Geometry
from .objects import CrystalParams


class Nuisance(NamedTuple):
    """Traced non-crystal parameters of a forward model: the absolute rocking offset (rad)
    added to every rocking angle of the geometry (the dynamical model's refraction shift)."""

    rocking_offset_rad: jax.Array | float = 0.0


class ForwardModel(Protocol):
    """model(crystal, geometry, nuisance) -> intensity (FFT order), shape geometry.shape."""

    name: ClassVar[str]

    def __call__(
        self, crystal: CrystalParams, geometry: Geometry, nuisance: Nuisance = ...
    ) -> jax.Array: ...


@dataclass(frozen=True)
class Kinematical:
    """|DFT(S exp(i phase))|^2: the Born approximation (physics/kinematical.py)."""

    name: ClassVar[str] = "kinematical"

    def __call__(
        self, crystal: CrystalParams, geometry: Geometry, nuisance: Nuisance = Nuisance()
    ) -> jax.Array:
        """Kinematical intensity of the crystal; the nuisance is unused (an offset is a ramp)."""
        del nuisance
        return kinematical.forward(crystal, geometry)


@dataclass(frozen=True)
class Dynamical:
    """Two-beam Takagi-Taupin (physics/dynamical.py) with its static march options."""

    options: dynamical.DynamicalOptions = dynamical.DEFAULT_OPTIONS
    devices: int = 1  # rocking angles sharded over the first `devices` devices (1: not)
    name: ClassVar[str] = "dynamical"

    def __call__(
        self, crystal: CrystalParams, geometry: Geometry, nuisance: Nuisance = Nuisance()
    ) -> jax.Array:
        """Dynamical intensity at the geometry's rocking angles shifted by the nuisance offset."""
        offset = nuisance.rocking_offset_rad
        if self.devices == 1:
            return dynamical.forward(crystal, geometry, self.options, offset)
        available = jax.devices()
        if len(available) < self.devices:
            raise ParameterError(
                "devices",
                f"{self.devices} devices asked for, {len(available)} available",
                "ask for at most that many (JAX sees one CPU device unless XLA_FLAGS has "
                "--xla_force_host_platform_device_count)",
            )
        mesh = dynamical.angle_mesh(available[: self.devices])
        return dynamical.forward_sharded(crystal, geometry, self.options, mesh, offset)


FORWARD_MODELS: dict[str, type] = {m.name: m for m in (Kinematical, Dynamical)}


def forward_model(name: str, **options) -> ForwardModel:
    """The registered model `name` with its static options (e.g. options=DynamicalOptions)."""
    try:
        cls = FORWARD_MODELS[name]
    except KeyError:
        raise ParameterError(
            "model", f"unknown model {name!r}", f"use {', '.join(FORWARD_MODELS)}"
        ) from None
    return cls(**options)
