"""dyncdi-hpc: batch BCDI reconstructions with kinematical and dynamical forward models.

The command line (`dyncdi`) is the main entry point. For notebooks and scripts, this module
is the public API: one import path per object, loaded on first use (so `import dyncdi_hpc`
stays cheap). The physics layer has its own list (`dyncdi_hpc.physics`), and so has the
configuration (`dyncdi_hpc.config`). Modules follow the data flow (simulate or load -> forward
models -> losses -> optimiser -> task -> sweep -> scheduling -> store -> merge -> report); the
layers, lowest first, are physics, config, store, data, recon and analysis, merge, the task
and the multi-reflection stage, scheduling, the CLI (tests/test_layout.py).
"""

from typing import TYPE_CHECKING

from ._lazy import lazy_exports
from .provenance import package_version

__version__ = package_version()

_EXPORTS = {
    # configuration
    "CrystalConfig": ".config",
    "GeometryConfig": ".config",
    "MergeRule": ".config",
    "ReconParams": ".config",
    "SimulateConfig": ".config",
    "SweepSpec": ".config",
    "load_sweep": ".config",
    # errors
    "DyncdiError": ".errors",
    "TaskFailed": ".errors",
    # physics
    "Geometry": ".physics.geometry",
    "make_geometry": ".physics.geometry",
    # data in
    "Measurement": ".data.measurement",
    "read_measurement": ".data.measurement",
    "simulate": ".data.simulate",
    "load_scan": ".data.load",
    "simulated_input": ".inputs",
    "resolve": ".inputs",
    # one reconstruction
    "Reconstruction": ".recon.pipeline",
    "reconstruct": ".recon.pipeline",
    # a whole sweep
    "plan_sweep": ".schedule.run",
    "run_sweep": ".schedule.run",
    # the store and what comes out of it
    "Store": ".store.zarr_store",
    "complex_object": ".store.groups",
    "align": ".merge.align",
    "phase_rms": ".merge.align",
    "merge_store": ".merge.combine",
    "sample_frame": ".report.export",
    "write_cxi": ".report.export",
    "write_vtk": ".report.export",
    "write_report": ".report.page",
}

__all__ = ["__version__", *sorted(_EXPORTS)]
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)

if TYPE_CHECKING:
    from .config import CrystalConfig as CrystalConfig
    from .config import GeometryConfig as GeometryConfig
    from .config import MergeRule as MergeRule
    from .config import ReconParams as ReconParams
    from .config import SimulateConfig as SimulateConfig
    from .config import SweepSpec as SweepSpec
    from .config import load_sweep as load_sweep
    from .data.load import load_scan as load_scan
    from .data.measurement import Measurement as Measurement
    from .data.measurement import read_measurement as read_measurement
    from .data.simulate import simulate as simulate
    from .errors import DyncdiError as DyncdiError
    from .errors import TaskFailed as TaskFailed
    from .inputs import resolve as resolve
    from .inputs import simulated_input as simulated_input
    from .merge.align import align as align
    from .merge.align import phase_rms as phase_rms
    from .merge.combine import merge_store as merge_store
    from .physics.geometry import Geometry as Geometry
    from .physics.geometry import make_geometry as make_geometry
    from .recon.pipeline import Reconstruction as Reconstruction
    from .recon.pipeline import reconstruct as reconstruct
    from .report.export import sample_frame as sample_frame
    from .report.export import write_cxi as write_cxi
    from .report.export import write_vtk as write_vtk
    from .report.page import write_report as write_report
    from .schedule.run import plan_sweep as plan_sweep
    from .schedule.run import run_sweep as run_sweep
    from .store.groups import complex_object as complex_object
    from .store.zarr_store import Store as Store
