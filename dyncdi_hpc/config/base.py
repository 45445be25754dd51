"""The base of every configuration model, and reading YAML into one with errors that name
the field: unknown keys and wrong types are one line per problem, never a traceback."""

from __future__ import annotations

from pathlib import Path
from typing import TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

from ..errors import DyncdiError

M = TypeVar("M", bound=BaseModel)


class Frozen(BaseModel):
    """Base of every config model: immutable, unknown keys rejected."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def format_validation_error(err: ValidationError, prefix: str = "") -> str:
    """One line per problem: dotted field path, message."""
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"] if not str(p).startswith("function-after"))
        loc = ".".join(p for p in loc.split(".") if p not in _UNION_TAGS)
        where = ".".join(p for p in (prefix, loc) if p) or "(top level)"
        msg = e["msg"].removeprefix("Value error, ")
        if e["type"] == "extra_forbidden":
            msg = "unknown key (check its spelling or remove it)"
        lines.append(f"{where}: {msg}")
    return "; ".join(dict.fromkeys(lines))


# union members whose class names pydantic puts in error locations (config/spec.py's datasets)
_UNION_TAGS = {"SimulatedDataset", "StoredDataset", "ArrayDataset"}


def read_yaml(path: Path, what: str) -> dict:
    """Safe-load a YAML mapping, or raise a DyncdiError naming the file and the problem."""
    path = Path(path)
    if not path.is_file():
        raise DyncdiError(what, f"no such file {str(path)!r}", "check the path")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise DyncdiError(
            str(path), f"malformed YAML{where}: {problem}", "fix the YAML syntax"
        ) from None
    if not isinstance(data, dict):
        raise DyncdiError(str(path), "the file is not a YAML mapping", "write key: value pairs")
    return data


def validate(model: type[M], data: dict, source: str) -> M:
    """Validate data against a model; errors become one DyncdiError line naming each field."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise DyncdiError(source, format_validation_error(err)) from None


def without_extensions(data: dict) -> dict:
    """The mapping without its top-level `x-...` keys: holders of YAML anchors that the rest
    of the file reuses (`<<: *scan`), as in docker-compose, and never configuration."""
    return {k: v for k, v in data.items() if not str(k).startswith("x-")}
