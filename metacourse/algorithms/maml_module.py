"""A learn2learn-style front end to MAML: ``MAML(model, lr)``, ``.clone()``, ``.adapt(loss)``.

Code written for ``learn2learn.algorithms.MAML`` ports by changing the import::

    maml = metacourse.MAML(model, lr=0.5)            # was: l2l.algorithms.MAML(model, lr=0.5)
    learner = maml.clone()                           # θ, still attached to the graph
    learner.adapt(loss_fn(learner(x_support), y_support))   # φ = θ − α ∇θ L   (eq. 1 of maml.py)
    loss_fn(learner(x_query), y_query).backward()    # meta-gradient lands on model's parameters

Underneath, a learner is the wrapped model plus a parameter dict (``functional.forward``), and
``adapt`` is ``maml.py``'s inner step on that dict. Unlike learn2learn, nothing is deep-copied.

Buffers (e.g. BatchNorm running statistics) are shared by every clone, as in learn2learn; batch
normalisation in training mode uses the statistics of the batch, as the reference MAML does.

Lecture: lectures/04_maml.ipynb.
Differs from ``maml.adapt`` only in holding φ inside an object instead of returning it.
"""

from __future__ import annotations

from torch import Tensor, autograd, nn

from ..functional import Params, forward, params_of, sgd_step
from ..utils import check_nonnegative

__all__ = ["MAML"]


class MAML(nn.Module):
    """Wraps ``model``; ``clone()`` gives a learner whose ``adapt(loss)`` takes one inner SGD step.

    Arguments follow learn2learn 0.2.0: ``lr`` is the inner step size α, ``first_order`` drops the
    second-order terms, ``allow_unused`` lets parameters that the loss does not use stay as they are,
    ``allow_nograd`` is accepted for compatibility (parameters with ``requires_grad=False`` are never
    adapted here).
    """

    def __init__(self, model: nn.Module, lr: float, first_order: bool = False,
                 allow_unused: bool | None = None, allow_nograd: bool = False,
                 _params: Params | None = None):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"MAML wraps a torch.nn.Module, got {type(model).__name__}")
        self.module = model
        self.lr = check_nonnegative("lr", lr, "lr is MAML's inner step size α")
        self.first_order = first_order
        self.allow_unused = bool(allow_unused)
        self.allow_nograd = allow_nograd
        self._adapted = _params

    @property
    def adapted_params(self) -> Params:
        """The learner's current weights: θ for a fresh clone, φ after ``adapt``."""
        return self._adapted if self._adapted is not None else params_of(self.module)

    def forward(self, *args: Tensor) -> Tensor:
        if len(args) != 1:
            raise TypeError("metacourse.MAML learners take one input tensor: learner(x)")
        return forward(self.module, self.adapted_params, args[0])

    def clone(self) -> MAML:
        """A learner that starts from the current weights and stays differentiable with respect to θ."""
        return MAML(self.module, self.lr, self.first_order, self.allow_unused, self.allow_nograd,
                    _params=dict(self.adapted_params))

    def adapt(self, loss: Tensor, first_order: bool | None = None,
              allow_unused: bool | None = None, allow_nograd: bool | None = None) -> None:
        """One inner step on ``loss``: φ ← φ − lr ∇φ loss (in the graph unless first order)."""
        first_order = self.first_order if first_order is None else first_order
        allow_unused = self.allow_unused if allow_unused is None else allow_unused
        params = self.adapted_params
        try:
            grads = autograd.grad(loss, list(params.values()), create_graph=not first_order,
                                  retain_graph=not first_order, allow_unused=allow_unused)
        except RuntimeError as error:
            raise RuntimeError(
                f"{error}\nHint: if some parameters do not take part in this loss, create the "
                "wrapper with MAML(model, lr, allow_unused=True); if the loss was already "
                "backpropagated, compute it again from learner(x).") from None
        grads = [g if g is not None else p.new_zeros(p.shape) for g, p in zip(grads, params.values())]
        self._adapted = sgd_step(params, grads, self.lr)
