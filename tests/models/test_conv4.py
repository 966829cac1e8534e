"""Conv4, the no-conv MLP and elementary batch norm: against PyTorch, and exact under vmap."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.func import vmap

from metacourse.algorithms import maml
from metacourse.functional import params_of
from metacourse.models.conv4 import BatchNorm, Conv4, NoConvMLP, batch_norm
from metacourse.tasks.episodes import ArrayImages, sample_episodes


@pytest.mark.parametrize("shape", [(7, 3), (6, 4, 5, 5)])
def test_batch_norm_equals_torch_batch_norm_in_training_mode(shape):
    x = torch.randn(*shape, dtype=torch.float64) * 3 + 1
    weight, bias = torch.randn(shape[1], dtype=torch.float64), torch.randn(shape[1], dtype=torch.float64)
    expected = F.batch_norm(x, None, None, weight, bias, training=True, eps=1e-5)
    assert torch.allclose(batch_norm(x, weight, bias), expected, atol=1e-12)


def test_batch_norm_gradients_match_torch_to_second_order():
    x = torch.randn(5, 3, 4, 4, dtype=torch.float64, requires_grad=True)
    w = torch.randn(3, dtype=torch.float64, requires_grad=True)
    b = torch.randn(3, dtype=torch.float64, requires_grad=True)
    grads = []
    for fn in (lambda: batch_norm(x, w, b),
               lambda: F.batch_norm(x, None, None, w, b, training=True)):
        out = fn().sin().sum()
        g = torch.autograd.grad(out, (x, w), create_graph=True)
        grads.append(torch.autograd.grad(g[0].pow(2).sum() + g[1].sum(), (x, w, b)))
    for ours, theirs in zip(*grads):
        assert torch.allclose(ours, theirs, atol=1e-10)


def test_batch_norm_under_vmap_normalises_each_task_on_its_own():
    norm = BatchNorm(4).double()
    x = torch.randn(3, 6, 4, 2, 2, dtype=torch.float64)
    batched = vmap(norm)(x)
    assert torch.allclose(batched, torch.stack([norm(task) for task in x]), atol=1e-12)


def test_batch_norm_refuses_a_single_example():
    with pytest.raises(ValueError, match="at least 2 inputs"):
        BatchNorm(3)(torch.randn(1, 3))


def test_conv4_matches_the_paper_shapes_and_parameter_count():
    assert sum(p.numel() for p in Conv4(5, pooling="max").parameters()) == 112_261
    assert sum(p.numel() for p in Conv4(5, pooling="stride").parameters()) == 112_261
    x = torch.rand(10, 1, 28, 28)
    for pooling in ("stride", "max"):
        assert Conv4(5, pooling=pooling)(x).shape == (10, 5)
        assert Conv4(None, pooling=pooling)(x).shape == (10, 64)
    with pytest.raises(ValueError, match="unsqueeze"):
        Conv4(5)(torch.rand(10, 28, 28))
    with pytest.raises(ValueError, match="pooling='avg'"):
        Conv4(5, pooling="avg")


def test_no_conv_mlp_is_256_128_64_64_with_batch_norm():
    model = NoConvMLP(5)
    widths = [m.out_features for m in model.modules() if isinstance(m, nn.Linear)]
    assert widths == [256, 128, 64, 64, 5]
    assert sum(isinstance(m, BatchNorm) for m in model.modules()) == 4
    assert model(torch.rand(8, 1, 28, 28)).shape == (8, 5)


def _meta_gradient(model: nn.Module, tasks, backend: str, first_order: bool) -> torch.Tensor:
    cfg = maml.Config(inner_lr=0.4, inner_steps=2, first_order=first_order, loss="cross_entropy",
                      backend=backend)
    model.zero_grad()
    maml.meta_loss(model, params_of(model), tasks, cfg).backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.mark.parametrize("network", ["conv4-stride", "conv4-max", "mlp"])
def test_second_order_maml_vmap_equals_loop_exactly(network):
    torch.manual_seed(0)
    model = (NoConvMLP(3, in_features=28 * 28) if network == "mlp"
             else Conv4(3, hidden=8, pooling=network.split("-")[1])).double()
    images = ArrayImages(torch.rand(12, 4, 1, 28, 28, dtype=torch.float64))
    tasks = sample_episodes(images, 4, 3, 1, 2, np.random.default_rng(0))
    assert maml.choose_backend(model, maml.Config()) == "vmap"  # no torch BatchNorm inside
    loop = _meta_gradient(model, tasks, "loop", first_order=False)
    batched = _meta_gradient(model, tasks, "vmap", first_order=False)
    # float64. The backends add up the same terms in different orders (vmap runs θ's first support
    # pass over all tasks at once); with batch statistics over 3 inputs and α = 0.4 the meta-gradient
    # of the no-conv net reaches a norm of ~6e5, which amplifies rounding to ~1e-7 (1e-11 at α = 0.05).
    # PyTorch's own BatchNorm under vmap is off by ~1e-3 (peers doc §7).
    assert (loop - batched).norm() / loop.norm() < (1e-6 if network == "mlp" else 1e-10)
    first_order = _meta_gradient(model, tasks, "loop", first_order=True)
    assert not torch.allclose(loop, first_order, atol=1e-6)  # the second-order terms matter
