"""Write the cropped copy of APS 34-ID-C scan 54 that ships with the project.

    python examples/data/make_scan54_copy.py [SOURCE] [DEST]

SOURCE (default ../shared/data/aps34idc-au111-scan54 beside the checkout) holds the measured
scan: 201 frames of 256 x 256 pixels (a region of interest of the 512 x 512 Timepix
34idcTIM2), the full-chip dark and white fields, the spec file of the whole experiment and the
licence. DEST (default examples/data/aps34idc-au111-scan54 beside this script) receives:

- LICENSE, copied verbatim;
- example.spec: the file header (every line before the first `#S`) and scan 54's block, with
  one line changed: the region-of-interest header `#UIMR5` says where the cropped frames lie on
  the chip (minX sizeX minY sizeY, X the column);
- frames/<same names>.tif: each frame cropped to CROP_ROWS x CROP_COLS of the original frames
  (128 x 128 pixels with the Bragg peak, frame 99, row 126, column 127, at their centre),
  int32, zlib-compressed;
- dark.tif, whitefield.tif: the full-chip fields unchanged, zlib-compressed.

Running it again rewrites the same files (the output is deterministic).
"""

from __future__ import annotations

import re
import shutil
import sys
from pathlib import Path

import numpy as np
import tifffile

HERE = Path(__file__).resolve().parent
SOURCE = HERE.parents[2] / "shared" / "data" / "aps34idc-au111-scan54"
DEST = HERE / "aps34idc-au111-scan54"
SCAN = 54
ROI_HEADER = "#UIMR5"
# rows 62..189 and columns 63..190 of the original 256 x 256 frames: peak (126, 127) -> (64, 64)
CROP_ROWS = (62, 190)
CROP_COLS = (63, 191)


def cut_spec(text: str, scan: int) -> str:
    """The spec file's header and one scan, the ROI header line moved to the cropped frames."""
    lines = text.splitlines(keepends=True)
    starts = [i for i, line in enumerate(lines) if line.startswith("#S ")]
    header = lines[: starts[0]]
    first = next(i for i in starts if lines[i].split()[1] == str(scan))
    after = [i for i in starts if i > first]
    block = lines[first : after[0] if after else len(lines)]
    out = []
    for line in block:
        if line.startswith(ROI_HEADER + " "):
            min_x, size_x, min_y, size_y, *rest = line.split()[1:]
            assert (int(size_x), int(size_y)) == (256, 256), line
            new = [
                int(min_x) + CROP_COLS[0],
                CROP_COLS[1] - CROP_COLS[0],
                int(min_y) + CROP_ROWS[0],
                CROP_ROWS[1] - CROP_ROWS[0],
            ]
            line = f"{ROI_HEADER}  {' '.join(str(v) for v in [*new, *rest])}\n"
        out.append(line)
    return "".join(header + out)


def main(source: Path = SOURCE, dest: Path = DEST) -> None:
    """Write the cropped copy of source into dest (see the module doc)."""
    (dest / "frames").mkdir(parents=True, exist_ok=True)
    shutil.copyfile(source / "LICENSE", dest / "LICENSE")
    text = (source / "example.spec").read_text()
    (dest / "example.spec").write_text(cut_spec(text, SCAN))
    pattern = re.compile(rf"_S{SCAN:04d}_\d+\.tif$")
    frames = sorted(p for p in (source / "frames").iterdir() if pattern.search(p.name))
    assert len(frames) == 201, len(frames)
    for path in frames:
        frame = tifffile.imread(path)
        crop = np.ascontiguousarray(frame[slice(*CROP_ROWS), slice(*CROP_COLS)])
        tifffile.imwrite(dest / "frames" / path.name, crop, compression="zlib")
    for name in ("dark.tif", "whitefield.tif"):
        tifffile.imwrite(dest / name, tifffile.imread(source / name), compression="zlib")
    total = sum(p.stat().st_size for p in dest.rglob("*") if p.is_file())
    print(f"wrote {dest} ({len(frames)} frames, {total / 1e6:.2f} MB)")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))
