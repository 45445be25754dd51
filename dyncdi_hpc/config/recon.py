"""Parameters of one reconstruction: the schedule (recipe, AD stages), the loss, learning
rates and the nuisances a fit may include. Every field can be a sweep axis."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator

from .base import Frozen
from .recipe import parse_recipe


class ShrinkWrap(Frozen):
    """Shrink-wrap support update: threshold of the blurred amplitude, sigma in voxels."""

    every: int = Field(20, ge=1, description="iterations between support updates")
    threshold: float = Field(
        0.15, gt=0, lt=1, description="support: blurred amplitude above this fraction of its max"
    )
    sigma_start: float = Field(
        2.0, gt=0, description="Gaussian blur at the first iteration (voxels)"
    )
    sigma_end: float = Field(
        1.0, gt=0, description="blur at the last iteration (voxels), linear in between"
    )
    start: int = Field(0, ge=0, description="first iteration at which the support may change")


class ADStage(Frozen):
    """One AD stage run before a reconstruction's final (model, ad_steps) one."""

    model: Literal["kinematical", "dynamical"] = Field(description="forward model of the stage")
    ad_steps: int = Field(ge=1, description="Adam steps of the stage")
    lr_phase: float | None = Field(None, gt=0, description="None: the reconstruction's lr_phase")
    lr_shape: float | None = Field(None, gt=0, description="None: the reconstruction's lr_shape")
    tv_weight: float | None = Field(None, ge=0, description="None: the reconstruction's")


class ReconParams(Frozen):
    """Parameters of one reconstruction; every field can be a sweep axis.

    Schedule: the recipe's ER/HIO/RAAR (kinematical), then each of `stages` (AD with its own
    model, from the previous result), then `ad_steps` of AD with `model`.
    """

    model: Literal["kinematical", "dynamical"] = Field(
        "kinematical", description="forward model of the final AD stage"
    )
    recipe: str = Field(
        "2*(30*ER+170*HIO)+100*ER",
        description="projection phase retrieval before AD, e.g. '3*(20*ER+180*HIO)+20*ER'",
    )
    hio_beta: float = Field(0.9, gt=0, le=1, description="HIO feedback parameter")
    raar_beta: float = Field(0.9, gt=0, le=1, description="RAAR relaxation parameter")
    shrinkwrap: ShrinkWrap = Field(ShrinkWrap(), description="support updates during ER/HIO/RAAR")
    ad_steps: int = Field(300, ge=0, description="Adam steps of the final AD stage (0: none)")
    loss: Literal["poisson", "amplitude"] = Field(
        "poisson",
        description="AD data loss: Poisson deviance of the counts, or squared amplitude misfit",
    )
    tv_weight: float = Field(0.0, ge=0, description="weight of the shape's total variation")
    lr_phase: float = Field(1e-2, gt=0, description="AD learning rate of the phase (rad)")
    lr_shape: float = Field(5e-2, gt=0, description="AD learning rate of the shape logits")
    lr_scale: float = Field(1e-2, gt=0, description="AD learning rate of the log global scale")
    log_every: int = Field(
        25, ge=1, description="AD steps per compiled chunk: losses reach the host this often"
    )
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
    optimiser: Literal["adam", "lbfgs"] = Field(
        "adam",
        description="the AD optimiser: Adam with the lr_* rates, or L-BFGS (optax, zoom line "
        "search: several objective evaluations a step, no learning rates)",
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        "constant",
        description="the AD learning rates over each stage: constant, or a cosine decay to 10% "
        "of them at the stage's last step (a sweep axis compares them)",
    )
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
    devices: int = Field(
        1,
        ge=1,
        description="devices one reconstruction spans: the dynamical model's rocking angles "
        "sharded over them and the gradients summed (1: one device; a GPU worker sees its "
        "node's GPUs when its job asks for them); not in task ids, it changes no result",
    )
    dynamical_start: Literal["flat", "flat_phase", "previous"] = Field(
        "flat",
        description="start of the first dynamical AD stage: flat: a uniform crystal filling "
        "the previous result's support (S > 0.5) with a flat phase; flat_phase: the previous "
        "shape with a flat phase; previous: the previous shape and phase. The kinematical phase "
        "of dynamical data is a wrong basin for thick crystals (README: reconstruction quality)",
    )
    coarse_to_fine: bool = Field(
        False,
        description="run the whole schedule first on the central half of the q range (voxels "
        "twice as large, the same field of view), then only the final AD stage on the full "
        "grid, started from that object upsampled (its twin, rocking offset and coherence "
        "widths kept). Held-out voxels stay out of both",
    )
    dynamical_start_threshold: float = Field(
        0.5,
        gt=0,
        lt=1,
        description="dynamical_start flat: the previous shape S (0..1, 1 at the 97th percentile "
        "of the projection result's amplitude) above which the uniform crystal is filled. "
        "Extinction leaves most of a thick crystal dim in a kinematical fit: 0.15 recovers "
        "the shape of a 1.3 um Au crystal at 50 nm voxels where 0.5 keeps its bright sixth",
    )
    saturation: float | None = Field(
        None,
        gt=0,
        description="counts at and above which a pixel is saturated and left out of every fit "
        "(besides the dataset's mask); None: no saturation mask",
    )
    free_fraction: float = Field(
        0.0,
        ge=0.0,
        le=0.2,
        description="share of the measured voxels held out of every fit in 3x3x3 clusters "
        "(free-pixel cross-validation, as PyNX's free log-likelihood; the same voxels for "
        "every task on a dataset): their Poisson deviance is the result's metric "
        "free_deviance, for stopping and for choosing between models; 0: none held out",
    )

    def schedule(self) -> tuple[ADStage, ...]:
        """Every AD stage in order, the final (model, ad_steps) one included."""
        if self.ad_steps == 0:
            return self.stages
        return (*self.stages, ADStage(model=self.model, ad_steps=self.ad_steps))

    def fine_stage(self) -> ReconParams:
        """The parameters of coarse_to_fine's full-grid run: only the final AD stage, from the
        coarse object as it is."""
        return self.model_copy(update={"stages": (), "dynamical_start": "previous"})

    def uses_dynamical(self) -> bool:
        """True when any AD stage runs the dynamical model."""
        return any(stage.model == "dynamical" for stage in self.schedule())

    @field_validator("recipe")
    @classmethod
    def _recipe_parses(cls, value: str) -> str:
        parse_recipe(value)
        return value

    @model_validator(mode="after")
    def _fine_stage_exists(self) -> ReconParams:
        if self.coarse_to_fine and self.ad_steps == 0:
            raise ValueError(
                "coarse_to_fine needs ad_steps > 0: the final AD stage is what runs on the "
                "full grid (set ad_steps, or coarse_to_fine: false)"
            )
        return self


SWEEPABLE = (*ReconParams.model_fields, "seed", "dataset")
