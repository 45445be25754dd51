"""Export merged results for other tools: VTK (ParaView) and CXI/HDF5.

The Zarr store stays the master copy. Exports are given in one frame (physics/frames.py:
`lab`, the CXI laboratory frame, by default; `crystal` or `sample`), in nm for VTK and m for
CXI, float32, within the support's bounding box plus a margin of a few voxels, compressed:

* VTK (export_vtk.py): per merged group `<key>.vti` (ImageData, the orthogonal grid of the
  frame, resampled) and `<key>.vts` (StructuredGrid, the reconstruction's own sheared grid,
  every voxel at its position in the same frame, no interpolation), with the same point data:
  amplitude, phase, displacement, strain, support, support_probability and the spread maps.
* CXI (export_cxi.py): one HDF5 file, one `entry_<i>` per merged group: the complex object
  on both grids, the maps, and the scan's geometry in the CXI lab frame.
"""

from __future__ import annotations

from .export_cxi import write_cxi as write_cxi
from .export_data import frame_dataset as frame_dataset
from .export_data import sample_frame as sample_frame
from .export_vtk import write_vtk as write_vtk

__all__ = ["frame_dataset", "sample_frame", "write_cxi", "write_vtk"]
