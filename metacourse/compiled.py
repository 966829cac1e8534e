"""``torch.compile`` for the embedding networks of the metric learners (ProtoNets, matching nets).

Compiling pays where one network call is most of the work and no gradient of a gradient is taken:
the embedding f_θ(x) of ProtoNets and matching networks, in training (forward and backward) and in
evaluation (forward only). ``embedding_call(model, batched)`` is
``functional_call(model, params, (x,))`` — vmapped over a leading task dimension when
``batched`` — through ``torch.compile(dynamic=False)``: every model and every distinct
input shape (the support and the query set of an N-way K-shot task) compiles its own kernels the
first time it is seen, about 10–40 s each on a CPU, so compiling pays on long runs, not on a few
calls. The compiled function is the same mathematics as the eager one; its results differ only by
floating-point rounding (the order of the sums), measured in ``benchmarks/protonet_compile.py``
and checked in ``tests/test_compiled.py``.

MAML's second-order step is not compiled: it differentiates through gradients (double backward),
which ``torch.compile`` does not support.

If compilation fails — on a CPU, TorchInductor needs a C++ compiler (``g++``/``clang``) — the call
warns once per model and runs eagerly from then on; nothing else changes.
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Mapping

import torch
from torch import Tensor, nn
from torch.func import functional_call, vmap

__all__ = ["embedding_call", "call_embedding"]

EmbeddingFn = Callable[[Mapping[str, Tensor], Tensor], Tensor]

_failed: weakref.WeakSet[nn.Module] = weakref.WeakSet()


def _eager(model: nn.Module, params: Mapping[str, Tensor], x: Tensor, batched: bool) -> Tensor:
    if not batched:
        return functional_call(model, dict(params), (x,))
    return vmap(lambda images: functional_call(model, dict(params), (images,)),
                randomness="same")(x)


_compiled: Callable | None = None
"""One compiled function for every model: TorchDynamo guards on the model it is given (and on
``batched`` and the input shapes) and compiles again for a new one, without keeping it alive.
Made on first use (``_compiled_eager``): importing this module loads no TorchDynamo/Inductor."""


def _compiled_eager() -> Callable:
    global _compiled
    if _compiled is None:
        _compiled = torch.compile(_eager, dynamic=False)
    return _compiled


def embedding_call(model: nn.Module, batched: bool = False) -> EmbeddingFn:
    """``f(params, x)``: the model with weights ``params`` on ``x`` (``(T, n, ...)`` when
    ``batched``, one shared θ), through ``torch.compile``."""
    return lambda params, x: _compiled_eager()(model, params, x, batched)


def call_embedding(model: nn.Module, params: Mapping[str, Tensor], x: Tensor,
                   batched: bool = False) -> Tensor:
    """``embedding_call(model, batched)(params, x)``, or the eager call once compiling has failed
    for this model (with one warning that says why)."""
    if model in _failed:
        return _eager(model, params, x, batched)
    try:
        return embedding_call(model, batched)(params, x)
    except torch._dynamo.exc.TorchDynamoException as error:
        result = _eager(model, params, x, batched)  # a wrong input raises its own error here
        _failed.add(model)
        warnings.warn(f"torch.compile failed for {type(model).__name__} and the embedding runs "
                      f"eagerly from now on ({type(error).__name__}: {str(error).splitlines()[0]}). "
                      "On a CPU TorchInductor needs a C++ compiler (install g++); or pass "
                      "compile=False to silence this.", RuntimeWarning, stacklevel=2)
        return result
