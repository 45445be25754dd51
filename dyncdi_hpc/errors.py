"""Errors: user-facing ones that name the offending field and the fix, and the plain typed
errors of the physics layer, which name only their own parameter.

Physics raises ParameterError subclasses (ValueErrors, and DyncdiErrors naming the parameter)
that know nothing of sweep files; the edge that read the value (a config model, inputs.resolve)
attaches the field's path with `field_path`, so the user sees
`datasets.xtal.simulate.geometry.hkl: ...`.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


class DyncdiError(Exception):
    """A user-facing error, printed by the CLI as one line without a traceback."""

    def __init__(self, field: str, problem: str, fix: str | None = None) -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f" (fix: {fix})"
        super().__init__(message)

    def __reduce__(self):
        # rebuilt from its parts when it crosses processes (a Dask worker's error)
        return (type(self), (self.field, self.problem, self.fix))


class TaskFailed(Exception):
    """A reconstruction failed for a reason in its data or parameters: recorded, not retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class ParameterError(DyncdiError, ValueError):
    """A physically invalid parameter, raised by the physics layer; its field is the
    parameter's name relative to the call (e.g. 'energy_kev' or 'reflections[1].hkl'), without
    the path of the file the value came from, which `field_path` attaches at the edge."""

    def at(self, prefix: str) -> ParameterError:
        """The same error with the field prefix.field (prefix '' leaves it unchanged)."""
        field = ".".join(p for p in (prefix, self.field) if p)
        return type(self)(field, self.problem, self.fix)


class UnknownMaterialError(ParameterError):
    """A material (or element) the package has no structure or form factors for."""


class ForbiddenReflectionError(ParameterError):
    """A null reflection, or one extinct by the crystal's symmetry."""


class BraggCutoffError(ParameterError):
    """An energy at which the reflection cannot diffract (or outside the tables' range)."""


@contextmanager
def field_path(prefix: str) -> Iterator[None]:
    """Re-raise a ParameterError of the block with its field under prefix (prefix.field)."""
    try:
        yield
    except ParameterError as exc:
        raise exc.at(prefix) from None
