"""Errors that users see: each names the offending field and the fix."""

from __future__ import annotations


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


class TaskFailed(Exception):
    """A reconstruction failed for a reason in its data or parameters: recorded, not retried."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)
