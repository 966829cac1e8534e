"""The few-shot classification networks of MAML (Finn et al. 2017, §5.2) and ProtoNets.

``Conv4``: four blocks of [3×3 conv with 64 filters → batch norm → ReLU → downsampling], then a
linear layer (or no head: a 64-d embedding, ProtoNets). Downsampling is ``pooling="stride"`` —
stride-2 convolutions, as MAML's paper and code use for Omniglot (28→14→7→4→2, then the spatial
mean) — or ``pooling="max"`` — 2×2 max-pooling, as ProtoNets and MAML's MiniImagenet net use
(28→14→7→3→1). Strided blocks cost about 4× fewer FLOPs on 28×28 inputs.

``NoConvMLP``: MAML's "no conv" baseline, hidden layers 256-128-64-64, each Linear → BN → ReLU.

Batch normalisation (``BatchNorm``) always uses the statistics of the batch it is given, in
training and in evaluation alike, as MAML's reference implementation does; there are no running
statistics. It is written from elementary tensor operations (mean, variance, rsqrt), so under
``torch.func.vmap`` each task is normalised with its own statistics and second-order
meta-gradients are exact (PyTorch's ``batch_norm`` batching rule is not exact at second order).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..utils import check_positive_int

__all__ = ["batch_norm", "BatchNorm", "Conv4", "NoConvMLP"]


def batch_norm(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-5) -> Tensor:
    """γ (x − mean) / √(var + ε) + β with the batch's mean and biased variance per channel.

    ``x``: ``(batch, channels, ...)``; statistics over every dimension except the channels. Equal
    to ``torch.nn.functional.batch_norm(x, None, None, weight, bias, training=True, eps=eps)``.
    """
    dims = [0, *range(2, x.dim())]
    mean = x.mean(dim=dims, keepdim=True)
    centred = x - mean
    variance = (centred * centred).mean(dim=dims, keepdim=True)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    scale = torch.rsqrt(variance + eps) * weight.view(shape)  # per channel: one full-size product
    return centred * scale + bias.view(shape)


class BatchNorm(nn.Module):
    """Batch normalisation with batch statistics only (see ``batch_norm``); learns γ and β."""

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        check_positive_int("num_features", num_features)
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[0] < 2:
            raise ValueError(f"batch normalisation with batch statistics needs at least 2 inputs, "
                             f"got a batch of shape {tuple(x.shape)}; pass the task's images together")
        return batch_norm(x, self.weight, self.bias, self.eps)


class ConvBlock(nn.Module):
    """3×3 conv → BatchNorm → ReLU → (stride-2 conv | 2×2 max-pool)."""

    def __init__(self, in_channels: int, out_channels: int, pooling: str):
        super().__init__()
        self.pooling = pooling
        stride = 2 if pooling == "stride" else 1
        self.conv = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1)
        self.norm = BatchNorm(out_channels)

    def forward(self, x: Tensor) -> Tensor:
        x = F.relu(self.norm(self.conv(x)))
        return F.max_pool2d(x, 2) if self.pooling == "max" else x


class Conv4(nn.Module):
    """MAML's / ProtoNets' four-block convolutional network (112,261 parameters for 5 ways).

    Input ``(batch, in_channels, H, W)``; output ``(batch, out_features)`` logits, or the
    ``hidden``-dimensional embedding when ``out_features`` is None (``embed`` always gives it).
    """

    def __init__(self, out_features: int | None = 5, in_channels: int = 1, hidden: int = 64,
                 pooling: str = "stride", blocks: int = 4):
        super().__init__()
        if pooling not in ("stride", "max"):
            raise ValueError(f"pooling={pooling!r} is unknown; use 'stride' (MAML, Omniglot) or "
                             "'max' (ProtoNets)")
        check_positive_int("hidden", hidden)
        check_positive_int("blocks", blocks)
        widths = [in_channels] + [hidden] * blocks
        self.blocks = nn.Sequential(*(ConvBlock(a, b, pooling) for a, b in zip(widths, widths[1:])))
        self.pooling, self.in_channels = pooling, in_channels
        self.head = nn.Linear(hidden, out_features) if out_features else None

    def embed(self, x: Tensor) -> Tensor:
        """The features before the linear head: ``(batch, hidden)``."""
        if x.dim() != 4 or x.shape[1] != self.in_channels:
            raise ValueError(f"Conv4 expects images of shape (batch, {self.in_channels}, H, W), got "
                             f"{tuple(x.shape)}; add the channel dimension with x.unsqueeze(1)")
        x = self.blocks(x)
        return x.mean(dim=(-2, -1)) if self.pooling == "stride" else x.flatten(1)

    def forward(self, x: Tensor) -> Tensor:
        features = self.embed(x)
        return self.head(features) if self.head is not None else features


class NoConvMLP(nn.Module):
    """MAML's "no conv" network: flatten → [Linear → BatchNorm → ReLU] × 4 (256-128-64-64) → Linear."""

    def __init__(self, out_features: int | None = 5, in_features: int = 28 * 28,
                 hidden: Sequence[int] = (256, 128, 64, 64)):
        super().__init__()
        check_positive_int("in_features", in_features)
        sizes = [in_features, *hidden]
        layers: list[nn.Module] = []
        for fan_in, fan_out in zip(sizes, sizes[1:]):
            layers += [nn.Linear(fan_in, fan_out), BatchNorm(fan_out), nn.ReLU()]
        self.body = nn.Sequential(*layers)
        self.in_features = in_features
        self.head = nn.Linear(sizes[-1], out_features) if out_features else None

    def embed(self, x: Tensor) -> Tensor:
        x = x.reshape(x.shape[0], -1)
        if x.shape[1] != self.in_features:
            raise ValueError(f"NoConvMLP expects {self.in_features} inputs per example, got "
                             f"{x.shape[1]}; build it with in_features={x.shape[1]}")
        return self.body(x)

    def forward(self, x: Tensor) -> Tensor:
        features = self.embed(x)
        return self.head(features) if self.head is not None else features
