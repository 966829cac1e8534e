"""Run a student's function after the exercises, or the library's reference while it is a stub;
and check one exercise with the reference in place of the earlier exercises it calls.

The training and evaluation cells that follow a lab's exercises call the student's functions, so
the exercises connect end to end. While an exercise is still the stub the lab was handed out with
(it raises ``NotImplementedError``), the cell falls back to the named reference instead of
stopping, and says so::

    imagine = yours_or_reference(my_imagine, reference_imagine, "my_imagine", "lab07.reference_imagine")
    # prints, at the first call, "my_imagine: running yours" or
    # "my_imagine: not implemented yet (Exercise 7.3), running the reference lab07.reference_imagine"
"""

from __future__ import annotations

from collections.abc import Callable
from contextlib import contextmanager
from typing import Any

__all__ = ["builds_on", "yours_or_reference"]


def yours_or_reference(yours: Callable, reference: Callable, name: str, reference_name: str) -> Callable:
    """A function that calls ``yours`` and, when ``yours`` raises ``NotImplementedError`` (a stub),
    calls ``reference`` with the same arguments. The first call prints which one ran; any other
    error of ``yours`` is raised as it is (a bug is not hidden by the fallback)."""
    announced = False

    def call(*args: Any, **kwargs: Any) -> Any:
        nonlocal announced
        try:
            result, which = yours(*args, **kwargs), "running yours"
        except NotImplementedError as stub:
            exercise = f" ({str(stub).split(':')[0]})" if str(stub) else ""
            result = reference(*args, **kwargs)
            which = f"not implemented yet{exercise}, running the reference {reference_name}"
        if not announced:
            print(f"{name}: {which}", flush=True)
            announced = True
        return result

    call.__name__ = getattr(yours, "__name__", name)
    return call


@contextmanager
def builds_on(function: Callable, **references: Callable):
    """While the block runs, the names in ``references`` (e.g. ``my_inner_loss=...``) that
    ``function``'s module namespace defines — a notebook's earlier exercises — are the reference
    instead, so a check of one exercise does not fail for a bug in an earlier one. Restored after."""
    namespace = getattr(function, "__globals__", {})
    saved = {name: namespace[name] for name in references if name in namespace}
    namespace.update({name: references[name] for name in saved})
    try:
        yield
    finally:
        namespace.update(saved)
