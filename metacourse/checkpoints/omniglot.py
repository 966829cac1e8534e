"""Omniglot checkpoints: how a trained network is built, loaded and evaluated on the fixed test tasks.

A checkpoint file holds the weights, the constructor of the network (``model_spec``) and the
experiment's plan; ``load_file`` rebuilds the network, ``test_tasks`` draws the fixed stream of
600 N-way K-shot test tasks (its own seed, the same for every method and seed) and
``evaluate_model`` adapts the network to each task as its method prescribes. The Omniglot
experiment (``metacourse reproduce omniglot``) writes checkpoints with these, and
``metacourse.pretrained`` reads them: library code only, nothing from ``experiments``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from ..algorithms import classifier_baselines, matching, protonet, reptile
from ..algorithms.finetune import adaptation_curve
from ..models.conv4 import Conv4, NoConvMLP
from ..tasks.base import TaskBatch
from ..tasks.episodes import sample_episodes
from ..tasks.omniglot import Omniglot

__all__ = ["TEST_SEED", "model_spec", "build_model", "load_file", "test_tasks", "evaluate_model"]

TEST_SEED = 600
"""Seed of the stream of test tasks, the same for every method, seed and checkpoint."""


def model_spec(plan: dict) -> dict:
    """The constructor of the network a method trains (stored in checkpoint cards)."""
    embedding = plan["method"] in ("protonet", "matching")
    pretrain = plan["method"] in ("finetune", "nearest")
    out = None if embedding else (4 * 1200 if pretrain else plan["ways"])
    if plan["network"] == "mlp":
        return {"name": "NoConvMLP", "out_features": out}
    return {"name": "Conv4", "out_features": out, "pooling": plan["pooling"]}


def build_model(spec: dict) -> nn.Module:
    kwargs = {k: v for k, v in spec.items() if k != "name"}
    return {"Conv4": Conv4, "NoConvMLP": NoConvMLP}[spec["name"]](**kwargs)


def load_file(path: str | Path) -> nn.Module:
    """A model from a file written by ``experiments.omniglot.export`` (CPU, evaluation mode); a truncated or foreign
    file raises a ValueError that names it and the fix."""
    try:
        payload = torch.load(path, map_location="cpu", weights_only=False)
        model = build_model(payload["model"])
        model.load_state_dict(payload["state_dict"])
    except FileNotFoundError:
        raise
    except Exception as error:  # a truncated or foreign file: say what to do
        first = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise ValueError(f"{path} is not a model exported by `metacourse reproduce omniglot` ({first}); it is "
                         "truncated or another program's file: run the command again to write it afresh") from None
    return model.eval()


def test_tasks(plan: dict, n_tasks: int | None = None, device: str | torch.device = "cpu"
               ) -> TaskBatch:
    """The fixed stream of test tasks of this shape (423 test characters, ×4 rotations)."""
    rng = np.random.default_rng([TEST_SEED, plan["ways"], plan["shots"]])
    return sample_episodes(Omniglot("test"), n_tasks or plan["test_tasks"], plan["ways"],
                           plan["shots"], plan["n_query_test"], rng, device)


def evaluate_model(plan: dict, model: nn.Module, tasks: TaskBatch, chunk_size: int = 50
                   ) -> np.ndarray:
    """Per-task query accuracy of a trained model, adapted to each task as its method prescribes.

    On a CPU, MAML's and fine-tuning's few steps run one task at a time (batched weights make
    grouped convolutions there, slower than a loop), Reptile's 50 steps 10 tasks at a time, and the
    embedding methods (ProtoNets, matching networks, nearest neighbour) one task at a time too: 50
    tasks in one vmapped pass take about twice as long per task, their activations no longer fit
    in cache (``benchmarks/protonet_compile.py``). On a GPU everything runs ``chunk_size`` tasks
    at a time.
    """
    method = plan["method"]
    model.eval()
    on_cpu = tasks.x_support.device.type == "cpu"
    per_task = 1 if on_cpu else chunk_size
    if method in ("maml", "fomaml"):
        steps = plan["inner_steps_test"]
        return adaptation_curve(model, tasks, (steps,), plan["inner_lr"], loss="cross_entropy",
                                metric="accuracy", chunk_size=per_task)[steps]
    if method == "finetune":
        return classifier_baselines.finetune_accuracy(model, tasks, plan["finetune_lr"],
                                                      plan["finetune_steps"], per_task)
    values = []
    cpu_chunk = 10 if method == "reptile" else 1
    for chunk in tasks.split(cpu_chunk if on_cpu else chunk_size):
        if method == "reptile":
            cfg = reptile.Config(inner_lr=plan["inner_lr"], inner_steps=plan["inner_steps_test"],
                                 inner_batch=plan["inner_batch"])
            values.append(reptile.evaluate(model, chunk, cfg))
            continue
        with torch.no_grad():
            if method == "nearest":
                values.append(classifier_baselines.nearest_neighbour_accuracy(model, chunk))
            else:
                module = protonet if method == "protonet" else matching
                logits = module.predict(model, dict(model.named_parameters()), chunk,
                                        module.Config(compile=plan.get("compile", False)))
                values.append((logits.argmax(-1) == chunk.y_query).float().mean(-1).numpy())
    return np.concatenate([np.asarray(v) for v in values])
