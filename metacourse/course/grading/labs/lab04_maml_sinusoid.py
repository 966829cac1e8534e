"""Probes and judges of Lab 4, MAML on sinusoids (``solutions/lab04_maml_sinusoid.ipynb``).

One :class:`~metacourse.course.grading.probes.ProbeCheck` per check cell of the solution, with its
grade_id and points:

=========================  ==============  ======  ===================================================
grade_id                   exercise        points  what the judge runs on the probe's numbers
=========================  ==============  ======  ===================================================
adapt-check                my_adapt        3       ``check_adapt`` (public, then the hidden variant)
meta-loss-check            my_meta_loss    3       ``check_meta_loss`` (public, hidden)
beats-pretraining-check    my_meta_step    2       ``check_beats_pretraining``, hidden ``check_meta_step``
=========================  ==============  ======  ===================================================

**Probe** (sandbox): rebuild the float64 networks, parameters θ and sinusoid tasks from the
request's seeds exactly as :mod:`metacourse.checks.lab04` does, call the student's function the way
that check calls it (same order, same arguments) and record, per call, plain numbers: the returned
values (φ, a meta-loss, the returned metrics), the gradient with respect to θ of the fixed scalar
the check differentiates (the query loss at φ, the meta-loss itself), θ after the call (in-place
edits) and, for the training check, the trained parameters.

**Judge** (parent): runs the lab's own check functions (:func:`metacourse.checks.lab04.check_adapt`,
...) in the grader's process on a *replay* of the student's function: a function that, called with
the same arguments, returns the recorded values, built so that autograd gives back exactly the
recorded gradients (φ_replay = φ + u·Σ⟨G, θ − θ₀⟩ with ⟨∂L/∂φ, u⟩ = 1: same value, same gradient).
The reference, the comparisons and every diagnostic message (missing ``create_graph``, in-place
update, sum instead of mean, missing ``zero_grad``, first_order not passed on, support instead of
query, ...) are therefore the lab's own, computed where no student code runs.

**No cascades**: the probe of ``my_meta_loss`` calls a correct ``my_adapt`` (the library's
``maml.adapt`` behind the student's signature) wherever the student's code calls ``my_adapt``; the
probes of ``my_meta_step`` do the same for ``my_meta_loss`` and ``my_adapt``. A bug costs the points
of the function that has it.

**Sentinels**: while ``my_adapt`` is probed, ``maml.adapt`` and everything that contains its inner
loop (``adapt_functional``, ``task_loss``, ``meta_loss``, ``meta_step``, ``MAML.adapt``, ``distributed_meta_step``, the
checks' references and the planted bug) are sentinels; for ``my_meta_loss``, everything from
``task_loss`` on; for ``my_meta_step``, ``meta_step`` and its variants.
"""

from __future__ import annotations

import contextlib
import io
import math
import secrets
from collections.abc import Callable, Mapping
from types import SimpleNamespace
from typing import Any

import numpy as np

from ..probes import LabProbes, ProbeCheck, Verdict

__all__ = ["EXERCISE_LABELS", "FORBIDDEN", "lab_probes"]

LAB = "lab04_maml_sinusoid"
EXERCISE_LABELS = {"my_adapt": "4.1", "my_meta_loss": "4.2", "my_meta_step": "4.3"}

_MAML, _CHECKS = "metacourse.algorithms.maml", "metacourse.checks.lab04"
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "my_adapt": (
        f"{_MAML}:adapt", f"{_MAML}:adapt_functional", f"{_MAML}:task_loss", f"{_MAML}:meta_loss", f"{_MAML}:meta_step",
        "metacourse.algorithms.maml_module:MAML.adapt", "metacourse.distributed:distributed_meta_step",
        f"{_CHECKS}:adapt_without_create_graph", f"{_CHECKS}:_reference_adapt", f"{_CHECKS}:_reference_gradient",
        f"{_CHECKS}:_diagnose_value", f"{_CHECKS}:_reference_meta_loss", f"{_CHECKS}:_expected_update",
    ),
    "my_meta_loss": (
        f"{_MAML}:task_loss", f"{_MAML}:meta_loss", f"{_MAML}:meta_step",
        "metacourse.distributed:distributed_meta_step", f"{_CHECKS}:_reference_meta_loss",
        f"{_CHECKS}:_expected_update",
    ),
    "my_meta_step": (f"{_MAML}:meta_step", "metacourse.distributed:distributed_meta_step",
                     f"{_CHECKS}:_expected_update"),
}
"""Exercise -> the functions (``module:qualname``) that are sentinels while it is probed."""

_FIX = {
    "my_adapt": "write the inner loop yourself",
    "my_meta_loss": "write the meta-loss yourself (call my_adapt for the inner loop)",
    "my_meta_step": "write the outer step yourself (zero_grad, my_meta_loss, backward, step)",
}

# CPU seconds per probe process, imports included. Measured for the accepted solutions (vectorised and
# loop over tasks, %%writefile module): 2.2-2.9 s for adapt-check and meta-loss-check, 4.3-5.8 s for
# beats-pretraining-check (300 meta-steps). CPU time, unlike wall time, hardly grows on a loaded machine;
# the margin covers slower code a student may write (e.g. a my_meta_step with its own loop over tasks).
_CPU = {"adapt-check": 20.0, "meta-loss-check": 20.0, "beats-pretraining-check": 90.0}

_MAX_KEYS, _MAX_ELEMENTS, _MAX_TEXT = 64, 200_000, 2000


# ---------------------------------------------------------------------------------------------
# Stand-ins: correct versions of the functions an exercise builds on


def _adapt_stand_in() -> Callable:
    from metacourse.algorithms import maml

    adapt, config = maml.adapt, maml.Config

    def my_adapt(model, params, x_support, y_support, inner_lr, inner_steps, first_order):
        """maml.adapt behind the lab's signature: the solution's inner loop on any shapes."""
        cfg = config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order, backend="loop")
        return adapt(model, params, SimpleNamespace(x_support=x_support, y_support=y_support), cfg)

    return my_adapt


def _meta_loss_stand_in() -> Callable:
    from metacourse.algorithms import maml

    meta_loss, config = maml.meta_loss, maml.Config

    def my_meta_loss(model, params, tasks, inner_lr, inner_steps, first_order):
        """maml.meta_loss behind the lab's signature."""
        cfg = config(inner_lr=inner_lr, inner_steps=inner_steps, first_order=first_order)
        return meta_loss(model, params, tasks, cfg)

    return my_meta_loss


# ---------------------------------------------------------------------------------------------
# The calls each check makes (the order of metacourse.checks.lab04's checks)

_LR = 0.02
_ADAPT_CALLS = ((0, 1, True), (1, 3, False), (2, 2, False), (0, 2, True), (1, 2, False))
"""(task, inner_steps, first_order) of check_adapt's five calls (adapt_checks, steps (3, 2, 2))."""
_META_LOSS_CALLS = ((1, False), (2, True), (2, False), (1, True))
"""(inner_steps, first_order) of check_meta_loss's four calls."""


def _parts(request: Mapping) -> list[tuple[str, Mapping]]:
    return [(name, request[name]) for name in ("public", "hidden") if name in request]


class _Unreadable(Exception):
    """What a student's function returned cannot be recorded as numbers (the message says why)."""


class _Recorder:
    """Collects the plain numbers of a probe: arrays by key, one small dict per call."""

    def __init__(self) -> None:
        self.data: dict[str, np.ndarray] = {}
        self.calls: list[dict] = []

    def new(self, tag: str) -> tuple[int, dict]:
        entry: dict[str, Any] = {"tag": tag, "error": None}
        self.calls.append(entry)
        return len(self.calls) - 1, entry

    def array(self, key: str, value: Any) -> None:
        import torch

        if isinstance(value, torch.Tensor):
            value = torch.Tensor.detach(value).cpu()
            if value.is_complex():
                raise TypeError("a complex tensor")
            value = value.to(torch.float64).numpy()
        array = np.asarray(value, dtype=np.float64)
        if array.size > _MAX_ELEMENTS:
            raise _Unreadable(f"a tensor of {array.size} elements, far more than the parameters hold")
        self.data[key] = array


def _guarded(entry: dict, call: Callable[[], Any]) -> tuple[bool, Any]:
    """Run one call of student code; on an exception record its description and return (False, None)."""
    from ..runner import CpuLimitExceeded, describe_error
    from ..sentinels import SentinelError

    try:
        return True, call()
    except (SentinelError, CpuLimitExceeded):
        raise
    except BaseException as error:  # noqa: BLE001 - SystemExit from student code is a failed call too
        entry["error"] = describe_error(error)
        return False, None


def _type_name(value: Any) -> str:
    return type(value).__name__[:100]


def _record_output(rec: _Recorder, index: int, entry: dict, value: Any) -> None:
    """Record what a student's function returned: a dict of tensors, a tensor, None, or another type."""
    import torch

    entry["type"] = _type_name(value)
    if value is None:
        entry["kind"] = "none"
    elif isinstance(value, dict):
        entry["kind"] = "dict"
        keys = list(dict.keys(value))[: _MAX_KEYS + 1]
        if len(keys) > _MAX_KEYS:
            raise _Unreadable(f"a dict of more than {_MAX_KEYS} entries")
        entry["keys"], entry["bad"] = [str(k)[:100] for k in keys], {}
        for j, key in enumerate(keys):
            item = dict.__getitem__(value, key)
            try:
                rec.array(f"c{index}.out.{j}", item)
            except (TypeError, ValueError):
                entry["bad"][str(j)] = _type_name(item)
    elif isinstance(value, torch.Tensor):
        entry["kind"] = "tensor"
        rec.array(f"c{index}.out", value)
    else:
        entry["kind"] = "other"


def _record_grad(rec: _Recorder, index: int, entry: dict, scalar: Callable[[], Any], theta: Mapping) -> None:
    """Record d(scalar)/dθ: ``grad`` is "ok" (arrays for the parameters it depends on), "none" (no
    graph at all) or the error computing the scalar raised."""
    import torch

    ok, loss = _guarded(entry, scalar)
    if not ok:
        entry["grad"], entry["error"] = entry["error"], None
        return
    if not isinstance(loss, torch.Tensor) or loss.dim() != 0 or not loss.requires_grad:
        entry["grad"] = "none"
        return
    ok, grads = _guarded(entry, lambda: torch.autograd.grad(loss, list(theta.values()), allow_unused=True))
    if not ok:
        entry["grad"], entry["error"] = entry["error"], None
        return
    entry["grad"] = "ok"
    for j, g in enumerate(grads):
        if g is not None:
            rec.array(f"c{index}.grad.{j}", g)


def _record_params(rec: _Recorder, index: int, entry: dict, passed: dict, theta: Mapping, ids: dict) -> None:
    """θ after the call (in-place edits), and whether the caller's dict had entries replaced."""
    entry["replaced"] = {k: id(v) for k, v in dict.items(passed)} != ids
    for j, tensor in enumerate(theta.values()):
        rec.array(f"c{index}.after.{j}", tensor)


def _probe_function_calls(rec: _Recorder, tag: str, fn: Callable, theta: Mapping, args: tuple,
                          scalar: Callable[[Any], Any]) -> None:
    """One call ``fn(model, dict(θ), *args)`` of an inner-loop or meta-loss function, recorded."""
    model = args[0]
    index, entry = rec.new(tag)
    passed = dict(theta)
    ids = {k: id(v) for k, v in passed.items()}
    ok, value = _guarded(entry, lambda: fn(model, passed, *args[1:]))
    if ok:
        try:
            _record_output(rec, index, entry, value)
        except Exception as error:  # noqa: BLE001 - an object whose methods raise, a huge tensor, ...
            reason = str(error) if isinstance(error, _Unreadable) else "an object that cannot be read as numbers"
            entry["error"] = f"the function returned {reason}"
        else:
            _record_grad(rec, index, entry, lambda: scalar(value), theta)
    _record_params(rec, index, entry, passed, theta, ids)


def _probe_adapt(functions: Mapping[str, Callable], request: Mapping) -> tuple[dict, list[dict]]:
    from metacourse.checks import lab04

    rec = _Recorder()
    fn = functions["my_adapt"]
    for part, args in _parts(request):
        model, theta = lab04._model_and_params(int(args["seed"]), tuple(args["hidden"]))
        tasks = lab04._tasks(int(args["seed"]), 3)
        for n, (task_index, steps, first_order) in enumerate(_ADAPT_CALLS):
            task = tasks[task_index]
            _probe_function_calls(
                rec, f"{part}:{n}", fn, theta, (model, task.x_support, task.y_support, _LR, steps, first_order),
                lambda phi, task=task, model=model: lab04._query_loss(model, phi, task))
    return rec.data, rec.calls


def _probe_meta_loss(functions: Mapping[str, Callable], request: Mapping) -> tuple[dict, list[dict]]:
    from metacourse.checks import lab04

    rec = _Recorder()
    fn = functions["my_meta_loss"]
    for part, args in _parts(request):
        model, theta = lab04._model_and_params(int(args["seed"]) + 1, tuple(args["hidden"]))
        tasks = lab04._tasks(int(args["seed"]) + 1, 4)
        for n, (steps, first_order) in enumerate(_META_LOSS_CALLS):
            _probe_function_calls(rec, f"{part}:{n}", fn, theta, (model, tasks, _LR, steps, first_order),
                                  lambda value: value)
    return rec.data, rec.calls


def _record_step(rec: _Recorder, tag: str, run: Callable[..., Any], *args: Any) -> None:
    """One call of my_meta_step (or a training run): the returned metrics and θ afterwards."""
    index, entry = rec.new(tag)
    ok, outcome = _guarded(entry, lambda: run(*args))
    if not ok:
        return
    metrics, after = outcome
    if isinstance(metrics, dict) and type(dict.get(metrics, "meta_loss")) is float:
        entry["meta_loss"] = float(dict.get(metrics, "meta_loss"))
    else:
        try:
            entry["repr"] = repr(metrics)[:300]
        except BaseException:  # noqa: BLE001 - a repr that raises
            entry["repr"] = f"<{_type_name(metrics)}>"
    for j, tensor in enumerate(after.values()):
        rec.array(f"c{index}.after.{j}", tensor)


def _probe_meta_step(functions: Mapping[str, Callable], request: Mapping) -> tuple[dict, list[dict]]:
    from metacourse.checks import lab04

    rec = _Recorder()
    fn = functions["my_meta_step"]

    def one_step(seed, hidden, steps, first_order):
        _, _, _, metrics, after = lab04._meta_step_outcome(fn, seed, hidden, _LR, steps, first_order)
        return metrics, after

    def training(seed, meta_steps):
        model = lab04._train(lambda m, opt: lambda tasks: fn(m, opt, tasks, 0.01, 1, False), seed, meta_steps)
        return {"meta_loss": 0.0}, {name: p for name, p in model.named_parameters()}

    for part, args in _parts(request):
        seed, hidden = int(args["seed"]), tuple(args.get("hidden", (40, 40)))
        steps, first_order = int(args.get("inner_steps", 1)), bool(args.get("first_order", False))
        for n in range(2):  # _meta_step_checks: the metrics, then the update, each from a fresh θ
            _record_step(rec, f"{part}:{n}", one_step, seed, hidden, steps, first_order)
        if "meta_steps" in args:
            _record_step(rec, f"{part}:train", training, int(args["train_seed"]), int(args["meta_steps"]))
    return rec.data, rec.calls


# ---------------------------------------------------------------------------------------------
# Judges: the lab's checks on a replay of the student's function


class _Malformed(BaseException):
    """The probe's data do not have the shape the judge expects."""


class _OutOfStep(BaseException):
    """The lab's check called the replay differently from the probe: the two must be updated together."""


class _Replay:
    """Serves the recorded calls, in order, to the lab's own check functions."""

    def __init__(self, calls: list[dict], data: Mapping[str, Any]):
        self.calls, self.data, self.next = calls, data, 0

    def pop(self, expect: str | None = None) -> tuple[int, dict]:
        if self.next >= len(self.calls):
            raise _Malformed(f"it recorded {len(self.calls)} calls, fewer than the check makes")
        index, entry = self.next, self.calls[self.next]
        self.next += 1
        if expect is not None and entry.get("tag") != expect:
            raise _Malformed(f"call {index} is {str(entry.get('tag'))[:40]!r}, not {expect!r}")
        return index, entry

    def array(self, key: str, shape: tuple | None = None) -> np.ndarray | None:
        if key not in self.data:
            return None
        array = self.data[key]
        if not isinstance(array, np.ndarray) or array.dtype != np.float64 or array.size > _MAX_ELEMENTS:
            raise _Malformed(f"{key} is not a float64 array of a sensible size")
        if shape is not None and array.shape != tuple(shape):
            raise _Malformed(f"{key} has shape {array.shape}, not {tuple(shape)}")
        return array


def _raise_recorded(entry: Mapping) -> None:
    if entry.get("error"):
        raise AssertionError(str(entry["error"])[:_MAX_TEXT])


def _named_object(name: str) -> Any:
    return type(str(name)[:100] or "object", (), {})()


def _apply_params(replay: _Replay, index: int, entry: Mapping, passed: dict, theta: Mapping) -> None:
    """Make the caller's tensors and dict what the student's call left them (in-place edits)."""
    import torch

    for j, tensor in enumerate(theta.values()):
        after = replay.array(f"c{index}.after.{j}", tuple(tensor.shape))
        if after is None:
            raise _Malformed(f"call {index}: θ after the call is missing")
        value = torch.from_numpy(after).to(tensor.dtype)
        if not torch.equal(value, tensor.detach()):
            with torch.no_grad():
                tensor.copy_(value)
    if entry.get("replaced") and passed:
        name = next(iter(passed))
        passed[name] = passed[name].detach().clone()


def _linear_term(replay: _Replay, index: int, entry: Mapping, theta: Mapping):
    """s(θ) = Σ⟨G, θ − θ₀⟩: zero at θ₀, gradient G (the recorded one); None when there was no graph."""
    import torch

    if entry.get("grad") != "ok":
        return None
    total = None
    for j, tensor in enumerate(theta.values()):
        grad = replay.array(f"c{index}.grad.{j}", tuple(tensor.shape))
        if grad is None:
            continue
        term = (torch.from_numpy(grad) * (tensor - tensor.detach())).sum()
        total = term if total is None else total + term
    return total


def _replayed_output(replay: _Replay, index: int, entry: Mapping, scalar: Callable[[Any], Any],
                     theta: Mapping) -> Any:
    """The value the student's function returned, carrying the recorded gradient with respect to θ."""
    import torch

    kind = entry.get("kind")
    if kind == "none":
        return None
    if kind == "other":
        return _named_object(entry.get("type", "object"))
    if kind == "tensor":
        value = replay.array(f"c{index}.out")
        if value is None:
            raise _Malformed(f"call {index}: the returned tensor is missing")
        tensor = torch.from_numpy(value)
        term = _linear_term(replay, index, entry, theta)
        return tensor + term if term is not None and tensor.dim() == 0 else tensor
    if kind != "dict":
        raise _Malformed(f"call {index}: unknown kind {kind!r}")
    keys, bad = entry.get("keys"), entry.get("bad", {})
    if not isinstance(keys, list) or len(keys) > _MAX_KEYS or not isinstance(bad, dict):
        raise _Malformed(f"call {index}: malformed keys")
    phi: dict[str, Any] = {}
    for j, key in enumerate(keys):
        value = replay.array(f"c{index}.out.{j}")
        phi[str(key)] = torch.from_numpy(value) if value is not None else _named_object(bad.get(str(j), "object"))
    term = _linear_term(replay, index, entry, theta)
    if term is None or not all(isinstance(v, torch.Tensor) for v in phi.values()):
        return phi
    leaves = {k: v.clone().requires_grad_() for k, v in phi.items()}
    try:
        loss = scalar(leaves)
        slopes = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
    except Exception:  # noqa: BLE001 - the check itself will meet the same error
        return phi
    slopes = [torch.zeros_like(v) if s is None else s for v, s in zip(leaves.values(), slopes)]
    norm = sum(float((s * s).sum()) for s in slopes)
    scale = 1.0 / norm if norm > 0 and math.isfinite(norm) else 0.0
    return {k: v + (s * scale) * term for (k, v), s in zip(phi.items(), slopes)}


def _function_replay(replay: _Replay, part: str, plan: list, scalar_of: Callable) -> Callable:
    """A stand-in for my_adapt / my_meta_loss that returns, call by call, what the student's returned.

    ``plan[n]`` is (task or None, inner_lr, inner_steps, first_order) of the probe's call n;
    ``scalar_of(plan[n], model)`` is the scalar whose gradient the probe recorded."""
    import torch

    calls = iter(range(len(plan)))

    def replayed(model, params, *args):
        n = next(calls, None)
        if n is None:
            raise _OutOfStep(f"the check called the function more often than the probe ({len(plan)} calls)")
        task = plan[n][0]
        if tuple(args[-3:]) != tuple(plan[n][1:]) or (task is not None and not torch.equal(args[0], task.x_support)):
            raise _OutOfStep(f"call {n} of {part}: not the arguments the probe used")
        index, entry = replay.pop(f"{part}:{n}")
        theta = dict(params)
        output = None
        if not entry.get("error"):
            output = _replayed_output(replay, index, entry, scalar_of(plan[n], model), theta)
        _apply_params(replay, index, entry, params, theta)
        _raise_recorded(entry)
        return output

    return replayed


class _Repr:
    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _step_replay(replay: _Replay, part: str) -> Callable:
    """A stand-in for my_meta_step: leaves the model's θ where the student's call left it."""
    import torch

    state = {"n": 0, "trained": None}

    def replayed(model, optimizer, tasks, inner_lr, inner_steps, first_order):
        if state["trained"] is not None:  # the later calls of a training run
            return {"meta_loss": 0.0}
        tag = f"{part}:{state['n']}" if state["n"] < 2 else f"{part}:train"
        state["n"] += 1
        index, entry = replay.pop(tag)
        _raise_recorded(entry)
        with torch.no_grad():
            for j, p in enumerate(model.parameters()):
                after = replay.array(f"c{index}.after.{j}", tuple(p.shape))
                if after is None:
                    raise _Malformed(f"call {index}: θ after the step is missing")
                p.copy_(torch.from_numpy(after).to(p.dtype))
        if tag.endswith(":train"):
            state["trained"] = True
            return {"meta_loss": 0.0}
        if "meta_loss" in entry:
            return {"meta_loss": float(entry["meta_loss"])}
        return _Repr(str(entry.get("repr", "None"))[:300])

    return replayed


def _run_part(run: Callable[[], None]) -> tuple[bool, str]:
    """Run one of the lab's check functions; (passed, its verdict line or failure report)."""
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            run()
    except AssertionError as report:
        return False, str(report)
    return True, out.getvalue().strip()


def _validate_meta(meta: Mapping) -> list[dict]:
    calls = meta.get("calls")
    if not isinstance(calls, list) or len(calls) > 32 or not all(isinstance(c, dict) for c in calls):
        raise _Malformed("meta.json has no list of calls")
    for call in calls:
        for key, value in call.items():
            if isinstance(value, str) and len(value) > 2 * _MAX_TEXT:
                raise _Malformed(f"meta.json: {key} is too long")
    return calls


def _judge(check: ProbeCheck, request: dict, data: Mapping[str, Any], meta: Mapping[str, Any]) -> Verdict:
    from metacourse.checks import lab04

    status = meta.get("status")
    if status == "sentinel":
        name = str(meta.get("sentinel") or "the library's reference")[:200]
        return Verdict(False, 0.0, f"`{check.exercise}` calls `{name}`; {_FIX[check.exercise]}")
    if status != "ok":
        message = str(meta.get("message") or "")[:_MAX_TEXT] or "no result"
        return Verdict(False, 0.0, f"the probe of {check.exercise} did not finish: {message}")
    try:
        replay = _Replay(_validate_meta(meta), data)
        lines, passed = [], True
        for part, args in _parts(request):
            ok, text = _run_part(_part_runner(check, lab04, replay, part, args))
            passed &= ok
            lines.append(text)
        if replay.next != len(replay.calls):
            raise _Malformed(f"it recorded {len(replay.calls)} calls, the check makes {replay.next}")
    except _Malformed as error:
        return Verdict(False, 0.0, f"the probe of {check.exercise} returned malformed data ({error})")
    except _OutOfStep as error:
        raise RuntimeError(f"{LAB} probe and metacourse.checks.lab04 are out of step: {error}") from None
    return Verdict(passed, check.points if passed else 0.0, "\n".join(lines))


def _part_runner(check: ProbeCheck, lab04: Any, replay: _Replay, part: str, args: Mapping) -> Callable[[], None]:
    label = check.label if part == "public" else f"{check.label} (hidden)"
    seed, hidden = int(args["seed"]), tuple(args.get("hidden", (40, 40)))
    if check.exercise == "my_adapt":
        tasks = lab04._tasks(seed, 3)
        plan = [(tasks[t], _LR, s, fo) for t, s, fo in _ADAPT_CALLS]
        fn = _function_replay(replay, part, plan,
                              lambda call, model: lambda phi: lab04._query_loss(model, phi, call[0]))
        return lambda: lab04.check_adapt(fn, seed=seed, hidden=hidden, label=label)
    if check.exercise == "my_meta_loss":
        plan = [(None, _LR, s, fo) for s, fo in _META_LOSS_CALLS]
        fn = _function_replay(replay, part, plan, lambda call, model: lambda value: value)
        return lambda: lab04.check_meta_loss(fn, seed=seed, hidden=hidden, label=label)
    fn = _step_replay(replay, part)
    if "meta_steps" in args:
        def beats() -> None:
            checks = lab04._meta_step_checks(fn, seed, hidden, 1, False)
            checks.append((f"after {args['meta_steps']} meta-steps, one step on 5 points beats pretraining",
                           lambda: lab04._beats_pretraining(fn, int(args["train_seed"]), int(args["meta_steps"]),
                                                            float(args["ratio"]))))
            lab04.run_checks(label, checks)
        return beats
    return lambda: lab04.check_meta_step(fn, seed=seed, hidden=hidden, inner_steps=int(args["inner_steps"]),
                                         first_order=bool(args["first_order"]), label=label)


# ---------------------------------------------------------------------------------------------
# The lab


def _seed(fixed: int | None, offset: int) -> int:
    return fixed + offset if fixed is not None else secrets.randbelow(2**31 - 4096)


def _request_adapt(seed: int | None) -> dict:
    return {"public": {"seed": _seed(seed, 0), "hidden": [40, 40]},
            "hidden": {"seed": _seed(seed, 2017), "hidden": [20, 20, 20]}}


def _request_beats(seed: int | None) -> dict:
    return {"public": {"seed": _seed(seed, 0), "hidden": [40, 40], "train_seed": 0, "meta_steps": 300,
                       "ratio": 0.95},
            "hidden": {"seed": _seed(seed, 2017), "hidden": [20, 20, 20], "inner_steps": 2, "first_order": True}}


def lab_probes(seed: int | None = None) -> LabProbes:
    """The probes of Lab 4 (sinusoids); ``seed`` fixes their inputs (None: fresh seeds every request)."""
    common = {"make_request": None, "run_judge": _judge, "seed": seed}
    checks = (
        ProbeCheck("adapt-check", "my_adapt", _CPU["adapt-check"], 3.0, "lab04/adapt", FORBIDDEN["my_adapt"],
                   {}, **dict(common, make_request=_request_adapt), run_probe=_probe_adapt),
        ProbeCheck("meta-loss-check", "my_meta_loss", _CPU["meta-loss-check"], 3.0, "lab04/meta_loss",
                   FORBIDDEN["my_meta_loss"], {"my_adapt": _adapt_stand_in},
                   **dict(common, make_request=_request_adapt), run_probe=_probe_meta_loss),
        ProbeCheck("beats-pretraining-check", "my_meta_step", _CPU["beats-pretraining-check"], 2.0,
                   "lab04/beats_pretraining", FORBIDDEN["my_meta_step"],
                   {"my_meta_loss": _meta_loss_stand_in, "my_adapt": _adapt_stand_in},
                   **dict(common, make_request=_request_beats), run_probe=_probe_meta_step),
    )
    return LabProbes(LAB, tuple(EXERCISE_LABELS), checks)
