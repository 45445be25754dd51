"""Physics: pure JAX and numpy functions of arrays and frozen parameter objects, no I/O.

Modules, bottom up: lattice (crystal structures), materials (susceptibilities from xraydb),
geometry (the scan and its conjugate grid), frames (the orthogonal sample grid), objects (the
crystal's parameters), kinematical (the Born model), tt_march (the reference 2D Takagi-Taupin
march), sheared_march (the 3D model's batched march and its adjoint), dynamical (the 3D
dynamical model), reflectivity (finite crystals and closed forms), models (the forward-model
registry), resample (several reflections of one crystal), calculator (CLI reports).
"""

from typing import TYPE_CHECKING

from .._lazy import lazy_exports

_EXPORTS = {
    "BraggCase": ".materials",
    "Susceptibility": ".materials",
    "bragg_case": ".materials",
    "susceptibility": ".materials",
    "Geometry": ".geometry",
    "make_geometry": ".geometry",
    "SampleGrid": ".frames",
    "sample_grid": ".frames",
    "CrystalParams": ".objects",
    "object_of": ".objects",
    "shape_of": ".objects",
    "support_of": ".objects",
    "DynamicalOptions": ".dynamical",
    "forward_sharded": ".dynamical",
    "refraction_shift_rad": ".dynamical",
    "support_box": ".dynamical",
    "Dynamical": ".models",
    "FORWARD_MODELS": ".models",
    "Kinematical": ".models",
    "Nuisance": ".models",
    "forward_model": ".models",
    "darwin_prins_reflectivity": ".reflectivity",
    "finite_crystal_reflectivity": ".reflectivity",
    "slab_reflectivity": ".reflectivity",
    "Reflection": ".resample",
    "rocking_curve_report": ".calculator",
    "susceptibility_report": ".calculator",
}

__all__ = sorted(_EXPORTS)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .calculator import rocking_curve_report as rocking_curve_report
    from .calculator import susceptibility_report as susceptibility_report
    from .dynamical import DynamicalOptions as DynamicalOptions
    from .dynamical import forward_sharded as forward_sharded
    from .dynamical import refraction_shift_rad as refraction_shift_rad
    from .dynamical import support_box as support_box
    from .frames import SampleGrid as SampleGrid
    from .frames import sample_grid as sample_grid
    from .geometry import Geometry as Geometry
    from .geometry import make_geometry as make_geometry
    from .materials import BraggCase as BraggCase
    from .materials import Susceptibility as Susceptibility
    from .materials import bragg_case as bragg_case
    from .materials import susceptibility as susceptibility
    from .models import FORWARD_MODELS as FORWARD_MODELS
    from .models import Dynamical as Dynamical
    from .models import Kinematical as Kinematical
    from .models import Nuisance as Nuisance
    from .models import forward_model as forward_model
    from .objects import CrystalParams as CrystalParams
    from .objects import object_of as object_of
    from .objects import shape_of as shape_of
    from .objects import support_of as support_of
    from .reflectivity import darwin_prins_reflectivity as darwin_prins_reflectivity
    from .reflectivity import finite_crystal_reflectivity as finite_crystal_reflectivity
    from .reflectivity import slab_reflectivity as slab_reflectivity
    from .resample import Reflection as Reflection
