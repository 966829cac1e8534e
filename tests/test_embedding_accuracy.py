"""``evaluate.embedding_accuracy``: the transductive protocol is ProtoNets' ``predict``; without
transduction a query's prediction does not depend on the other queries."""

import numpy as np
import pytest
import torch

from metacourse.algorithms import protonet
from metacourse.evaluate import embedding_accuracy
from metacourse.models.conv4 import Conv4
from metacourse.tasks.base import TaskBatch


def _tasks(seed: int, n_tasks: int = 3, n_way: int = 3, n_query: int = 4) -> TaskBatch:
    generator = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_way)
    return TaskBatch(torch.rand(n_tasks, n_way, 1, 12, 12, generator=generator),
                     labels.expand(n_tasks, -1).clone(),
                     torch.rand(n_tasks, n_way * n_query, 1, 12, 12, generator=generator),
                     labels.repeat_interleave(n_query).expand(n_tasks, -1).clone())


def _scores(support, labels, query):
    return protonet.class_logits(query, protonet.prototypes(support, labels, 3))


def test_transductive_is_protonet_predict():
    torch.manual_seed(0)
    model, tasks = Conv4(None, blocks=2), _tasks(0)
    with torch.no_grad():
        logits = protonet.predict(model, dict(model.named_parameters()), tasks, protonet.Config())
    expected = (logits.argmax(-1) == tasks.y_query).float().mean(-1).numpy()
    np.testing.assert_allclose(embedding_accuracy(model, tasks, _scores, transductive=True), expected)


def test_without_transduction_a_query_ignores_the_other_queries():
    torch.manual_seed(0)
    model, tasks = Conv4(None, blocks=2), _tasks(1, n_tasks=1)
    probe = []

    def recording(support, labels, query):
        scores = _scores(support, labels, query)
        probe.append(scores[0, 0].clone())  # the first query's scores
        return scores

    embedding_accuracy(model, tasks, recording, transductive=False)
    changed = _tasks(1, n_tasks=1)
    changed.x_query[:, 1:] = torch.rand_like(changed.x_query[:, 1:])  # every query but the first
    embedding_accuracy(model, changed, recording, transductive=False)
    torch.testing.assert_close(probe[0], probe[1])
    embedding_accuracy(model, tasks, recording, transductive=True)
    embedding_accuracy(model, changed, recording, transductive=True)
    assert not torch.allclose(probe[2], probe[3]), "transductive scores should see the other queries"


def test_a_single_task_is_refused_with_the_fix():
    model, tasks = Conv4(None, blocks=2), _tasks(2)
    with pytest.raises(TypeError, match="stack_tasks"):
        embedding_accuracy(model, tasks[0], _scores)
