"""Probes and judges: a check split in two, so that no verdict is decided where student code runs.

A check cell of a solution notebook (``check_adapt(my_adapt)``, worth its nbgrader points) becomes
one :class:`ProbeCheck`:

- ``request()`` (in the grader, the *parent*): the inputs, as plain JSON — seeds from which both
  sides rebuild the same float64 networks, parameters and tasks.
- the **probe** (``python -m metacourse.course.grading.runner``, inside the sandbox): loads the
  student's code from the notebook's source, makes the library's answer to the exercise a sentinel
  (:mod:`.sentinels`), calls the student's function on those inputs and writes back numbers only
  (``meta.json`` and ``data.npz``).
- ``judge(request, data, meta)`` (in the parent): computes the reference with the library, compares
  and writes the message a student reads. A probe that did not finish, or wrote anything odd, fails.

The functions an exercise builds on are replaced in its probe by correct ones (the probe of
``my_meta_step`` calls the library's meta-loss where the notebook calls ``my_meta_loss``), so a bug
costs the points of the function that has it and no others.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LabProbes", "ProbeCheck", "Verdict", "get_lab_probes", "load_student_request", "LABS"]

LABS = ("lab04_maml_sinusoid",)
"""Labs graded by probes; the others still take the legacy path of :mod:`metacourse.grading`."""


@dataclass(frozen=True)
class Verdict:
    """The grade of one check cell for one student."""

    passed: bool
    score: float
    """Points earned for this check (0 or the cell's points)."""
    message: str
    """One student-facing message; names the student's function at fault and the fix."""


@dataclass(frozen=True)
class ProbeCheck:
    """One check cell of a lab, split into a probe (sandbox) and a judge (parent)."""

    grade_id: str
    """``metadata.nbgrader.grade_id`` of the solution's check cell it replaces."""
    exercise: str
    """The student function under test, e.g. ``"my_adapt"``."""
    cpu_seconds: float
    """CPU-time limit of the probe process (RLIMIT_CPU), imports included; not wall-clock."""
    points: float
    """The check cell's ``metadata.nbgrader.points``."""
    label: str
    """What the messages call the check, e.g. ``"lab04/adapt"``."""
    forbidden: tuple[str, ...]
    """Functions (``"module:qualname"``) that are sentinels while the probe runs."""
    stand_ins: Mapping[str, Callable[[], Callable]] = field(default_factory=dict)
    """Exercise name -> factory of a correct version, bound in the student's namespace in place of
    the student's own while this check runs (the exercises it builds on)."""
    make_request: Callable[[int | None], dict] | None = None
    run_probe: Callable[..., tuple[dict, list[dict]]] | None = None
    run_judge: Callable[..., Verdict] | None = None
    seed: int | None = None
    """Fixed seed for the inputs (tests, regrades); None draws fresh seeds at every request."""

    def request(self) -> dict:
        """Plain JSON-able inputs, generated in the parent."""
        assert self.make_request is not None
        return self.make_request(self.seed)

    def overlays(self) -> dict[str, str]:
        """Host path of each package file holding a forbidden function -> its rewritten source."""
        from .sentinels import overlays

        return overlays(self.forbidden)

    def probe(self, functions: Mapping[str, Callable], request: dict) -> tuple[dict, list[dict]]:
        """Inside the sandbox: call the student's function; return (arrays by name, one dict per call)."""
        assert self.run_probe is not None
        return self.run_probe(functions, request)

    def judge(self, request: dict, data: Mapping[str, Any], meta: Mapping[str, Any]) -> Verdict:
        """In the parent: the verdict from the probe's plain data (``data``: arrays from ``data.npz``
        read with ``allow_pickle=False``; ``meta``: ``meta.json``)."""
        assert self.run_judge is not None
        return self.run_judge(self, request, data, meta)


@dataclass(frozen=True)
class LabProbes:
    """Every check of a lab as probes."""

    lab: str
    """The solution notebook's stem, e.g. ``"lab04_maml_sinusoid"``."""
    exercises: tuple[str, ...]
    checks: tuple[ProbeCheck, ...]

    def check(self, grade_id: str) -> ProbeCheck:
        for check in self.checks:
            if check.grade_id == grade_id:
                return check
        known = ", ".join(c.grade_id for c in self.checks)
        raise KeyError(f"{self.lab} has no check {grade_id!r} (checks: {known})")


def get_lab_probes(lab: str, seed: int | None = None) -> LabProbes | None:
    """The probes of ``lab`` (a solution stem), or None when the lab has none yet (legacy path).

    ``seed`` fixes the inputs of every check (None: fresh seeds at every ``request()``)."""
    if lab not in LABS:
        return None
    module = importlib.import_module(f"{__package__}.labs.{lab}")
    return module.lab_probes(seed)


def load_student_request(lab: str, grade_id: str, cells: list[dict], request: dict) -> dict:
    """The ``REQUEST.json`` the runner reads: lab, check, the student's code cells (index, source as
    read from the submission, executor status, nbgrader metadata) and the check's inputs."""
    return {"lab": lab, "grade_id": grade_id, "cells": list(cells), "request": request}
