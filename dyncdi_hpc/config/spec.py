"""The sweep spec: datasets, base parameters, axes, store, cluster profile, merge rule,
generations and multi-reflection sets; validated once at the edge and immutable after."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, Tag, field_validator, model_validator

from ..errors import DyncdiError
from .base import Frozen, read_yaml, validate, without_extensions
from .geometry import GeometryConfig
from .multi import MultiReflectionConfig
from .recon import SWEEPABLE, ReconParams
from .simulate import SimulateConfig


class SimulatedDataset(Frozen):
    """A dataset simulated by the sweep itself before any task runs."""

    simulate: SimulateConfig = Field(
        description="the simulation (crystal, displacement, geometry, counts, noise)"
    )


class StoredDataset(Frozen):
    """A dataset already in the sweep's store (written by `dyncdi simulate` or `dyncdi load`)."""

    from_store: Literal[True] = Field(
        True, description="read inputs/NAME from the store (dyncdi simulate or load wrote it)"
    )


class ArrayDataset(Frozen):
    """A measured dataset read from files as `dyncdi load` reads them: a .npy/.npz array, a
    CXI/NeXus/HDF5 file, a folder of TIFF frames, a BLISS file or an Eiger master (`path`),
    with a spec or .fio scan file (`spec`, `scan`) through a beamline preset
    (`geometry.beamline`); corrected, checked, centred and cropped like `dyncdi load` does.
    `geometry` holds GeometryConfig fields that override the files' values (together they
    must give a complete geometry). Relative paths are taken from the sweep file's folder."""

    path: Path = Field(
        description="the scan: .npy/.npz, CXI/NeXus/HDF5, TIFF folder, BLISS file, Eiger master"
    )
    geometry: dict[str, Any] = Field(
        default_factory=dict, description="GeometryConfig fields; override the files' values"
    )
    key: str | None = Field(None, description="array (.npz) or dataset (HDF5) of the intensities")
    spec: Path | None = Field(None, description="scan file: spec (34-ID-C) or .fio (P10)")
    scan: int | None = Field(None, description="scan number (spec #S N, BLISS entry N.1)")
    dark: Path | None = Field(None, description="full-chip dark field (needs a beamline)")
    flat: Path | None = Field(None, description="full-chip flat field (needs a beamline)")
    threshold: float | None = Field(None, ge=0, description="corrected counts below it set to 0")
    bin: int = Field(1, ge=1, description="detector pixels binned bin x bin")
    shape: tuple[int, int, int] | None = Field(
        None, description="stored shape: crop or pad around the peak (FFT-friendly sizes)"
    )
    saturation: float | None = Field(None, gt=0, description="counts at which a pixel is lost")

    @field_validator("geometry")
    @classmethod
    def _geometry_keys(cls, value: dict) -> dict:
        unknown = sorted(set(value) - set(GeometryConfig.model_fields))
        if unknown:
            raise ValueError(
                f"unknown key {', '.join(unknown)} (check its spelling or remove it); "
                f"GeometryConfig fields: {', '.join(GeometryConfig.model_fields)}"
            )
        return value

    def resolved(self, base: Path) -> ArrayDataset:
        """The same dataset with its relative paths taken from the folder base."""
        update = {
            name: base / getattr(self, name)
            for name in ("path", "spec", "dark", "flat")
            if getattr(self, name) is not None
        }
        beamline = self.geometry.get("beamline")
        if isinstance(beamline, str) and beamline.endswith((".yaml", ".yml")):
            update["geometry"] = {**self.geometry, "beamline": str(base / beamline)}
        return self.model_copy(update=update)


def _dataset_kind(value: Any) -> str:
    """The kind of a dataset entry, told by its keys, so that an error inside one kind is not
    also reported as the other kinds' missing fields."""
    if isinstance(value, dict):
        if "simulate" in value:
            return "SimulatedDataset"
        if "from_store" in value:
            return "StoredDataset"
        return "ArrayDataset"
    return type(value).__name__


DatasetSpec = Annotated[
    Annotated[SimulatedDataset, Tag("SimulatedDataset")]
    | Annotated[StoredDataset, Tag("StoredDataset")]
    | Annotated[ArrayDataset, Tag("ArrayDataset")],
    Discriminator(
        _dataset_kind,
        custom_error_type="dataset_kind",
        custom_error_message="give simulate:, from_store: true or path:",
    ),
]


class MergeRule(Frozen):
    """Which results are merged: grouped by dataset and model, best by a metric."""

    metric: Literal["error", "loss", "free_deviance"] = Field(
        "error",
        description="ranking: the normalised Fourier error, the final AD loss, or the Poisson "
        "deviance on the held-out voxels (needs base.free_fraction > 0)",
    )
    select: Literal["best_fraction", "best_n", "all"] = Field(
        "best_fraction", description="which of a group's ranked results are merged"
    )
    fraction: float = Field(
        0.5, gt=0, le=1, description="share of each group merged (select: best_fraction)"
    )
    n: int = Field(4, ge=1, description="results of each group merged (select: best_n)")
    one_per_start: bool = Field(
        False,
        description="rank each random start by its best result only, so that the members (and "
        "the uncertainty over them) are independent solutions: a regularisation axis gives "
        "near-identical results from one start",
    )
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
    bootstrap_seed: int = Field(0, description="random seed of the bootstrap resamples")
    reject_diverged: bool = Field(
        True,
        description="leave out of the merge a result whose fit ran away: its last AD stage "
        "ended at a higher loss than it started from (finite but garbage)",
    )
    refine_iterations: int = Field(
        0,
        ge=0,
        description="error-reduction iterations that refine the merged mean onto the data "
        "inside the members' majority support widened by 2 voxels (0: the plain mean); the mean "
        "of members that differ in detail fits the data worse than any of them",
    )
    max_error_ratio: float | None = Field(
        1000.0,
        gt=1,
        description="leave out a result whose final Fourier error exceeds this times the best "
        "of its group (None: off). Good starts on noiseless data can end 100x apart",
    )


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


def _check_seeds(values: int | list[Any]) -> None:
    """A seed count of at least 1, or a list of non-negative integer seeds."""
    fix = "give a count of at least 1 (seed: 4) or a list of seeds >= 0 (seed: [0, 7])"
    if isinstance(values, bool) or (isinstance(values, int) and values < 1):
        raise DyncdiError("sweep.seed", f"{values!r} random starts would run nothing", fix)
    if isinstance(values, list):
        bad = [v for v in values if isinstance(v, bool) or not isinstance(v, int) or v < 0]
        if bad:
            raise DyncdiError("sweep.seed", f"{bad[0]!r} is not a seed", fix)


class SweepSpec(Frozen):
    """A whole sweep: datasets, base parameters, axes, store, cluster profile and merge rule."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="the sweep's name")
    store: Path = Field(
        description="Zarr store, relative to the spec file's folder (--store overrides it)"
    )
    cluster: str = Field("local", description="cluster profile: a name or a YAML path")
    datasets: dict[str, DatasetSpec] = Field(
        description="datasets by name: each simulate:, path: (measured) or from_store: true"
    )
    base: ReconParams = Field(
        ReconParams(), description="reconstruction parameters every task shares"
    )
    sweep: dict[str, int | list[Any]] = Field(
        default_factory=lambda: {"seed": 1},
        description="axes, tasks are their product: a base parameter, dataset or seed -> a "
        "list of values; seed also takes a count N (seeds 0..N-1)",
    )
    merge: MergeRule = Field(MergeRule(), description="which results are merged, and how")
    checkpoint_every: int = Field(
        1000, ge=0, description="iterations between saved task states (0: never); not in task ids"
    )
    generations: Generations | None = Field(
        None, description="genetic-algorithm generations after the sweep's own (None: off)"
    )
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
            if axis == "seed":
                _check_seeds(values)
        for name in (
            self.sweep.get("dataset", []) if isinstance(self.sweep.get("dataset"), list) else []
        ):
            if name not in self.datasets:
                raise ValueError(f"sweep.dataset: {name!r} is not among datasets")
        return self

    @model_validator(mode="after")
    def _free_metric(self) -> SweepSpec:
        fractions = self.sweep.get("free_fraction", [self.base.free_fraction])
        if self.merge.metric == "free_deviance" and not all(fractions):
            raise DyncdiError(
                "merge.metric",
                "free_deviance ranks by held-out voxels, and some tasks hold none out",
                "set base.free_fraction (e.g. 0.05) for every task, or rank by error",
            )
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


def load_sweep(path: Path, overrides: tuple[tuple[str, Any], ...] = ()) -> SweepSpec:
    """Read and validate a sweep YAML file; relative paths (the store, the datasets' files)
    are taken from the file's folder.

    overrides: (dotted key, value) pairs set in the file's mapping before it is validated
    (`dyncdi sweep --set base.lr_phase=1e-3`), so they are checked like the file itself.
    """
    path = Path(path)
    data = without_extensions(read_yaml(path, "sweep spec"))
    for key, value in overrides:
        _set_dotted(data, key, value)
    source = f"{path} (with --set {', '.join(k for k, _ in overrides)})" if overrides else str(path)
    spec = validate(SweepSpec, data, source)
    base = path.resolve().parent
    datasets = {
        name: (d.resolved(base) if isinstance(d, ArrayDataset) else d)
        for name, d in spec.datasets.items()
    }
    store = base / spec.store
    return spec.model_copy(update={"datasets": datasets, "store": store})


def _set_dotted(data: dict, key: str, value: Any) -> None:
    """data[a][b][c] = value for key 'a.b.c', making the mappings on the way as needed."""
    *parents, last = key.split(".")
    node = data
    for part in parents:
        child = node.get(part)
        if not isinstance(child, dict):
            child = node[part] = {}
        node = child
    node[last] = value
