"""mkdocs hook: the sweep-spec reference and the API member lists, generated from the code.

spec-reference.md holds `<!-- spec-reference -->`: it becomes one table per configuration
model reachable from the roots below (key, type, default, meaning), the meaning being each
pydantic field's description. api.md's `<!-- members: MODULE -->` becomes the module's
runtime `__all__`, as a YAML list for mkdocstrings' `members` option (dyncdi_hpc and
dyncdi_hpc.physics build `__all__` from their lazy-export tables, which griffe cannot read).

tests/test_docs.py imports this file to check that every field has a description.
"""

from __future__ import annotations

import importlib
import json
import re
import types
import typing
from pathlib import Path

from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

SPEC_MARKER = "<!-- spec-reference -->"
MEMBERS = re.compile(r"<!-- members: ([\w.]+) -->")


def roots() -> list[tuple[str, type[BaseModel], str]]:
    """(title, model, what it is) of each file format the reference covers."""
    from dyncdi_hpc.config import SimulateConfig, SweepSpec
    from dyncdi_hpc.config.beamline import Beamline

    return [
        ("Sweep spec", SweepSpec, "the file `dyncdi sweep SPEC` reads"),
        ("Simulation config", SimulateConfig, "the file `dyncdi simulate CONFIG` reads"),
        ("Beamline preset", Beamline, "a `--beamline PRESET.yaml` / `geometry.beamline` file"),
    ]


def _inner(annotation: object) -> list[object]:
    """The types inside an annotation (union members, containers' items), Annotated unwrapped."""
    if typing.get_origin(annotation) is typing.Annotated:
        return _inner(typing.get_args(annotation)[0])
    args = typing.get_args(annotation)
    if not args:
        return [annotation]
    return [t for arg in args for t in _inner(arg)]


def _models_in(annotation: object) -> list[type[BaseModel]]:
    return [t for t in _inner(annotation) if isinstance(t, type) and issubclass(t, BaseModel)]


def _child_path(path: str, annotation: object) -> str:
    """Where a nested model sits: dict values are NAME, list and tuple items [i]."""
    origin = typing.get_origin(annotation)
    if origin is typing.Annotated:
        return _child_path(path, typing.get_args(annotation)[0])
    if origin in (typing.Union, types.UnionType):
        members = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _child_path(path, members[0]) if len(members) == 1 else path
    if origin is dict:
        return f"{path}.NAME"
    if origin in (list, tuple):
        return f"{path}[i]"
    return path


def reachable(root: type[BaseModel], path: str = "") -> dict[type[BaseModel], str]:
    """Every model reachable from root through its fields, with the key path first reaching it
    (breadth first, root first)."""
    found: dict[type[BaseModel], str] = {root: path}
    queue = [root]
    while queue:
        model = queue.pop(0)
        for name, field in model.model_fields.items():
            key = f"{found[model]}.{name}".lstrip(".")
            for child in _models_in(field.annotation):
                if child not in found:
                    found[child] = _child_path(key, field.annotation)
                    queue.append(child)
    return found


def all_models() -> dict[type[BaseModel], str]:
    """The models of every root, each once."""
    out: dict[type[BaseModel], str] = {}
    for _, model, _ in roots():
        for child, path in reachable(model).items():
            out.setdefault(child, path)
    return out


def type_text(annotation: object) -> str:
    """A type as YAML spells its values: `int`, `float | null`, `"a" | "b"`, `[int, int]`
    (a list of exactly two), `[ReflectionEntry, ...]` (a list), `{str: float}` (a mapping)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin is typing.Annotated:
        return type_text(args[0])
    if origin is typing.Literal:
        return " | ".join(json.dumps(a) for a in args)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_text(a) for a in args)
    if origin is dict:
        key, value = (type_text(a) for a in args) if args else ("str", "any")
        return f"{{{key}: {value}}}"
    if origin in (list, tuple):
        items = [type_text(a) for a in args if a is not Ellipsis]
        many = origin is list or Ellipsis in args
        return "[" + ", ".join(items) + (", ..." if many else "") + "]"
    if origin is not None:
        name = getattr(origin, "__name__", str(origin))
        return f"{name}[{', '.join(type_text(a) for a in args)}]"
    if annotation is type(None):
        return "null"
    if annotation is dict:
        return "{str: any}"
    if annotation is typing.Any:
        return "any"
    if isinstance(annotation, type):
        return "path" if issubclass(annotation, Path) else annotation.__name__
    return str(annotation)


_BOUNDS = (("gt", ">"), ("ge", ">="), ("lt", "<"), ("le", "<="))


def constraints(field: FieldInfo) -> str:
    """The field's bounds, lengths and pattern, e.g. `> 0, <= 1`, `length 3`."""
    found: dict[str, object] = {}
    for item in field.metadata:
        for attr in (*(a for a, _ in _BOUNDS), "min_length", "max_length", "pattern"):
            if getattr(item, attr, None) is not None:
                found[attr] = getattr(item, attr)
    parts = [f"{sign} {found[attr]}" for attr, sign in _BOUNDS if attr in found]
    low, high = found.get("min_length"), found.get("max_length")
    if low is not None and low == high:
        parts.append(f"length {low}")
    else:
        parts += [f"length {w} {v}" for w, v in ((">=", low), ("<=", high)) if v is not None]
    if "pattern" in found:
        parts.append(f"matches `{found['pattern']}`")
    return ", ".join(parts)


def default_text(field: FieldInfo) -> str:
    """The default as YAML would spell it; `required` when there is none."""
    if field.default_factory is not None:
        value = field.default_factory()
    elif field.default is PydanticUndefined:
        return "required"
    else:
        value = field.default
    if isinstance(value, BaseModel):
        return "its defaults"
    return f"`{json.dumps(value, default=str)}`"


def _prose(text: str) -> str:
    """Plain text as markdown: one line; outside code spans, `*` (recipes) kept literal."""
    parts = " ".join(text.split()).split("`")
    return "`".join(p if i % 2 else p.replace("*", "\\*") for i, p in enumerate(parts))


def _cell(text: str) -> str:
    """Text for a table cell: prose, pipes escaped (a code span's pipes need no escape)."""
    return _prose(text).replace("|", "\\|")


def _anchor(model: type[BaseModel]) -> str:
    return model.__name__.lower()


def model_table(model: type[BaseModel], path: str, level: int = 3) -> str:
    """One model: its heading (key path and class), docstring summary and fields' table."""
    where = f"`{path}`: " if path else ""
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    lines = [
        f"{'#' * level} {where}{model.__name__} {{#{_anchor(model)}}}",
        "",
        _prose(doc),
        "",
        "| key | type | default | meaning |",
        "| --- | --- | --- | --- |",
    ]
    for name, field in model.model_fields.items():
        kind = type_text(field.annotation)
        links = [f"[{m.__name__}](#{_anchor(m)})" for m in _models_in(field.annotation)]
        bounds = constraints(field)
        cells = [
            f"`{name}`",
            f"`{kind}`" + (f", {_cell(bounds)}" if bounds else ""),
            default_text(field),
            _cell(field.description or "") + (f"; see {', '.join(links)}" if links else ""),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def spec_reference() -> str:
    """Every root's models, each model once (under the root that first reaches it)."""
    seen: set[type[BaseModel]] = set()
    out = []
    for title, root, what in roots():
        out.append(f"## {title}: {root.__name__}\n\n{what[0].upper()}{what[1:]}.\n")
        for model, path in reachable(root).items():
            if model not in seen:
                seen.add(model)
                out.append(model_table(model, path))
    return "\n".join(out)


def members_yaml(module: str) -> str:
    """A module's runtime __all__ as a flow-style YAML list."""
    names = importlib.import_module(module).__all__
    return "[" + ", ".join(n for n in names if not n.startswith("__")) + "]"


def on_page_markdown(markdown: str, page, config, files) -> str:
    """mkdocs hook: fill the markers of spec-reference.md and api.md."""
    if SPEC_MARKER in markdown:
        markdown = markdown.replace(SPEC_MARKER, spec_reference())
    return MEMBERS.sub(lambda m: members_yaml(m.group(1)), markdown)
