"""The store root's consolidated metadata: written when a driver finishes, dropped before any write.

xarray.open_zarr(STORE, group=...) first looks for consolidated metadata at the store's root
and warns when there is none. Zarr v3 keeps it inline in the root's zarr.json, listing every
node, and trusts it without looking at the files: a copy made while other writers add groups
would hide their groups from plain xarray. So the copy is written only by a driver that
finishes with no other driver at work, and every write through Store drops it first (one
atomic rewrite of the root's zarr.json, once); Store's own reads never use it. Past
MAX_CONSOLIDATED_BYTES of metadata (about 800 results of 10 kB) the root stays plain: every
reader would parse the whole copy to open one group.
"""

from __future__ import annotations

import json
import os
import uuid
import warnings
from pathlib import Path

import zarr

MAX_CONSOLIDATED_BYTES = 8 * 2**20
KEY = "consolidated_metadata"


def metadata_bytes(path: Path) -> int:
    """Total size of the store's zarr.json files (bytes): what a consolidated copy holds."""
    return sum(
        os.path.getsize(os.path.join(dirpath, "zarr.json"))
        for dirpath, _, filenames in os.walk(path)
        if "zarr.json" in filenames and dirpath != str(path)
    )


def consolidate(path: Path, max_bytes: int = MAX_CONSOLIDATED_BYTES) -> bool:
    """Write the root's consolidated metadata; False (root left plain) past max_bytes."""
    if metadata_bytes(path) > max_bytes:
        drop(path)
        return False
    with warnings.catch_warnings():
        # the warning says consolidated metadata is not in the v3 spec: known (module doc)
        warnings.filterwarnings("ignore", message="Consolidated metadata is currently not part")
        # notes and damaged folders (_quarantine/, a result without zarr.json) are no nodes
        warnings.filterwarnings("ignore", message="Object at .* is not recognized as a comp")
        zarr.consolidate_metadata(str(path))
    return True


def is_consolidated(path: Path) -> bool:
    """Whether the root's zarr.json holds consolidated metadata."""
    return json.loads((path / "zarr.json").read_text()).get(KEY) is not None


def drop(path: Path) -> None:
    """Remove the root's consolidated metadata (an atomic rewrite; nothing when absent)."""
    root = path / "zarr.json"
    meta = json.loads(root.read_text())
    if meta.pop(KEY, None) is None:
        return
    tmp = root.with_name(f".zarr.json.{uuid.uuid4().hex[:12]}")
    tmp.write_text(json.dumps(meta, indent=2))
    os.replace(tmp, root)
