"""HTML tables of the report page: rows of records, the merge rule and the sweeps.

Nested settings read as key paths (shrinkwrap.every, stages[0].model) and values as text
(lists comma-separated, None as "none"), never as JSON.
"""

from __future__ import annotations

import html
from typing import Any


def fmt(v) -> str:
    """A table cell's text, escaped: floats to 4 significant digits."""
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def table(rows: list[dict]) -> str:
    """One row per dict, the first dict's keys as the header; "none" when there are no rows."""
    if not rows:
        return "<p>none</p>"
    header = list(rows[0])
    out = "<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>"
    for r in rows:
        out += "<tr>" + "".join(f"<td>{fmt(r.get(h, ''))}</td>" for h in header) + "</tr>"
    return out + "</table>"


def key_paths(value: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(key path, leaf value) of nested dicts (a.b) and lists of dicts (a[0].b)."""
    if isinstance(value, dict) and value:
        out = []
        for k, v in value.items():
            out += key_paths(v, f"{prefix}.{k}" if prefix else str(k))
        return out
    if isinstance(value, list | tuple) and any(isinstance(v, dict) for v in value):
        out = []
        for i, v in enumerate(value):
            out += key_paths(v, f"{prefix}[{i}]")
        return out
    return [(prefix, value)]


def value_text(v: Any) -> str:
    """A setting as text (not escaped): none, true / false, 4 significant digits, a list
    comma-separated."""
    if v is None or (isinstance(v, list | tuple | dict) and not v):
        return "none"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list | tuple):
        return ", ".join(value_text(x) for x in v)
    return str(v)


def settings_table(settings: dict) -> str:
    """A key / value table of nested settings, one row per key path."""
    pairs = key_paths(settings)
    if not pairs or pairs == [("", settings)]:
        return "<p>none (defaults)</p>"
    rows = "".join(
        f"<tr><td>{html.escape(k)}</td><td>{html.escape(value_text(v))}</td></tr>" for k, v in pairs
    )
    return "<table><tr><th>key</th><th>value</th></tr>" + rows + "</table>"


def rule_table(rule: dict) -> str:
    """A merge rule, one row per key (path)."""
    return settings_table(rule)


def axis_text(axis: str, values: Any) -> str:
    """A sweep axis's values: a seed count N reads "N (seeds 0-(N-1))"."""
    if axis == "seed" and isinstance(values, int) and not isinstance(values, bool):
        return f"{values} (seeds 0–{values - 1})" if values > 1 else "1 (seed 0)"
    return value_text(values)


def sweep_rows(sweeps: dict, statuses: dict[str, str]) -> list[dict]:
    """One row per recorded sweep: a column per axis (any sweep's; "-" where a sweep has no
    such axis) with its values, the task count and how many of them are done and failed."""
    axes: list[str] = []
    for s in sweeps.values():
        axes += [a for a in s["spec"].get("sweep", {}) if a not in axes]
    rows = []
    for name, s in sweeps.items():
        swept = s["spec"].get("sweep", {})
        states = [statuses.get(t) for t in s["task_ids"]]
        rows.append(
            {
                "sweep": name,
                **{a: axis_text(a, swept[a]) if a in swept else "-" for a in axes},
                "tasks": len(s["task_ids"]),
                "done": states.count("done"),
                "failed": states.count("failed"),
                "recorded": s["recorded_at"],
            }
        )
    return rows


def sweep_table(sweeps: dict, statuses: dict[str, str]) -> str:
    """The sweeps' table (sweep_rows), then each sweep's base parameters and merge rule as
    key / value tables (folded)."""
    parts = [table(sweep_rows(sweeps, statuses))]
    for name, s in sweeps.items():
        for what, key in (("base parameters", "base"), ("merge rule", "merge")):
            parts.append(
                f"<details><summary>{html.escape(name)}: {what}</summary>"
                f"{settings_table(s['spec'].get(key, {}))}</details>"
            )
    return "".join(parts)
