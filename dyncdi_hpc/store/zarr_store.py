"""The sweep store: a Zarr v3 hierarchy on disk whose groups are xarray Datasets.

Layout::

    STORE/                 root group, attrs: layout version, sweeps recorded
      inputs/<dataset>     measured or simulated intensities (+ truth), geometry in attrs
      results/<task_id>    one reconstruction, status and metrics in attrs
      merged/<key>         merged ensemble of the best results of one dataset and model
      multi/<name>         one multi-reflection set: u (and strain tensor) on the sample grid
      checkpoints/<task_id>  latest resumable state of an unfinished task (removed when done)
      starts/<start_id>    start objects bred from earlier generations' results
      _staging/            groups being written; never read

A group is written under _staging/ and renamed into place as a whole: a POSIX rename of a
directory is atomic on one filesystem (local disks, NFS, Lustre and GPFS alike), so a reader
sees either no group or a complete one, and of two writers of the same task only the first
rename succeeds. The completion marker is the group's presence under results/.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import uuid
from pathlib import Path

import xarray as xr
import zarr

from ..errors import DyncdiError
from ..provenance import now_iso

LAYOUT = "dyncdi-hpc/1"
SECTIONS = ("inputs", "results", "merged", "multi", "checkpoints", "starts", "_staging")


def _variable_length_strings(ds: xr.Dataset) -> xr.Dataset:
    """Labels (e.g. component x, y, z) as variable-length strings: Zarr v3 specifies those, not
    numpy's fixed-length UTF-32, which zarr writes only with an UnstableSpecificationWarning."""
    fixed = {
        k: (v.dims, v.values.astype(object), v.attrs)
        for k, v in ds.variables.items()
        if v.dtype.kind == "U"
    }
    coords = {k: v for k, v in fixed.items() if k in ds.coords}
    return ds.assign_coords(coords).assign({k: v for k, v in fixed.items() if k not in coords})


class Store:
    """A sweep store at a path on disk (see module docstring for the layout)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    @staticmethod
    def check_writable(path: Path) -> Path:
        """Raise a DyncdiError unless a store can be created or written at path."""
        path = Path(path).absolute()
        parent = path.parent
        if not parent.is_dir():
            raise DyncdiError(
                "store", f"the folder {str(parent)!r} does not exist", "create it or use --store"
            )
        if path.exists() and not (path / "zarr.json").is_file():
            raise DyncdiError(
                "store", f"{str(path)!r} exists but is not a Zarr store", "choose another path"
            )
        try:  # a real write, not os.access: root passes permission bits on read-only mounts
            tempfile.TemporaryDirectory(dir=path if path.exists() else parent).cleanup()
        except OSError as exc:
            raise DyncdiError(
                "store", f"{str(path)!r} is not writable ({exc.strerror})", "choose a writable path"
            ) from None
        return path

    @classmethod
    def create(cls, path: Path) -> Store:
        """Open a store for writing, creating it (and checking it is writable) if needed."""
        path = cls.check_writable(path)
        root = zarr.open_group(path, mode="a", zarr_format=3)
        if root.attrs.get("layout") not in (None, LAYOUT):
            raise DyncdiError(
                "store", f"unknown layout {root.attrs.get('layout')!r}", "use a new store"
            )
        if "layout" not in root.attrs:
            root.attrs.update({"layout": LAYOUT, "created_at": now_iso()})
        for section in SECTIONS:
            root.require_group(section)
        return cls(path)

    @classmethod
    def open(cls, path: Path) -> Store:
        """Open an existing store for reading; a missing one is a clear error."""
        path = Path(path).absolute()
        if not (path / "zarr.json").is_file():
            raise DyncdiError(
                "store",
                f"no store at {str(path)!r}",
                "check the path, or create it with 'dyncdi sweep' or 'dyncdi simulate'",
            )
        return cls(path)

    def _group_dir(self, section: str, name: str) -> Path:
        return self.path / section / name

    def _names(self, section: str) -> list[str]:
        folder = self.path / section
        if not folder.is_dir():
            return []
        return sorted(p.name for p in folder.iterdir() if (p / "zarr.json").is_file())

    def _attrs(self, section: str, name: str) -> dict:
        meta = json.loads((self._group_dir(section, name) / "zarr.json").read_text())
        return meta.get("attributes", {})

    def _read(self, section: str, name: str) -> xr.Dataset:
        if not (self._group_dir(section, name) / "zarr.json").is_file():
            raise DyncdiError(section, f"no group {name!r} in {str(self.path)!r}")
        # chunks=None: plain lazy arrays, not dask ones; inside a Dask worker a dask-backed
        # .load() would submit sub-tasks to the cluster the worker belongs to
        return xr.open_zarr(
            self.path, group=f"{section}/{name}", consolidated=False, chunks=None
        ).load()

    def _discard(self, section: str, name: str) -> None:
        target = self._group_dir(section, name)
        retired = self.path / "_staging" / f"retired-{name}-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(target, retired)
        except FileNotFoundError:
            return
        shutil.rmtree(retired, ignore_errors=True)

    def _write_atomic(self, section: str, name: str, ds: xr.Dataset, replace: bool) -> bool:
        staging = self.path / "_staging" / f"{name}-{uuid.uuid4().hex[:12]}"
        ds = _variable_length_strings(ds)
        ds.to_zarr(staging, mode="w", zarr_format=3, consolidated=False)
        target = self._group_dir(section, name)
        if replace:
            self._discard(section, name)
        try:
            os.rename(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True

    # sweeps recorded in the root attributes (written by the driver only) --------------
    def record_sweep(self, name: str, spec: dict, task_ids: list[str]) -> None:
        """Remember a sweep's spec and task ids (for status and merge without the YAML)."""
        root = zarr.open_group(self.path, mode="a", zarr_format=3)
        sweeps = dict(root.attrs.get("sweeps", {}))
        sweeps[name] = {"spec": spec, "task_ids": task_ids, "recorded_at": now_iso()}
        root.attrs["sweeps"] = sweeps

    def sweeps(self) -> dict:
        """Recorded sweeps by name."""
        meta = json.loads((self.path / "zarr.json").read_text())
        return meta.get("attributes", {}).get("sweeps", {})

    def planned_count(self) -> int | None:
        """Number of distinct tasks of all recorded sweeps, or None when none is recorded."""
        sweeps = self.sweeps()
        if not sweeps:
            return None
        return len({t for s in sweeps.values() for t in s["task_ids"]})

    def merge_rule(self) -> dict:
        """Merge rule of the most recently recorded sweep ({} for the default rule)."""
        sweeps = self.sweeps()
        if not sweeps:
            return {}
        latest = max(sweeps.values(), key=lambda s: s["recorded_at"])
        return latest["spec"].get("merge", {})

    # inputs ---------------------------------------------------------------------------
    def input_names(self) -> list[str]:
        """Names of the datasets under inputs/."""
        return self._names("inputs")

    def input_attrs(self, name: str) -> dict:
        """Attributes of one input group (geometry, fingerprint, source, provenance)."""
        return self._attrs("inputs", name)

    def write_input(self, name: str, ds: xr.Dataset) -> None:
        """Write (or replace) one input dataset."""
        self._write_atomic("inputs", name, ds, replace=True)

    def read_input(self, name: str) -> xr.Dataset:
        """Load one input dataset into memory."""
        return self._read("inputs", name)

    # results --------------------------------------------------------------------------
    def result_ids(self) -> list[str]:
        """Task ids with a complete result group (done or failed)."""
        return self._names("results")

    def result_attrs(self, task_id: str) -> dict:
        """Attributes of one result group: status, metrics, spec, timings, provenance."""
        return self._attrs("results", task_id)

    def write_result(self, task_id: str, ds: xr.Dataset) -> bool:
        """Write a result once; False when another writer got there first (nothing changed)."""
        return self._write_atomic("results", task_id, ds, replace=False)

    def discard_result(self, task_id: str) -> None:
        """Remove a result group (to recompute a failed task); atomic like a write."""
        self._discard("results", task_id)

    def read_result(self, task_id: str) -> xr.Dataset:
        """Load one result group into memory."""
        return self._read("results", task_id)

    # checkpoints --------------------------------------------------------------------------
    def write_checkpoint(self, task_id: str, ds: xr.Dataset) -> None:
        """Replace a task's checkpoint (atomically: the old one stays readable until then)."""
        self._write_atomic("checkpoints", task_id, ds, replace=True)

    def read_checkpoint(self, task_id: str) -> xr.Dataset | None:
        """A task's latest checkpoint, or None."""
        if task_id not in self._names("checkpoints"):
            return None
        return self._read("checkpoints", task_id)

    def discard_checkpoint(self, task_id: str) -> None:
        """Remove a task's checkpoint (after its result is written)."""
        self._discard("checkpoints", task_id)

    # starts -------------------------------------------------------------------------------
    def start_ids(self) -> list[str]:
        """Ids of the stored start objects."""
        return self._names("starts")

    def write_start(self, start_id: str, ds: xr.Dataset) -> bool:
        """Write a start object once (its id is a hash of how it was made)."""
        return self._write_atomic("starts", start_id, ds, replace=False)

    def read_start(self, start_id: str) -> xr.Dataset:
        """Load one start object."""
        return self._read("starts", start_id)

    # merged ---------------------------------------------------------------------------
    def merged_keys(self) -> list[str]:
        """Keys of the merged ensembles."""
        return self._names("merged")

    def write_merged(self, key: str, ds: xr.Dataset) -> None:
        """Write (or replace) one merged ensemble."""
        self._write_atomic("merged", key, ds, replace=True)

    def read_merged(self, key: str) -> xr.Dataset:
        """Load one merged ensemble."""
        return self._read("merged", key)

    def merged_attrs(self, key: str) -> dict:
        """Attributes of one merged group."""
        return self._attrs("merged", key)

    # multi-reflection sets ---------------------------------------------------------------
    def multi_names(self) -> list[str]:
        """Names of the multi-reflection sets under multi/."""
        return self._names("multi")

    def write_multi(self, name: str, ds: xr.Dataset) -> None:
        """Write (or replace) one multi-reflection set's result."""
        self._write_atomic("multi", name, ds, replace=True)

    def read_multi(self, name: str) -> xr.Dataset:
        """Load one multi-reflection set's result."""
        return self._read("multi", name)

    def multi_attrs(self, name: str) -> dict:
        """Attributes of one multi-reflection group (config, fingerprint, metrics, vs_truth)."""
        return self._attrs("multi", name)
