"""mkdocs hook: the benchmark results as they are in the repository.

The plots (benchmarks/results/**/*.png) are served from where `python -m benchmarks plot`
writes them, so the site shows the same files as the README without copies under docs/;
pages link them as `benchmarks/results/NAME.png`. A page's `<!-- benchmark-files -->`
becomes a table of every results JSON: when, on what and from which commit it was measured.
"""

from __future__ import annotations

import json
from pathlib import Path

from mkdocs.structure.files import File, Files

# benchmarks/results: the plots; docs/images at its repository path too, since the README
# sections that benchmarks.md includes link the figures as docs/images/NAME.png
FOLDERS = ("benchmarks/results", "docs/images")


def on_files(files: Files, config) -> Files:
    """Add every PNG under FOLDERS (relative to the repository root) to the site."""
    root = Path(config.config_file_path).parent
    for folder in FOLDERS:
        for path in sorted((root / folder).rglob("*.png")):
            uri = path.relative_to(root).as_posix()
            if files.get_file_from_path(uri) is None:
                files.append(File.generated(config, uri, abs_src_path=str(path)))
    return files


MARKER = "<!-- benchmark-files -->"


def benchmark_table(root: Path) -> str:
    """One row per benchmarks/results/**/*.json, from its `metadata` and `wall_s`."""
    rows = [
        "| file | measured (UTC) | device | CPUs | JAX | commit | run time |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for path in sorted((root / FOLDERS[0]).rglob("*.json")):  # the results only
        data = json.loads(path.read_text())
        meta = data.get("metadata", {})
        versions = meta.get("versions", {})
        jax = versions.get("jax", "") if isinstance(versions, dict) else ""
        wall = data.get("wall_s")
        cells = [
            f"`{path.relative_to(root).as_posix()}`",
            str(meta.get("date", ""))[:16].replace("T", " "),
            str(meta.get("device_kind", "")),
            str(meta.get("cpu_usable", "")),
            jax,
            f"`{str(meta.get('git_commit', ''))[:7]}`",
            f"{wall:.0f} s" if isinstance(wall, int | float) else "",
        ]
        rows.append("| " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """Fill a page's benchmark-files marker."""
    if MARKER not in markdown:
        return markdown
    return markdown.replace(MARKER, benchmark_table(Path(config.config_file_path).parent))
