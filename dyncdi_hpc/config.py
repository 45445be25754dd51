"""Validated, immutable configuration: simulation, reconstruction parameters, sweep spec.

Everything a user writes in YAML passes through these pydantic models once, at the edge;
unknown keys and wrong types are errors that name the field.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Annotated, Any, Literal, TypeVar

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import DyncdiError

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class GeometryConfig(Frozen):
    """Scan geometry in the units a beamline scientist writes down."""

    energy_kev: float = Field(gt=0)
    material: str = "Au"
    hkl: tuple[int, int, int] = (1, 1, 1)
    shape: tuple[int, int, int] = Field(description="(rocking angles, detector rows, columns)")
    rocking_step_deg: float = Field(gt=0)
    pixel_size_um: float = Field(gt=0)
    detector_distance_m: float = Field(gt=0)
    polarisation: Literal["sigma", "pi"] = "sigma"

    def build(self, field_prefix: str = "geometry"):
        """The physics Geometry object (validated: material, reflection, Bragg cutoff)."""
        from .physics.geometry import make_geometry

        return make_geometry(
            energy_kev=self.energy_kev,
            material=self.material,
            hkl=self.hkl,
            shape=self.shape,
            rocking_step_rad=math.radians(self.rocking_step_deg),
            pixel_size_m=self.pixel_size_um * 1e-6,
            detector_distance_m=self.detector_distance_m,
            polarisation=self.polarisation,
            field_prefix=field_prefix,
        )


class CrystalConfig(Frozen):
    """Shape of the simulated crystal, in the sample frame (nm)."""

    kind: Literal["faceted", "ellipsoid"] = "faceted"
    size_nm: float = Field(600.0, gt=0, description="distance between opposite {111} facets")
    truncation: float = Field(
        0.8, gt=0, le=1.5, description="{100} facet distance relative to the {111} one"
    )
    aspect: tuple[float, float, float] = (1.0, 1.0, 1.0)
    facet_jitter: float = Field(
        0.1, ge=0, lt=0.5, description="random relative change of each facet's distance"
    )
    seed: int = 0


class DisplacementConfig(Frozen):
    """Smooth displacement field, given by the phase h.u it produces (rad)."""

    kind: Literal["lobes", "none"] = "lobes"
    phase_range_rad: float = Field(3.0, ge=0, description="peak-to-peak phase inside the crystal")
    n_lobes: int = Field(3, ge=1)
    seed: int = 0


class SimulateConfig(Frozen):
    """A simulated dataset: crystal, displacement, geometry, counts and noise."""

    geometry: GeometryConfig
    crystal: CrystalConfig = CrystalConfig()
    displacement: DisplacementConfig = DisplacementConfig()
    peak_counts: float = Field(1e5, gt=0, description="counts in the brightest voxel")
    noise: bool = Field(True, description="Poisson noise; false gives noiseless intensities")
    noise_seed: int = 0
    model: Literal["kinematical", "dynamical"] = Field(
        "kinematical",
        description="forward model that makes the intensities: dynamical (two-beam Takagi-Taupin, "
        "the scan centred on the refracted peak) for crystals near or above the extinction length",
    )

    def fingerprint_payload(self) -> dict:
        """The config as hashed into the dataset fingerprint (the default model left out, so
        that stores written before the field existed keep their fingerprints)."""
        dump = self.model_dump(mode="json")
        if dump["model"] == "kinematical":
            del dump["model"]
        return dump


class SimulatedDataset(Frozen):
    """A dataset simulated by the sweep itself before any task runs."""

    simulate: SimulateConfig


class StoredDataset(Frozen):
    """A dataset already in the sweep's store (written by `dyncdi simulate` or `dyncdi load`)."""

    from_store: Literal[True] = True


class ArrayDataset(Frozen):
    """A dataset read from a .npy or .npz file with the geometry given beside it."""

    path: Path
    geometry: GeometryConfig
    key: str | None = Field(None, description="array name inside a .npz file")


DatasetSpec = SimulatedDataset | StoredDataset | ArrayDataset


class ShrinkWrap(Frozen):
    """Shrink-wrap support update: threshold of the blurred amplitude, sigma in voxels."""

    every: int = Field(20, ge=1)
    threshold: float = Field(0.15, gt=0, lt=1)
    sigma_start: float = Field(2.0, gt=0)
    sigma_end: float = Field(1.0, gt=0)
    start: int = Field(0, ge=0, description="first iteration at which the support may change")


class ADStage(Frozen):
    """One AD stage run before a reconstruction's final (model, ad_steps) one."""

    model: Literal["kinematical", "dynamical"]
    ad_steps: int = Field(ge=1)
    lr_phase: float | None = Field(None, gt=0, description="None: the reconstruction's lr_phase")
    lr_shape: float | None = Field(None, gt=0, description="None: the reconstruction's lr_shape")
    tv_weight: float | None = Field(None, ge=0, description="None: the reconstruction's")


class ReconParams(Frozen):
    """Parameters of one reconstruction; every field can be a sweep axis.

    Schedule: the recipe's ER/HIO/RAAR (kinematical), then each of `stages` (AD with its own
    model, from the previous result), then `ad_steps` of AD with `model`.
    """

    model: Literal["kinematical", "dynamical"] = "kinematical"
    recipe: str = Field(
        "2*(30*ER+170*HIO)+100*ER",
        description="projection phase retrieval before AD, e.g. '3*(20*ER+180*HIO)+20*ER'",
    )
    hio_beta: float = Field(0.9, gt=0, le=1)
    raar_beta: float = Field(0.9, gt=0, le=1, description="RAAR relaxation parameter")
    shrinkwrap: ShrinkWrap = ShrinkWrap()
    ad_steps: int = Field(300, ge=0)
    loss: Literal["poisson", "amplitude"] = "poisson"
    tv_weight: float = Field(0.0, ge=0)
    lr_phase: float = Field(1e-2, gt=0)
    lr_shape: float = Field(5e-2, gt=0)
    lr_scale: float = Field(1e-2, gt=0)
    log_every: int = Field(25, ge=1)
    coherence: tuple[Annotated[float, Field(gt=0)], ...] | None = Field(
        None,
        min_length=3,
        max_length=3,
        description="partial coherence: initial widths (detector pixels: rocking, row, column) "
        "of the Gaussian the modelled intensity is convolved with, fitted; None: coherent",
    )
    coherence_every: int = Field(
        20, ge=1, description="iterations between width fits in ER/HIO/RAAR"
    )
    coherence_start: int = Field(
        100, ge=0, description="first ER/HIO/RAAR iteration at which the widths are fitted"
    )
    lr_coherence: float = Field(1e-2, gt=0, description="AD learning rate of the log-widths")
    background: float | None = Field(
        None,
        gt=0,
        description="constant background (counts per voxel): its initial value, fitted by AD "
        "(kept > 0); None: no background term",
    )
    lr_background: float = Field(5e-2, gt=0, description="AD learning rate of the log-background")
    fit_rocking_offset: bool = Field(
        True,
        description="dynamical model: fit the absolute rocking offset (the kinematical model "
        "has none: an offset is a phase ramp there)",
    )
    rocking_offset_steps: float | None = Field(
        None,
        description="dynamical model: initial absolute rocking offset (rocking steps) added to "
        "the scan's angles; None: the refraction shift -Re chi0 / sin 2thetaB (a scan centred "
        "on the measured peak)",
    )
    lr_offset: float = Field(5e-2, gt=0, description="AD learning rate of the rocking offset")
    dynamical_box_margin: int = Field(
        2,
        ge=0,
        description="dynamical model: voxels around the loose support's bounding box that the "
        "march covers (the object is vacuum outside the box)",
    )

    stages: tuple[ADStage, ...] = Field(
        (),
        description="AD stages before the final one, e.g. [{model: kinematical, ad_steps: 300}] "
        "then model: dynamical: kinematical ER/HIO -> kinematical AD -> dynamical AD",
    )
    dynamical_start: Literal["flat", "flat_phase", "previous"] = Field(
        "flat",
        description="start of the first dynamical AD stage: flat: a uniform crystal filling "
        "the previous result's support (S > 0.5) with a flat phase; flat_phase: the previous "
        "shape with a flat phase; previous: the previous shape and phase. The kinematical phase "
        "of dynamical data is a wrong basin for thick crystals (README: reconstruction quality)",
    )
    saturation: float | None = Field(
        None,
        gt=0,
        description="counts at and above which a pixel is saturated and left out of every fit "
        "(besides the dataset's mask); None: no saturation mask",
    )

    def schedule(self) -> tuple[ADStage, ...]:
        """Every AD stage in order, the final (model, ad_steps) one included."""
        if self.ad_steps == 0:
            return self.stages
        return (*self.stages, ADStage(model=self.model, ad_steps=self.ad_steps))

    def uses_dynamical(self) -> bool:
        """True when any AD stage runs the dynamical model."""
        return any(stage.model == "dynamical" for stage in self.schedule())

    @field_validator("recipe")
    @classmethod
    def _recipe_parses(cls, value: str) -> str:
        from .recon.recipe import parse_recipe

        parse_recipe(value)
        return value


# Fields added after stores were written, hashed into task ids only when not at these values,
# so that a rerun of an older sweep finds its results under the same ids.
NEUTRAL_PARAMS: dict[str, Any] = {"stages": [], "saturation": None}

# Fields that change nothing unless an AD stage runs the dynamical model: left out of the ids
# of tasks that do not, so that kinematical ids stay put when such a field is added or set.
DYNAMICAL_ONLY_PARAMS = ("dynamical_start",)


class MergeRule(Frozen):
    """Which results are merged: grouped by dataset and model, best by a metric."""

    metric: Literal["error", "loss"] = "error"
    select: Literal["best_fraction", "best_n", "all"] = "best_fraction"
    fraction: float = Field(0.5, gt=0, le=1)
    n: int = Field(4, ge=1)
    reject_outliers: bool = Field(
        True, description="exclude selected members that disagree with the majority"
    )
    outlier_phase_rad: float = Field(
        0.5, gt=0, description="phase RMS against the majority above which a member is out"
    )
    outlier_dice: float = Field(
        0.8, gt=0, le=1, description="support Dice against the majority below which it is out"
    )
    bootstrap: int = Field(
        0, ge=0, description="bootstrap resamples for the merged fields' standard error (0: off)"
    )
    bootstrap_seed: int = 0


SWEEPABLE = (*ReconParams.model_fields, "seed", "dataset")


SELECTION_METRICS = ("error", "loss", "sharpness", "support")


class Generations(Frozen):
    """Genetic-algorithm stages: each generation starts from the best of the one before.

    Generation 0 is the sweep's tasks. Generation g+1 has as many members per (dataset,
    parameters) group: `keep` children bred from the best member (the alpha) with each of the
    best `keep` members of generation g, the rest fresh random starts.
    """

    count: int = Field(3, ge=1, description="number of generations, the sweep's own included")
    keep: int = Field(4, ge=1, description="best members of a generation that are bred")
    metric: str | list[str] = Field(
        "error", description=f"selection metric, or a list ranked jointly: {SELECTION_METRICS}"
    )

    @field_validator("metric")
    @classmethod
    def _known(cls, value: str | list[str]) -> str | list[str]:
        for name in [value] if isinstance(value, str) else value:
            if name not in SELECTION_METRICS:
                raise ValueError(f"unknown metric {name!r}; use {', '.join(SELECTION_METRICS)}")
        return value


# ----------------------------------------------------- multi-reflection sets (issue #5)
# A set names sweep datasets seen through several reflections of one crystal; after the merge,
# the sweep turns their merged objects into one displacement vector field (multi_stage.py).


class VectorDisplacementConfig(Frozen):
    """Smooth simulated u(r): per component n_lobes Gaussian lobes of height amplitude_nm."""

    amplitude_nm: float = Field(0.05, ge=0, description="height of each lobe (nm)")
    n_lobes: int = Field(3, ge=1)
    seed: int = 0


class MultiSimulateConfig(Frozen):
    """Simulate every reflection of the set from one crystal and one displacement vector field."""

    crystal: CrystalConfig = CrystalConfig()
    displacement: VectorDisplacementConfig = VectorDisplacementConfig()
    model: Literal["kinematical", "dynamical"] = "kinematical"
    peak_counts: float = Field(1e5, gt=0, description="counts in the brightest voxel of each scan")
    noise: bool = True
    noise_seed: int = 0


class ReflectionEntry(Frozen):
    """One reflection: the sweep dataset holding its scan and the crystal's azimuth about h.

    geometry: the scan to simulate (with MultiReflectionConfig.simulate; the dataset is then
    `from_store: true` in the sweep); otherwise the dataset's own geometry is used.
    """

    dataset: str
    azimuth_deg: float = Field(
        0.0,
        description="turn of the crystal about h_j (right-handed, degrees) from the convention "
        "'the projection of the sample [001] (or [100] for h along [001]) normal to h_j lies in "
        "the scattering plane, along the lab x'",
    )
    geometry: GeometryConfig | None = None


class SampleGridConfig(Frozen):
    """The common orthogonal sample-frame grid (the crystal's cubic axes), isotropic voxels."""

    shape: tuple[int, int, int]
    voxel_nm: float = Field(gt=0)

    @field_validator("shape")
    @classmethod
    def _sizes(cls, value: tuple[int, int, int]) -> tuple[int, int, int]:
        if any(n < 4 for n in value):
            raise ValueError("give three sizes, each >= 4")
        return value


class JointADConfig(Frozen):
    """Joint AD of one shape and one u through every reflection's forward model."""

    model: Literal["kinematical", "dynamical"] = "kinematical"
    loss: Literal["poisson", "amplitude"] = "poisson"
    steps: int = Field(600, ge=0)
    log_every: int = Field(50, ge=1)
    smooth_weight: float = Field(
        30.0, ge=0, description="weight of the squared Laplacian of |h| u (rad^2 per voxel)"
    )
    lr_shape: float = Field(5e-2, gt=0)
    lr_displacement: float = Field(4e-4, gt=0, description="Adam learning rate of u (nm)")
    fit_rocking_offset: bool = Field(
        False,
        description="dynamical model: fit each reflection's absolute rocking offset (it trades "
        "against the homogeneous strain along that h); false: held at the refraction shift",
    )


class MultiReflectionConfig(Frozen):
    """A multi-reflection set: its reflections, the sample grid, the joint AD, the tensor."""

    reflections: list[ReflectionEntry] = Field(min_length=1)
    grid: SampleGridConfig
    joint: JointADConfig = JointADConfig()
    tensor: bool = Field(True, description="require >= 3 non-coplanar reflections (a tensor)")
    simulate: MultiSimulateConfig | None = None
    seed: int = Field(0, ge=0, description="seed of the reconstructions this stage runs itself")

    @model_validator(mode="after")
    def _consistent(self) -> MultiReflectionConfig:
        names = [r.dataset for r in self.reflections]
        if len(set(names)) != len(names):
            raise ValueError("each reflection must name its own dataset")
        if self.simulate is not None:
            missing = [r.dataset for r in self.reflections if r.geometry is None]
            if missing:
                raise ValueError(f"simulate needs a geometry for every reflection: {missing}")
        return self


class SweepSpec(Frozen):
    """A whole sweep: datasets, base parameters, axes, store, cluster profile and merge rule."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$")
    store: Path
    cluster: str = "local"
    datasets: dict[str, Annotated[DatasetSpec, Field(union_mode="left_to_right")]]
    base: ReconParams = ReconParams()
    sweep: dict[str, int | list[Any]] = Field(default_factory=lambda: {"seed": 1})
    merge: MergeRule = MergeRule()
    checkpoint_every: int = Field(
        1000, ge=0, description="iterations between saved task states (0: never); not in task ids"
    )
    generations: Generations | None = None
    multi: dict[str, MultiReflectionConfig] = Field(
        default_factory=dict,
        description="multi-reflection sets by name, run after the merge; not in task ids",
    )

    @field_validator("datasets")
    @classmethod
    def _names(cls, value: dict) -> dict:
        if not value:
            raise ValueError("name at least one dataset")
        for name in value:
            if not name.replace("-", "").replace("_", "").isalnum():
                raise ValueError(f"dataset name {name!r} may hold only letters, digits, - and _")
        return value

    @model_validator(mode="after")
    def _axes(self) -> SweepSpec:
        for axis, values in self.sweep.items():
            if axis not in SWEEPABLE:
                raise ValueError(
                    f"sweep.{axis}: not a parameter; sweepable: {', '.join(SWEEPABLE)}"
                )
            if isinstance(values, int) and axis != "seed":
                raise ValueError(f"sweep.{axis}: give a list of values (only seed takes a count)")
            if isinstance(values, list) and not values:
                raise ValueError(f"sweep.{axis}: empty list")
        for name in (
            self.sweep.get("dataset", []) if isinstance(self.sweep.get("dataset"), list) else []
        ):
            if name not in self.datasets:
                raise ValueError(f"sweep.dataset: {name!r} is not among datasets")
        return self

    @model_validator(mode="after")
    def _multi_datasets(self) -> SweepSpec:
        # a DyncdiError (not a ValueError) passes through pydantic unchanged: its field is the
        # reflection's own, e.g. multi.au4.reflections[0].dataset
        simulated_by: dict[str, str] = {}
        for name, cfg in self.multi.items():
            if not name.replace("-", "").replace("_", "").isalnum():
                raise DyncdiError(
                    f"multi.{name}", "a set name may hold only letters, digits, - and _"
                )
            for j, entry in enumerate(cfg.reflections):
                field = f"multi.{name}.reflections[{j}].dataset"
                dataset = self.datasets.get(entry.dataset)
                if dataset is None:
                    raise DyncdiError(field, f"no dataset {entry.dataset!r} in the sweep", "add it")
                if cfg.simulate is None:
                    continue
                if not isinstance(dataset, StoredDataset):
                    raise DyncdiError(
                        field,
                        f"dataset {entry.dataset!r} is simulated by multi.{name}",
                        "declare it `from_store: true` in datasets",
                    )
                other = simulated_by.setdefault(entry.dataset, name)
                if other != name:
                    raise DyncdiError(
                        field,
                        f"dataset {entry.dataset!r} is simulated by multi.{other} too",
                        "let one set simulate it, or name another dataset",
                    )
        return self


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


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: dotted field path, message."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        loc = ".".join(p for p in loc.split(".") if p not in _UNION_TAGS)
        where = ".".join(p for p in (prefix, loc) if p) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling or remove it)"
        lines.append(f"{where}: {msg}")
    return "; ".join(dict.fromkeys(lines))


_UNION_TAGS = {"SimulatedDataset", "StoredDataset", "ArrayDataset"}


def read_yaml(path: Path, what: str) -> dict:
    """Safe-load a YAML mapping, or raise a DyncdiError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DyncdiError(what, f"no such file {str(path)!r}", "check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DyncdiError(
            str(path), f"malformed YAML{where}: {problem}", "fix the YAML syntax"
        ) from None
    if not isinstance(data, dict):
        raise DyncdiError(str(path), "the file is not a YAML mapping", "write key: value pairs")
    return data


def validate(model: type[M], data: dict, source: str) -> M:
    """Validate data against a model; errors become one DyncdiError line naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise DyncdiError(source, format_validation_error(err)) from None


def without_extensions(data: dict) -> dict:
    """The mapping without its top-level `x-...` keys: holders of YAML anchors that the rest
    of the file reuses (`<<: *scan`), as in docker-compose, and never configuration."""
    return {k: v for k, v in data.items() if not str(k).startswith("x-")}


def load_sweep(path: Path) -> SweepSpec:
    """Read and validate a sweep YAML file; relative paths are taken from the file's folder."""
    path = Path(path)
    data = without_extensions(read_yaml(path, "sweep spec"))
    spec = validate(SweepSpec, data, str(path))
    base = path.resolve().parent
    datasets = {
        name: (d.model_copy(update={"path": base / d.path}) if isinstance(d, ArrayDataset) else d)
        for name, d in spec.datasets.items()
    }
    store = spec.store if spec.store.is_absolute() else Path.cwd() / spec.store
    return spec.model_copy(update={"datasets": datasets, "store": store})
