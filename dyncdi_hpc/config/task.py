"""One task of a sweep: a frozen spec whose hash is the task's id."""

from __future__ import annotations

from ..identity import task_id
from .base import Frozen
from .recon import ReconParams


class TaskSpec(Frozen):
    """Everything that defines one reconstruction; its hash is the task id."""

    dataset: str
    fingerprint: str
    params: ReconParams
    seed: int
    generation: int = 0
    start: str | None = None  # id of a bred start object under STORE/starts/

    @property
    def task_id(self) -> str:
        """Stable 16-hex-digit id: the same spec gives the same id on any host, any run."""
        return task_id(self.model_dump(mode="json"), dynamical=self.params.uses_dynamical())
