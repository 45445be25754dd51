"""The page's tables: the merge rule and the sweeps read as key paths and values, not JSON; a
merged group's members and the independent starts they came from, when the merge counted
them."""

import re

from dyncdi_hpc.report.page import _merged_summary, starts_text
from dyncdi_hpc.report.tables import key_paths, rule_table, sweep_rows, sweep_table

RULE = {
    "metric": ["error", "loss"],
    "select": "best_fraction",
    "fraction": 0.5,
    "reject_outliers": True,
    "max_error_ratio": None,
    "shrinkwrap": {"every": 20, "sigma": {"start": 2.0, "end": 1.0}},
}
SWEEPS = {
    "demo": {
        "spec": {
            "base": {"recipe": "2*(30*ER+170*HIO)", "shrinkwrap": {"every": 20}, "stages": []},
            "sweep": {"seed": 4, "tv_weight": [0.0, 0.001]},
            "merge": {"select": "all", "bootstrap": 20},
        },
        "task_ids": ["a", "b", "c", "d", "e", "f", "g", "h"],
        "recorded_at": "2026-12-03T17:17:26+00:00",
    },
    "more": {
        "spec": {"sweep": {"seed": [7, 9], "model": ["dynamical"]}},
        "task_ids": ["i", "j"],
        "recorded_at": "2026-12-04T09:00:00+00:00",
    },
}
STATUSES = {"a": "done", "b": "done", "c": "failed", "d": "done", "i": "failed"}


def _no_json(text: str) -> None:
    assert "{" not in text and "}" not in text, text
    assert '"' not in text and "&quot;" not in text, text


def _cells(text: str) -> list[list[str]]:
    rows = re.findall(r"<tr>(.*?)</tr>", text)
    return [re.findall(r"<t[dh]>(.*?)</t[dh]>", r) for r in rows]


def test_nested_settings_read_as_key_paths():
    assert key_paths(RULE)[-3:] == [
        ("shrinkwrap.every", 20),
        ("shrinkwrap.sigma.start", 2.0),
        ("shrinkwrap.sigma.end", 1.0),
    ]
    assert key_paths({"stages": [{"model": "dynamical"}, {"model": "kinematical"}]}) == [
        ("stages[0].model", "dynamical"),
        ("stages[1].model", "kinematical"),
    ]


def test_the_merge_rule_is_a_table_of_keys_and_values_not_json():
    text = rule_table(RULE)
    _no_json(text)
    cells = _cells(text)
    assert cells[0] == ["key", "value"]
    assert cells[1:] == [
        ["metric", "error, loss"],
        ["select", "best_fraction"],
        ["fraction", "0.5"],
        ["reject_outliers", "true"],
        ["max_error_ratio", "none"],
        ["shrinkwrap.every", "20"],
        ["shrinkwrap.sigma.start", "2"],
        ["shrinkwrap.sigma.end", "1"],
    ]
    assert "none (defaults)" in rule_table({})


def test_the_sweep_table_has_a_column_per_axis_and_the_task_outcomes():
    text = sweep_table(SWEEPS, STATUSES)
    _no_json(text)
    cells = _cells(text)
    header = ["sweep", "seed", "tv_weight", "model", "tasks", "done", "failed", "recorded"]
    assert cells[0] == header
    assert cells[1][:7] == ["demo", "4 (seeds 0–3)", "0, 0.001", "-", "8", "3", "1"]
    assert cells[2][:7] == ["more", "7, 9", "-", "dynamical", "2", "0", "1"]
    # each sweep's base parameters and merge rule, as key paths
    assert "<td>shrinkwrap.every</td><td>20</td>" in text
    assert "<td>recipe</td><td>2*(30*ER+170*HIO)</td>" in text
    assert "<td>stages</td><td>none</td>" in text
    assert "<td>bootstrap</td><td>20</td>" in text
    assert sweep_rows({}, {}) == []


ATTRS = {
    "members": ["t0", "t1", "t2"],
    "selected": ["t0", "t1", "t2", "t3"],
    "candidates": 8,
    "rule": RULE,
    "vs_truth": None,
}


def test_members_and_their_independent_starts_when_the_merge_counted_them():
    attrs = {**ATTRS, "independent_starts": 2}
    assert starts_text(attrs) == "3 members from 2 independent starts"
    assert starts_text({**ATTRS, "members": ["t0"], "independent_starts": 1}) == (
        "1 member from 1 independent start"
    )
    text = "".join(_merged_summary(attrs))
    assert "Merged 3 of 4 selected results (8 candidates): 3 members from 2 independent" in text
    _no_json(text)
    assert "<td>shrinkwrap.every</td><td>20</td>" in text


def test_without_independent_starts_nothing_extra_is_shown():
    assert starts_text(ATTRS) == ""
    assert starts_text({**ATTRS, "independent_starts": None}) == ""
    text = "".join(_merged_summary(ATTRS))
    assert "Merged 3 of 4 selected results (8 candidates).</p>" in text
    assert "independent" not in text
