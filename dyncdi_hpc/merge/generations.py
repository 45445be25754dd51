"""Generations of a sweep (the genetic algorithm of SweepSpec.generations): the tasks of each
generation from the stored results of the one before, with the bred start objects stored."""

from __future__ import annotations

from collections import defaultdict

from ..config import Generations, TaskSpec
from ..identity import stable_hash
from ..store.groups import complex_object, encode_start
from ..store.zarr_store import Store
from .breed import breed, member_scores, rank

BREEDING_RULE = "sqrt(|alpha| |member|) exp(i mean phase), member aligned onto alpha"


def next_generation(
    store: Store, previous: list[TaskSpec], generations: Generations, generation: int
) -> list[TaskSpec]:
    """Tasks of `generation` from the results of the one before, with their bred starts stored.

    Within each group of equal (dataset, parameters), the members are ranked by the metric;
    the best `keep` are bred with the best (alpha) and the rest of the group restarts from
    random. Deterministic: a rerun derives the same tasks and start ids.
    """
    metrics = [generations.metric] if isinstance(generations.metric, str) else generations.metric
    groups: dict[tuple[str, str], list[TaskSpec]] = defaultdict(list)
    for task in previous:
        groups[(task.dataset, task.params.model_dump_json())].append(task)
    done = set(store.result_ids())
    tasks = []
    for members in groups.values():
        members = sorted(members, key=lambda t: t.seed)
        objects, scores = {}, {}
        for t in members:
            if t.task_id in done and store.result_attrs(t.task_id)["status"] == "done":
                ds = store.read_result(t.task_id)
                objects[t.task_id] = complex_object(ds)
                scores[t.task_id] = member_scores(
                    objects[t.task_id], store.result_attrs(t.task_id)["metrics"]
                )
        ranked = rank(scores, metrics) if scores else []
        best = ranked[: generations.keep]
        for i, member in enumerate(members):
            start = None
            if i < len(best):
                parents = {"alpha": ranked[0], "member": best[i]}
                start = stable_hash({**parents, "rule": BREEDING_RULE})
                if start not in store.start_ids():
                    child = breed(objects[ranked[0]], objects[best[i]])
                    store.write_start(start, encode_start(child, parents, BREEDING_RULE))
            tasks.append(member.model_copy(update={"generation": generation, "start": start}))
    return tasks
