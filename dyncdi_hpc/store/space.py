"""Disk space: what a sweep will write, what the file system has, and the one clear error when
a write finds the disk full (errno ENOSPC), naming the file system and what it needs."""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path

from ..errors import DyncdiError

# bytes per voxel of each group kind, uncompressed (zstd saves little on float phases)
RESULT_BYTES_PER_VOXEL = 8  # one complex64 object
INPUT_BYTES_PER_VOXEL = 4 + 1 + 4 * 3 + 1  # intensity, mask, truth amplitude/phase/u, support
MERGED_BYTES_PER_VOXEL = 4 * 13 + 1  # mean fields, spreads and the support
GROUP_OVERHEAD_BYTES = 16_384  # metadata, attrs, histories


class StoreFull(DyncdiError):
    """The store's file system has no room for a write."""


def existing_folder(path: Path) -> Path:
    """The nearest folder at or above path that exists (where a new store would go)."""
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def free_bytes(path: Path) -> int:
    """Bytes available to this user on the file system holding path (or its nearest parent)."""
    return shutil.disk_usage(existing_folder(path)).free


def mount_point(path: Path) -> Path:
    """The mount point of the file system holding path."""
    path = existing_folder(path).resolve()
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def megabytes(n: float) -> str:
    """A byte count as MB with 3 significant digits."""
    return f"{n / 1e6:.3g} MB"


def full_error(path: Path, needed: float | None = None) -> StoreFull:
    """The error for a full file system at path, with what is free and what is needed."""
    need = f"; it needs about {megabytes(needed)} more" if needed else ""
    return StoreFull(
        "store",
        f"the file system {str(mount_point(path))!r} holding {str(Path(path))!r} is full "
        f"({megabytes(free_bytes(path))} free{need})",
        "free space there or point --store at another file system; a rerun resumes",
    )


def is_full(exc: BaseException) -> bool:
    """True when exc (or what caused it) is an out-of-space OSError."""
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def estimate_bytes(
    voxels_by_dataset: dict[str, int], results: dict[str, int], merged: dict[str, int]
) -> dict[str, int]:
    """Upper estimate (uncompressed) of what a sweep writes: inputs, results, merged groups.

    voxels_by_dataset: dataset -> N0 N1 N2; results: dataset -> tasks still to compute;
    merged: dataset -> merged groups it gets (one per model).
    """
    inputs = sum(
        INPUT_BYTES_PER_VOXEL * v + GROUP_OVERHEAD_BYTES for v in voxels_by_dataset.values()
    )
    out = sum(
        n * (RESULT_BYTES_PER_VOXEL * voxels_by_dataset[d] + GROUP_OVERHEAD_BYTES)
        for d, n in results.items()
    )
    fused = sum(
        n * (MERGED_BYTES_PER_VOXEL * voxels_by_dataset[d] + GROUP_OVERHEAD_BYTES)
        for d, n in merged.items()
    )
    return {"inputs": inputs, "results": out, "merged": fused, "total": inputs + out + fused}


def check_room(path: Path, needed: int) -> None:
    """Raise StoreFull before anything is written when the free space is clearly short."""
    free = free_bytes(path)
    if free < needed:
        raise StoreFull(
            "store",
            f"the file system {str(mount_point(path))!r} has {megabytes(free)} free, the sweep "
            f"writes up to {megabytes(needed)} into {str(Path(path))!r}",
            "free space there or point --store at another file system",
        )
