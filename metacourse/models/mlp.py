"""Multi-layer perceptrons; MAML's sinusoid regressor is ``MLP(1, (40, 40), 1)``."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from ..utils import check_positive_int

__all__ = ["TaskLinear", "MLP"]


class TaskLinear(nn.Linear):
    """``nn.Linear`` whose weights may also carry a leading task dimension.

    With weight ``(out, in)`` it is an ordinary linear layer. With weight ``(T, out, in)``, bias
    ``(T, out)`` and input ``(T, n, in)``, task t is computed with weights t, in one batched matmul.
    """

    def forward(self, x: Tensor) -> Tensor:
        return torch.matmul(x, self.weight.transpose(-1, -2)) + self.bias.unsqueeze(-2)


class MLP(nn.Sequential):
    """Fully connected network: Linear → ReLU → … → Linear.

    ``broadcasts_over_tasks`` tells ``metacourse.functional.forward`` that a batch of tasks can run
    without ``vmap``: every layer accepts a leading task dimension.
    """

    broadcasts_over_tasks = True

    def __init__(self, in_features: int = 1, hidden: Sequence[int] = (40, 40), out_features: int = 1):
        check_positive_int("in_features", in_features)
        check_positive_int("out_features", out_features)
        for width in hidden:
            check_positive_int("hidden width", width)
        sizes = [in_features, *hidden, out_features]
        layers: list[nn.Module] = []
        for i, (fan_in, fan_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            layers.append(TaskLinear(fan_in, fan_out))
            if i < len(sizes) - 2:
                layers.append(nn.ReLU())
        super().__init__(*layers)
        self.in_features = in_features

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.in_features:
            raise ValueError(f"MLP expects inputs with {self.in_features} feature(s) in the last "
                             f"dimension, got shape {tuple(x.shape)}")
        return super().forward(x)
