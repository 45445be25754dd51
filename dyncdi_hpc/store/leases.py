"""Claims on a store's work: one lease file per task being computed, one per driver at work.

A task's lease `_leases/task-<id>.json` is created atomically (O_CREAT | O_EXCL) by the process
about to compute it and names its host, pid and driver; the holder touches it every
HEARTBEAT_S while it computes and removes it when its result is written. Another claimant sees
a fresh lease and leaves the task alone: two drivers on one store, or a sweep submitted again,
split the work instead of doing it twice. A lease is stale, and taken over, when its file has
not been touched for LEASE_TTL_S, when its holder is a dead process on this host, or when the
claimant is the holder's own driver (a Dask retry after its worker died). A takeover renames
the stale file away first, so of two claimants only one wins.

A driver registers `_leases/driver-<host>-<pid>-<id>.json` the same way, so a second driver is
told what the first is doing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from ..provenance import now_iso

LEASE_TTL_S = 60.0
HEARTBEAT_S = 10.0


@dataclass(frozen=True)
class Holder:
    """Who holds a lease: host, pid, the driver it works for, since when, last heartbeat (s)."""

    host: str
    pid: int
    driver: str
    since: str
    age_s: float

    def describe(self) -> str:
        """'host vm, pid 123 (driver ..., since ...)'."""
        return f"host {self.host}, pid {self.pid} (driver {self.driver}, since {self.since})"


def new_driver_id() -> str:
    """An id for one driver run: host, pid and a random part."""
    return f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"


def _alive(host: str, pid: int) -> bool:
    """False only when the process is certainly gone (on this host); True when unknown."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _read(path: Path) -> Holder | None:
    try:
        data = json.loads(path.read_text())
        age = time.time() - path.stat().st_mtime
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return None
    return Holder(data["host"], int(data["pid"]), data["driver"], data["since"], age)


def _record(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}


def _create(path: Path, payload: dict) -> bool:
    """Create path with payload unless it exists (atomic); True when created."""
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as f:
        json.dump(payload, f)
    return True


class Leases:
    """The lease folder of a store (STORE/_leases)."""

    def __init__(self, store_path: Path) -> None:
        self.folder = Path(store_path) / "_leases"

    def _task(self, task_id: str) -> Path:
        return self.folder / f"task-{task_id}.json"

    def stale(self, holder: Holder | None, driver: str | None = None) -> bool:
        """True when a lease may be taken over (see the module docstring)."""
        if holder is None:
            return True
        return (
            holder.age_s > LEASE_TTL_S
            or not _alive(holder.host, holder.pid)
            or (driver is not None and holder.driver == driver)
        )

    def claim(self, task_id: str, driver: str) -> Holder | None:
        """Claim a task for this process; None when claimed, else the live holder."""
        self.folder.mkdir(exist_ok=True)
        path = self._task(task_id)
        payload = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "driver": driver,
            "since": now_iso(),
        }
        for _ in range(3):
            if _create(path, payload):
                return None
            holder = _read(path)
            if not self.stale(holder, driver):
                return holder
            with contextlib.suppress(FileNotFoundError):  # another claimant won the takeover
                os.rename(path, path.with_name(f"{path.name}.stale-{uuid.uuid4().hex[:8]}"))
            for leftover in self.folder.glob(f"{path.name}.stale-*"):
                leftover.unlink(missing_ok=True)
        return _read(path)

    def holder(self, task_id: str) -> Holder | None:
        """The current holder of a task's lease, or None."""
        return _read(self._task(task_id))

    def release(self, task_id: str) -> None:
        """Give a task's lease up (after its result is written, or on failure)."""
        self._task(task_id).unlink(missing_ok=True)

    @contextlib.contextmanager
    def heartbeat(self, path: Path) -> Iterator[None]:
        """Touch path every HEARTBEAT_S while the block runs (in a daemon thread)."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(HEARTBEAT_S):
                with contextlib.suppress(FileNotFoundError):
                    os.utime(path)

        thread = threading.Thread(target=beat, name=f"lease {path.name}", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join(timeout=1.0)

    @contextlib.contextmanager
    def holding(self, task_id: str) -> Iterator[None]:
        """Keep a claimed task's lease fresh while the block runs, and release it after."""
        try:
            with self.heartbeat(self._task(task_id)):
                yield
        finally:
            self.release(task_id)

    # drivers ---------------------------------------------------------------------------
    def _driver(self, driver: str) -> Path:
        return self.folder / f"driver-{driver}.json"

    def secrets(self, driver: str) -> Path:
        """The private folder of a driver's TLS files (made by the cluster, removed with it,
        and by the next driver when this one was killed)."""
        return self.folder / f"tls-{driver}"

    def sweep_orphans(self) -> list[str]:
        """Remove the secrets of drivers that are gone (killed) and stale lease leftovers."""
        live = {d["driver"] for d in self.live_drivers()}
        removed = []
        for path in self.folder.glob("tls-*"):
            if path.name.removeprefix("tls-") not in live:
                shutil.rmtree(path, ignore_errors=True)
                removed.append(path.name)
        return removed

    @contextlib.contextmanager
    def driver_at_work(self, driver: str, sweep: str) -> Iterator[list[dict]]:
        """Register this driver for the block; yields the other live drivers' records."""
        self.folder.mkdir(exist_ok=True)
        self.sweep_orphans()
        others = self.live_drivers()
        path = self._driver(driver)
        payload = {
            "host": socket.gethostname(),
            "pid": os.getpid(),
            "driver": driver,
            "since": now_iso(),
            "sweep": sweep,
        }
        _create(path, payload)
        try:
            with self.heartbeat(path):
                yield others
        finally:
            path.unlink(missing_ok=True)
            shutil.rmtree(self.secrets(driver), ignore_errors=True)

    def live_drivers(self) -> list[dict]:
        """Records of the drivers whose registration is fresh (and whose process lives)."""
        out = []
        for path in sorted(self.folder.glob("driver-*.json")):
            holder = _read(path)
            if holder is None or self.stale(holder):
                continue
            out.append({**asdict(holder), **_record(path)})
        return out
