"""Validated, immutable configuration: everything a user writes in YAML passes through these
pydantic models once, at the edge; unknown keys and wrong types are errors naming the field.

Modules: base (the frozen base model, YAML reading), geometry, simulate, recipe (ER/HIO/RAAR
recipes), recon (one reconstruction's parameters), multi (multi-reflection sets), spec (the
sweep spec), task (one task and its id).
"""

from .base import Frozen as Frozen
from .base import format_validation_error as format_validation_error
from .base import read_yaml as read_yaml
from .base import validate as validate
from .base import without_extensions as without_extensions
from .geometry import GeometryConfig as GeometryConfig
from .multi import JointADConfig as JointADConfig
from .multi import MultiReflectionConfig as MultiReflectionConfig
from .multi import MultiSimulateConfig as MultiSimulateConfig
from .multi import ReflectionEntry as ReflectionEntry
from .multi import SampleGridConfig as SampleGridConfig
from .multi import VectorDisplacementConfig as VectorDisplacementConfig
from .recipe import ALGORITHMS as ALGORITHMS
from .recipe import parse_recipe as parse_recipe
from .recon import SWEEPABLE as SWEEPABLE
from .recon import ADStage as ADStage
from .recon import ReconParams as ReconParams
from .recon import ShrinkWrap as ShrinkWrap
from .simulate import CrystalConfig as CrystalConfig
from .simulate import DisplacementConfig as DisplacementConfig
from .simulate import SimulateConfig as SimulateConfig
from .spec import SELECTION_METRICS as SELECTION_METRICS
from .spec import ArrayDataset as ArrayDataset
from .spec import DatasetSpec as DatasetSpec
from .spec import Generations as Generations
from .spec import MergeRule as MergeRule
from .spec import SimulatedDataset as SimulatedDataset
from .spec import StoredDataset as StoredDataset
from .spec import SweepSpec as SweepSpec
from .spec import load_sweep as load_sweep
from .task import TaskSpec as TaskSpec

__all__ = [
    "ALGORITHMS",
    "SELECTION_METRICS",
    "SWEEPABLE",
    "ADStage",
    "ArrayDataset",
    "CrystalConfig",
    "DatasetSpec",
    "DisplacementConfig",
    "Frozen",
    "Generations",
    "GeometryConfig",
    "JointADConfig",
    "MergeRule",
    "MultiReflectionConfig",
    "MultiSimulateConfig",
    "ReconParams",
    "ReflectionEntry",
    "SampleGridConfig",
    "ShrinkWrap",
    "SimulateConfig",
    "SimulatedDataset",
    "StoredDataset",
    "SweepSpec",
    "TaskSpec",
    "VectorDisplacementConfig",
    "format_validation_error",
    "load_sweep",
    "parse_recipe",
    "read_yaml",
    "validate",
    "without_extensions",
]
