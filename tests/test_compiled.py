"""torch.compile of the metric learners' embedding: the same numbers as eager mode up to rounding,
and a warning plus eager execution when compiling fails."""

import gc
import warnings
import weakref

import pytest
import torch

from metacourse import compiled
from metacourse.algorithms import matching, protonet
from metacourse.functional import params_of
from metacourse.models.conv4 import Conv4


def _model(dtype=torch.float32):
    torch.manual_seed(0)
    return Conv4(None, hidden=8, pooling="max", blocks=3).to(dtype)


def _flat_grad(model, loss):
    model.zero_grad(set_to_none=True)
    loss.backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


def test_compiled_protonet_matches_eager_in_float64(image_tasks):
    model, tasks = _model(torch.float64), image_tasks(dtype=torch.float64)
    eager_cfg, compiled_cfg = protonet.Config(), protonet.Config(compile=True)
    eager = protonet.meta_loss(model, params_of(model), tasks, eager_cfg)
    fast = protonet.meta_loss(model, params_of(model), tasks, compiled_cfg)
    torch.testing.assert_close(fast, eager, rtol=1e-12, atol=1e-12)
    g_eager, g_fast = _flat_grad(model, eager), _flat_grad(model, fast)
    assert (g_fast - g_eager).abs().max() <= 1e-10 * g_eager.abs().max()
    with torch.no_grad():  # evaluation: a separate no-grad graph, same logits
        torch.testing.assert_close(protonet.predict(model, params_of(model), tasks, compiled_cfg),
                                   protonet.predict(model, params_of(model), tasks, eager_cfg),
                                   rtol=1e-12, atol=1e-12)


def test_compiled_matching_and_single_task_match_eager(image_tasks):
    model, tasks = _model(), image_tasks(n_tasks=1)
    task = tasks[0]
    for cfg_class, module in ((matching.Config, matching), (protonet.Config, protonet)):
        eager = module.predict(model, params_of(model), task, cfg_class())
        fast = module.predict(model, params_of(model), task, cfg_class(compile=True))
        torch.testing.assert_close(fast, eager, rtol=1e-4, atol=1e-5)


def test_failed_compile_warns_once_and_runs_eagerly(monkeypatch, image_tasks):
    def broken(*args):
        raise torch._dynamo.exc.TorchDynamoException("backend failed: no C++ compiler found")

    monkeypatch.setattr(compiled, "_compiled", broken)
    model, tasks = _model(), image_tasks()
    cfg = protonet.Config(compile=True)
    with pytest.warns(RuntimeWarning, match="C\\+\\+ compiler"):
        logits = protonet.predict(model, params_of(model), tasks, cfg)
    torch.testing.assert_close(logits, protonet.predict(model, params_of(model), tasks,
                                                        protonet.Config()))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning: the model now runs eagerly
        protonet.predict(model, params_of(model), tasks, cfg)
    assert model in compiled._failed


def test_wrong_input_raises_its_own_error_when_compiled():
    model = _model()
    with pytest.raises(ValueError, match="Conv4 expects images"):
        compiled.call_embedding(model, params_of(model), torch.randn(4, 14, 14))


def test_the_compiled_call_does_not_keep_a_model_alive(image_tasks):
    model, tasks = _model(), image_tasks()
    compiled.call_embedding(model, params_of(model), tasks.x_support, batched=True)
    alive = weakref.ref(model)
    del model
    gc.collect()
    assert alive() is None
