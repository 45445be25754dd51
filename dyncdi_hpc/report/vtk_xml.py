"""VTK XML files, zlib-compressed: ImageData (.vti) and StructuredGrid (.vts).

Written directly (pyevtk writes no compressed data): one XML header, then every array in an
appended raw block, each compressed the way VTK's vtkZLibDataCompressor does and its XML
readers (ParaView, VisIt, the `vtk` package) read: a UInt64 header [number of blocks,
uncompressed block size, uncompressed size of the last block (0 when full), compressed size of
each block], then the zlib streams of the blocks. Point data is given as arrays indexed
[i, j, k] (VTK's x, y, z index; i varies fastest in the file).
"""

from __future__ import annotations

import zlib
from pathlib import Path
from xml.sax.saxutils import quoteattr

import numpy as np

BLOCK_BYTES = 1 << 18
ZLIB_LEVEL = 6
VTK_TYPES = {
    np.dtype(np.float32): "Float32",
    np.dtype(np.float64): "Float64",
    np.dtype(np.uint8): "UInt8",
    np.dtype(np.int32): "Int32",
}


def _compressed(values: np.ndarray) -> bytes:
    """The array's bytes (little-endian) as VTK's zlib-compressed appended block."""
    raw = np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
    blocks = [raw[i : i + BLOCK_BYTES] for i in range(0, len(raw), BLOCK_BYTES)]
    packed = [zlib.compress(b, ZLIB_LEVEL) for b in blocks]
    last = len(raw) % BLOCK_BYTES
    header = np.array([len(blocks), BLOCK_BYTES, last, *map(len, packed)], dtype="<u8")
    return header.tobytes() + b"".join(packed)


def _flat(values: np.ndarray) -> np.ndarray:
    """A point array [i, j, k] or points [i, j, k, 3] in VTK's order (i fastest)."""
    values = np.asarray(values)
    if values.dtype == bool:
        values = values.astype(np.uint8)
    if values.ndim == 4:
        return values.transpose(2, 1, 0, 3).reshape(-1, values.shape[-1])
    return values.transpose(2, 1, 0).reshape(-1)


class _Appended:
    """DataArray elements and the appended block they point into."""

    def __init__(self) -> None:
        self.blobs: list[bytes] = []
        self.offset = 0

    def element(self, name: str | None, values: np.ndarray) -> str:
        flat = _flat(values)
        if flat.dtype not in VTK_TYPES:
            raise TypeError(f"no VTK type for {flat.dtype} ({name})")
        blob = _compressed(flat)
        components = flat.shape[1] if flat.ndim == 2 else 1
        label = f" Name={quoteattr(name)}" if name else ""
        xml = (
            f'<DataArray type="{VTK_TYPES[flat.dtype]}"{label} '
            f'NumberOfComponents="{components}" format="appended" offset="{self.offset}"/>'
        )
        self.blobs.append(blob)
        self.offset += len(blob)
        return xml

    def point_data(self, arrays: dict[str, np.ndarray]) -> str:
        first = next(iter(arrays), None)
        scalars = f" Scalars={quoteattr(first)}" if first else ""
        inner = "".join(self.element(n, v) for n, v in arrays.items())
        return f"<PointData{scalars}>{inner}</PointData>"


def _write(path: Path, kind: str, grid_attrs: str, extent: str, piece: str, data: _Appended):
    head = (
        '<?xml version="1.0"?>\n'
        f'<VTKFile type="{kind}" version="1.0" byte_order="LittleEndian" '
        'header_type="UInt64" compressor="vtkZLibDataCompressor">\n'
        f'<{kind} WholeExtent="{extent}"{grid_attrs}>\n'
        f'<Piece Extent="{extent}">{piece}</Piece>\n'
        f"</{kind}>\n"
        '<AppendedData encoding="raw">\n_'
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        f.write(head.encode())
        for blob in data.blobs:
            f.write(blob)
        f.write(b"\n</AppendedData>\n</VTKFile>\n")
    return path


def _extent(shape: tuple[int, ...]) -> str:
    return " ".join(f"0 {n - 1}" for n in shape)


def _check(shape: tuple[int, ...], arrays: dict[str, np.ndarray]) -> None:
    for name, values in arrays.items():
        if np.shape(values)[:3] != tuple(shape):
            raise ValueError(f"{name}: shape {np.shape(values)} is not the grid's {shape}")


def write_image_data(
    path: Path,
    point_data: dict[str, np.ndarray],
    origin: tuple[float, float, float],
    spacing: tuple[float, float, float],
) -> Path:
    """An ImageData file (.vti): point arrays (nx, ny, nz) on a regular axis-aligned grid
    whose first point is at origin, steps spacing (the caller's length unit)."""
    shape = np.shape(next(iter(point_data.values())))[:3]
    _check(shape, point_data)
    data = _Appended()
    piece = data.point_data(point_data)
    attrs = (
        f' Origin="{" ".join(repr(float(o)) for o in origin)}"'
        f' Spacing="{" ".join(repr(float(s)) for s in spacing)}"'
    )
    return _write(Path(path), "ImageData", attrs, _extent(shape), piece, data)


def write_structured_grid(
    path: Path, points: np.ndarray, point_data: dict[str, np.ndarray]
) -> Path:
    """A StructuredGrid file (.vts): the position of every point, points (n0, n1, n2, 3)
    (float32 written), and point arrays (n0, n1, n2) on them."""
    shape = np.shape(points)[:3]
    _check(shape, point_data)
    data = _Appended()
    piece = data.point_data(point_data)
    piece += f"<Points>{data.element(None, np.asarray(points, np.float32))}</Points>"
    return _write(Path(path), "StructuredGrid", "", _extent(shape), piece, data)
