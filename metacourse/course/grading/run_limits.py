"""The limits of one notebook's run: the one type the grader (:mod:`metacourse.course.grading`) fills
from its options and the executor (:mod:`.executor`, inside the sandbox) reads back from its request.

Standard library only: the executor imports it before anything else.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

__all__ = ["NotebookLimits"]


@dataclass(frozen=True)
class NotebookLimits:
    """The limits of one notebook's run; a subclass (the grader's options) adds settings of its own."""

    cell_timeout: float
    """Seconds a cell may run before it is interrupted."""
    total_timeout: float
    """Seconds the whole run may take."""
    check_timeout: float
    """Seconds a legacy check cell may take."""
    max_cell_output: int
    """Characters of output kept per cell."""
    max_output: int
    """Characters of output kept per notebook."""
    threads: int
    """Threads the kernel's numerical libraries may use."""

    def as_request(self) -> dict:
        """These limits alone (a subclass's own fields left out), as the executor's request carries them:
        ``NotebookLimits(**request["limits"])`` reads them back."""
        return {field.name: getattr(self, field.name) for field in fields(NotebookLimits)}
