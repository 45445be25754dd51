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
      _versions/           the current (and the previous) version of each replaceable group
      _quarantine/         damaged groups moved aside, with the reason, never deleted
      _leases/             claims on tasks being computed, and the drivers at work

A group is written under _staging/ and renamed into place as a whole: a POSIX rename of a
directory is atomic on one filesystem (local disks, NFS, Lustre and GPFS alike), so a reader
sees either no group or a complete one, and of two writers of the same task only the first
rename succeeds. The completion marker is the group's presence under results/. A group that
is replaced (an input, a merged group, a multi set, a checkpoint) is a symlink into
_versions/, swapped atomically, so a reader never finds it missing. Every group carries the
checksums of its data variables (integrity.py), verified on every read.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import tempfile
import time
import uuid
from pathlib import Path

import xarray as xr
import zarr

from ..errors import DyncdiError
from ..provenance import now_iso
from . import consolidated
from .groups import decode_result
from .integrity import CHECKSUMS, DamagedGroup, checksums, verify
from .leases import Leases
from .space import full_error, is_full

LAYOUT = "dyncdi-hpc/1"
SECTIONS = ("inputs", "results", "merged", "multi", "checkpoints", "starts")
INTERNAL = ("_staging", "_versions", "_quarantine", "_leases")
# a staging entry untouched this long belongs to a writer that died (an active write touches
# its files every few seconds)
STALE_STAGING_S = 600.0


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


def _newest_mtime(path: Path) -> float:
    """The latest modification time of path and everything below it (s since the epoch)."""
    newest = path.lstat().st_mtime
    for root, dirs, files in os.walk(path):
        for name in dirs + files:
            try:
                newest = max(newest, (Path(root) / name).lstat().st_mtime)
            except FileNotFoundError:
                continue
    return newest


def _remove(path: Path) -> None:
    """Remove a folder, file or symlink (and, for a symlink, nothing it points to)."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    else:
        shutil.rmtree(path, ignore_errors=True)


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
        is_store = (path / "zarr.json").is_file()
        if path.exists() and not is_store and not (path.is_dir() and not any(path.iterdir())):
            raise DyncdiError(
                "store", f"{str(path)!r} exists but is not a Zarr store", "choose another path"
            )
        try:  # a real write, not os.access: root passes permission bits on read-only mounts
            tempfile.TemporaryDirectory(dir=path if is_store else parent).cleanup()
        except OSError as exc:
            if is_full(exc):
                raise full_error(path) from None
            raise DyncdiError(
                "store", f"{str(path)!r} is not writable ({exc.strerror})", "choose a writable path"
            ) from None
        return path

    @classmethod
    def create(cls, path: Path) -> Store:
        """Open a store for writing, creating it whole (never half) if needed; sweep the debris
        that killed writers left in _staging/."""
        path = cls.check_writable(path)
        if not (path / "zarr.json").is_file():
            cls._create_atomically(path)
        consolidated.drop(path)
        root = zarr.open_group(path, mode="a", zarr_format=3, use_consolidated=False)
        if root.attrs.get("layout") != LAYOUT:
            raise DyncdiError(
                "store", f"unknown layout {root.attrs.get('layout')!r}", "use a new store"
            )
        for section in SECTIONS + INTERNAL:
            if not (path / section / "zarr.json").is_file():
                (path / section).mkdir(exist_ok=True)
                root.require_group(section)
        store = cls(path)
        store.sweep_staging()
        return store

    @staticmethod
    def _create_atomically(path: Path) -> None:
        """Build an empty store beside path and rename it into place (no empty folder is left
        behind by a failure, e.g. a full disk)."""
        building = path.with_name(f".{path.name}.creating-{uuid.uuid4().hex[:12]}")
        try:
            root = zarr.open_group(building, mode="w", zarr_format=3)
            root.attrs.update({"layout": LAYOUT, "created_at": now_iso()})
            for section in SECTIONS + INTERNAL:
                root.require_group(section)
            if path.is_dir():  # an empty folder the user made (check_writable checked it)
                path.rmdir()
            os.rename(building, path)
        except OSError as exc:
            shutil.rmtree(building, ignore_errors=True)
            if is_full(exc):
                raise full_error(path.parent) from None
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST) and (path / "zarr.json").is_file():
                return  # another driver created it meanwhile
            raise

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

    # -------------------------------------------------------------------- listing and reading

    def _group_dir(self, section: str, name: str) -> Path:
        return self.path / section / name

    def _entries(self, section: str) -> list[Path]:
        folder = self.path / section
        if not folder.is_dir():
            return []
        return sorted(p for p in folder.iterdir() if not p.name.startswith((".", "zarr.json")))

    def _names(self, section: str) -> list[str]:
        return [p.name for p in self._entries(section) if (p / "zarr.json").is_file()]

    def names(self, section: str) -> list[str]:
        """Names of the complete groups of a section (inputs, results, merged, ...)."""
        return self._names(section)

    def damaged_names(self, section: str) -> list[str]:
        """Entries of a section that are not readable groups (a folder without zarr.json)."""
        return [p.name for p in self._entries(section) if not (p / "zarr.json").is_file()]

    def _attrs(self, section: str, name: str) -> dict:
        where = f"{section}/{name}"
        try:
            meta = json.loads((self._group_dir(section, name) / "zarr.json").read_text())
        except FileNotFoundError:
            raise DamagedGroup(where, "zarr.json is missing") from None
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise DamagedGroup(where, f"zarr.json is not valid JSON ({exc})") from None
        return meta.get("attributes", {})

    def _read(self, section: str, name: str) -> xr.Dataset:
        where = f"{section}/{name}"
        target = self._group_dir(section, name)
        if not (target / "zarr.json").is_file():
            if target.exists() or target.is_symlink():
                raise DamagedGroup(where, "zarr.json is missing")
            raise DyncdiError(section, f"no group {name!r} in {str(self.path)!r}")
        # chunks=None: plain lazy arrays, not dask ones; inside a Dask worker a dask-backed
        # .load() would submit sub-tasks to the cluster the worker belongs to
        try:
            ds = xr.open_zarr(self.path, group=where, consolidated=False, chunks=None).load()
        except Exception as exc:  # a corrupt chunk fails in a codec: name the group, not it
            raise DamagedGroup(where, f"unreadable ({type(exc).__name__}: {exc})") from None
        verify(ds, where)
        return ds

    # -------------------------------------------------------------------------------- writing

    def _stage(self, name: str, ds: xr.Dataset) -> Path:
        """Write ds under _staging/ (checksums in its attrs); nothing is left on failure."""
        staging = self.path / "_staging" / f"{name}-{uuid.uuid4().hex[:12]}"
        ds = _variable_length_strings(ds)
        ds.attrs[CHECKSUMS] = checksums(ds)
        try:
            ds.to_zarr(staging, mode="w", zarr_format=3, consolidated=False)
        except BaseException as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if is_full(exc):
                raise full_error(self.path) from None
            raise
        return staging

    def _write_atomic(self, section: str, name: str, ds: xr.Dataset, replace: bool) -> bool:
        consolidated.drop(self.path)
        staging = self._stage(name, ds)
        if replace:
            self._swap(section, name, staging)
            return True
        target = self._group_dir(section, name)
        # this one entry only: listing the section would make every write O(results)
        if os.path.lexists(target) and not (target / "zarr.json").is_file():
            self.quarantine(section, name, "zarr.json is missing")
        try:
            os.rename(staging, target)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno in (errno.ENOTEMPTY, errno.EEXIST):
                return False
            raise
        return True

    def _swap(self, section: str, name: str, staging: Path) -> None:
        """Point section/name at the staged group in one atomic step (a symlink replaced by
        rename); the version it pointed at stays one more swap for readers still in it."""
        versions = self.path / "_versions"
        version = versions / f"{section}-{name}-{uuid.uuid4().hex[:12]}"
        os.rename(staging, version)
        target = self._group_dir(section, name)
        previous = target.resolve() if target.is_symlink() else None
        if target.exists() and not target.is_symlink():  # a group of an older store version
            os.rename(target, versions / f"{section}-{name}-{uuid.uuid4().hex[:12]}")
        link = self.path / section / f".{name}.link-{uuid.uuid4().hex[:12]}"
        os.symlink(os.path.relpath(version, link.parent), link)
        os.replace(link, target)
        keep = {version.name, previous.name if previous else None}
        for old in versions.glob(f"{section}-{name}-*"):
            if old.name not in keep:
                shutil.rmtree(old, ignore_errors=True)

    def _discard(self, section: str, name: str) -> None:
        consolidated.drop(self.path)
        target = self._group_dir(section, name)
        if target.is_symlink():
            version = target.resolve()
            target.unlink(missing_ok=True)
            shutil.rmtree(version, ignore_errors=True)
            return
        retired = self.path / "_staging" / f"retired-{name}-{uuid.uuid4().hex[:12]}"
        try:
            os.rename(target, retired)
        except FileNotFoundError:
            return
        shutil.rmtree(retired, ignore_errors=True)

    def quarantine(self, section: str, name: str, reason: str) -> Path:
        """Move a damaged group aside into _quarantine/ with a note of why; returns where."""
        consolidated.drop(self.path)
        target = self._group_dir(section, name)
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        dest = self.path / "_quarantine" / f"{section}-{name}-{stamp}-{uuid.uuid4().hex[:6]}"
        dest.parent.mkdir(exist_ok=True)
        source = target.resolve() if target.is_symlink() else target
        os.rename(source, dest)
        if target.is_symlink():
            target.unlink(missing_ok=True)
        (dest / "QUARANTINED.txt").write_text(f"{section}/{name}: {reason}\n{now_iso()}\n")
        return dest

    def quarantined(self) -> dict[str, str]:
        """Quarantined groups (their folder under _quarantine/) with the reason noted."""
        out = {}
        for entry in self._entries("_quarantine"):
            note = entry / "QUARANTINED.txt"
            out[entry.name] = note.read_text().splitlines()[0] if note.is_file() else ""
        return out

    def sweep_staging(self, older_than_s: float = STALE_STAGING_S) -> list[str]:
        """Remove what killed writers left in _staging/ (entries untouched for older_than_s)."""
        swept, now = [], time.time()
        for entry in self._entries("_staging"):
            try:
                if now - _newest_mtime(entry) > older_than_s:
                    _remove(entry)
                    swept.append(entry.name)
            except FileNotFoundError:
                continue
        return swept

    # sweeps recorded in the root attributes (written by the driver only) --------------
    def record_sweep(self, name: str, spec: dict, task_ids: list[str]) -> None:
        """Remember a sweep's spec and task ids (for status and merge without the YAML)."""
        consolidated.drop(self.path)
        root = zarr.open_group(self.path, mode="a", zarr_format=3, use_consolidated=False)
        sweeps = dict(root.attrs.get("sweeps", {}))
        sweeps[name] = {"spec": spec, "task_ids": task_ids, "recorded_at": now_iso()}
        root.attrs["sweeps"] = sweeps

    def consolidate(self, own_drivers: int = 0) -> bool:
        """Consolidated metadata at the root, so that plain xarray.open_zarr opens every group
        without a warning; only when no more than own_drivers (the caller's) drivers are at
        work, since others may be adding groups (consolidated.py). False when not written."""
        if len(Leases(self.path).live_drivers()) > own_drivers:
            return False
        return consolidated.consolidate(self.path)

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

    def has_result(self, task_id: str) -> bool:
        """True when the task's result group is complete (one stat, no listing)."""
        return (self._group_dir("results", task_id) / "zarr.json").is_file()

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
        """Load one result group into memory, verified, with amplitude, phase and the loss
        histories as variables (groups.decode_result)."""
        return decode_result(self._read("results", task_id))

    # checkpoints --------------------------------------------------------------------------
    def write_checkpoint(self, task_id: str, ds: xr.Dataset) -> None:
        """Replace a task's checkpoint (atomically: the old one stays readable until then)."""
        self._write_atomic("checkpoints", task_id, ds, replace=True)

    def read_checkpoint(self, task_id: str) -> xr.Dataset | None:
        """A task's latest checkpoint, or None."""
        if not (self._group_dir("checkpoints", task_id) / "zarr.json").is_file():
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
