"""A hypernetwork for few-shot learning: a network that outputs the weights of another network.

The support set is embedded as in a CNP, r = mean_i h([x_i, y_i]); a head maps r to a flat vector
that is cut into the weight tensors of a target network f (by default MAML's 1-40-40-1 MLP), and
the query points are predicted by f with those weights: ŷ = f(x; φ), φ = θ_0 + W g(r). The
head's bias θ_0 starts at f's own initialisation, so before training the generated network is an
ordinary freshly initialised f. ``generate`` picks which of f's tensors are generated; the others
stay shared meta-parameters (generating only the last layer is far cheaper: the head's output has
one unit per generated number, which is why generating *all* weights of a large f is hard).

``ClassifierHyperNetwork`` is the classification counterpart: it generates the weight matrix of a
linear classifier, one row per class, each row from the support examples of its own class (as
weight-generating few-shot learners do, e.g. Qiao et al. 2018, Gidaris & Komodakis 2018), so a
task with N classes gets an N-row classifier whatever N is.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..functional import forward
from .blackbox import BlackBoxLearner, State, mlp

__all__ = ["HyperNetwork", "ClassifierHyperNetwork"]


class HyperNetwork(BlackBoxLearner):
    """Support set → weights of ``target``; ``adapt`` returns them as a parameter dict φ.

    φ has the names of ``target``'s parameters and a leading task dimension; ``predict`` runs
    ``target`` with φ (``metacourse.functional.forward(target, φ, x, batched=True)``).
    """

    def __init__(self, target: nn.Module, x_dim: int = 1, y_dim: int = 1, hidden: int = 128,
                 r_dim: int = 128, generate: Sequence[str] | None = None, init_scale: float = 0.1):
        super().__init__(x_dim, y_dim)
        shared = dict(target.named_parameters())
        names = list(generate) if generate is not None else list(shared)
        unknown = [n for n in names if n not in shared]
        if unknown or not names:
            raise ValueError(f"generate={names!r}: name one or more of the target's parameters {list(shared)}")
        self.generated = names
        self.shapes = {n: tuple(shared[n].shape) for n in names}
        base = torch.cat([shared[n].detach().reshape(-1) for n in names])
        for name in names:  # generated tensors stop being parameters of the target
            module_name, _, leaf = name.rpartition(".")
            module = target.get_submodule(module_name)
            delattr(module, leaf)
            module.register_buffer(leaf, shared[name].detach().clone(), persistent=False)
        self.target = target
        self.encoder = mlp([x_dim + y_dim, hidden, hidden, r_dim])
        self.head = mlp([r_dim, hidden, base.numel()])
        with torch.no_grad():
            self.head[-1].weight.mul_(init_scale)
            self.head[-1].bias.copy_(base)

    @property
    def n_generated(self) -> int:
        """How many numbers the head outputs per task (the size of the generated φ)."""
        return sum(int(torch.Size(s).numel()) for s in self.shapes.values())

    def embed(self, x: Tensor, y: Tensor) -> Tensor:
        """r = mean_i h([x_i, y_i]), ``(tasks, r_dim)``."""
        return self.encoder(torch.cat([self.features(x), self.labels(y)], dim=-1)).mean(dim=1)

    def adapt(self, x: Tensor, y: Tensor) -> State:
        flat = self.head(self.embed(x, y))
        pieces = flat.split([int(torch.Size(s).numel()) for s in self.shapes.values()], dim=-1)
        return {name: piece.reshape(-1, *shape) for (name, shape), piece in zip(self.shapes.items(), pieces)}

    def predict(self, state: State, x: Tensor) -> Tensor:
        return forward(self.target, state, self.features(x), batched=True)


class ClassifierHyperNetwork(BlackBoxLearner):
    """Support set → a linear classifier over learned query features; ``adapt`` returns its weights.

    φ = {W, b}: row k of W and entry k of b are the mean of h(x_i) over the support examples of
    class k (h outputs ``features + 1`` numbers: a weight row and a bias); the query logits are
    W u(x) + b, with h and u two MLPs trained end to end with whatever encodes x. Nothing fixes how
    a query is compared with the support set: h, u and the bias are learned. With h and u the
    identity and b_k = −‖w_k‖²/2 it would be a prototypical network (Lecture 2).
    """

    def __init__(self, x_dim: int, y_dim: int, hidden: int = 128, features: int = 64):
        super().__init__(x_dim, y_dim)
        self.weight_generator = mlp([x_dim, hidden, features + 1])  # h: a weight row and a bias
        self.query_features = mlp([x_dim, hidden, features])        # u

    def adapt(self, x: Tensor, y: Tensor) -> State:
        if torch.is_floating_point(y):
            raise ValueError("ClassifierHyperNetwork generates one classifier row per class: give integer "
                             f"class labels in 0..{self.y_dim - 1}, not real-valued targets")
        one_hot = self.labels(y)                                          # (tasks, points, N)
        counts = one_hot.sum(dim=1).clamp_min(1.0).unsqueeze(-1)          # (tasks, N, 1)
        rows = one_hot.transpose(1, 2) @ self.weight_generator(self.features(x)) / counts
        return {"weight": rows[..., :-1], "bias": rows[..., -1]}

    def predict(self, state: State, x: Tensor) -> Tensor:
        logits = self.query_features(self.features(x)) @ state["weight"].transpose(1, 2)  # (tasks, points, N)
        return logits + state["bias"].unsqueeze(1)
