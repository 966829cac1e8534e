"""A learn2learn-style front end to MAML: ``MAML(model, lr)``, ``.clone()``, ``.adapt(loss)``.

Code written for ``learn2learn.algorithms.MAML`` ports by changing the import::

    maml = metacourse.MAML(model, lr=0.5)            # was: l2l.algorithms.MAML(model, lr=0.5)
    learner = maml.clone()                           # θ, still attached to the graph
    learner.adapt(loss_fn(learner(x_support), y_support))   # φ = θ − α ∇θ L   (eq. 1 of maml.py)
    loss_fn(learner(x_query), y_query).backward()    # meta-gradient lands on model's parameters

As in learn2learn 0.2.0, ``clone()`` copies the *structure* of the model (every submodule, with
its own ``training`` flag) and puts differentiable copies of θ in place of its parameters;
``adapt`` swaps in φ. So after ``adapt`` everything that reads the learner's weights sees φ:
``learner(x)``, ``learner.module(x)``, ``learner.module[0](x)``, ``learner.parameters()`` and
``learner.state_dict()``; and ``learner.eval()`` switches the learner's copy only, never the
wrapped model or the other clones. The update is ``maml.py``'s inner step, φ = θ − α g.

Buffers (e.g. BatchNorm running statistics) are shared by every clone, as in learn2learn; batch
normalisation in training mode uses the statistics of the batch, as the reference MAML does.

Lecture: lectures/04_maml.ipynb.
Differs from ``maml.adapt`` only in holding φ inside a module instead of returning a dict.
"""

from __future__ import annotations

from torch import Tensor, autograd, nn

from ..functional import Params
from ..utils import check_nonnegative

__all__ = ["MAML", "clone_module"]


def clone_module(module: nn.Module, tensors: dict[int, Tensor] | None = None,
                 modules: dict[int, nn.Module] | None = None) -> nn.Module:
    """A copy of ``module``'s structure whose parameters are ``p.clone()`` (differentiable
    copies: gradients of the copy reach ``p``). Buffers are shared; tied parameters and shared
    submodules stay tied and shared in the copy."""
    tensors = {} if tensors is None else tensors
    modules = {} if modules is None else modules
    if id(module) in modules:
        return modules[id(module)]
    copy = module.__new__(type(module))
    copy.__dict__ = module.__dict__.copy()
    modules[id(module)] = copy
    copy._parameters = type(module._parameters)(
        (key, None if p is None else tensors.setdefault(id(p), p.clone())) for key, p in module._parameters.items())
    copy._buffers = module._buffers.copy()
    copy._modules = type(module._modules)(
        (key, None if m is None else clone_module(m, tensors, modules)) for key, m in module._modules.items())
    _refresh_flat_weights(copy)
    return copy


def _refresh_flat_weights(module: nn.Module) -> None:
    """Recurrent layers keep a list of their weights beside ``_parameters``; point it at the new ones."""
    if isinstance(module, nn.RNNBase):
        module._init_flat_weights()


def _replace_parameters(module: nn.Module, new: dict[int, Tensor]) -> None:
    """Put ``new[id(p)]`` in place of every parameter ``p`` of ``module`` that has a replacement."""
    for sub in module.modules():
        for key, p in sub._parameters.items():
            if p is not None and id(p) in new:
                sub._parameters[key] = new[id(p)]
        _refresh_flat_weights(sub)


class MAML(nn.Module):
    """Wraps ``model``; ``clone()`` gives a learner whose ``adapt(loss)`` takes one inner SGD step.

    Arguments follow learn2learn 0.2.0: ``lr`` is the inner step size α, ``first_order`` drops the
    second-order terms, ``allow_unused`` lets parameters that the loss does not use stay as they are
    (default: ``allow_nograd``), ``allow_nograd`` adapts only the parameters with
    ``requires_grad=True`` and leaves the frozen ones as they are (otherwise a frozen parameter is
    an error). ``clone`` and ``adapt`` take the same three flags, defaulting to the wrapper's.
    """

    def __init__(self, model: nn.Module, lr: float, first_order: bool = False,
                 allow_unused: bool | None = None, allow_nograd: bool = False):
        super().__init__()
        if not isinstance(model, nn.Module):
            raise TypeError(f"MAML wraps a torch.nn.Module, got {type(model).__name__}")
        self.module = model
        self.lr = check_nonnegative("lr", lr, "lr is MAML's inner step size α")
        self.first_order = bool(first_order)
        self.allow_nograd = bool(allow_nograd)
        self.allow_unused = self.allow_nograd if allow_unused is None else bool(allow_unused)

    def __getattr__(self, name: str):
        try:
            return super().__getattr__(name)
        except AttributeError:  # as learn2learn: the wrapped model's attributes, e.g. learner.head
            wrapped = self.__dict__.get("_modules", {}).get("module")
            if wrapped is None:
                raise
            return getattr(wrapped, name)

    @property
    def adapted_params(self) -> Params:
        """The learner's current weights as a name → tensor dict: θ for a fresh clone, φ after ``adapt``."""
        return dict(self.module.named_parameters())

    def forward(self, *args, **kwargs):
        return self.module(*args, **kwargs)

    def clone(self, first_order: bool | None = None, allow_unused: bool | None = None,
              allow_nograd: bool | None = None) -> MAML:
        """A learner that starts from the current weights and stays differentiable with respect to
        them; flags not given are this wrapper's."""
        return MAML(clone_module(self.module), self.lr,
                    self.first_order if first_order is None else first_order,
                    self.allow_unused if allow_unused is None else allow_unused,
                    self.allow_nograd if allow_nograd is None else allow_nograd)

    def adapt(self, loss: Tensor, first_order: bool | None = None,
              allow_unused: bool | None = None, allow_nograd: bool | None = None) -> None:
        """One inner step on ``loss``: φ ← φ − lr ∇φ loss (in the graph unless first order)."""
        first_order = self.first_order if first_order is None else first_order
        allow_unused = self.allow_unused if allow_unused is None else allow_unused
        allow_nograd = self.allow_nograd if allow_nograd is None else allow_nograd
        params = [p for p in self.module.parameters() if p.requires_grad or not allow_nograd]
        try:
            grads = autograd.grad(loss, params, create_graph=not first_order,
                                  retain_graph=not first_order, allow_unused=allow_unused)
        except RuntimeError as error:
            raise RuntimeError(
                f"{error}\nHint: if some parameters do not take part in this loss, create the wrapper "
                "with MAML(model, lr, allow_unused=True); if some are frozen (requires_grad=False), "
                "with allow_nograd=True; if the loss was already backpropagated, compute it again "
                "from learner(x).") from None
        _replace_parameters(self.module, {id(p): p - self.lr * g
                                          for p, g in zip(params, grads) if g is not None})
