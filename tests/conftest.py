"""Shared test set-up: CPU, FAST mode, and the rule for tests that need learn2learn."""

from __future__ import annotations

import importlib.util
import os

import pytest
import torch

os.environ.setdefault("METACOURSE_FAST", "1")


def pytest_collection_modifyitems(config, items):
    """Tests marked ``l2l`` are skipped (with a reason) when learn2learn is missing, unless
    ``METACOURSE_REQUIRE_L2L=1`` (CI) turns a missing learn2learn into a failure."""
    if importlib.util.find_spec("learn2learn") is not None:
        return
    if os.environ.get("METACOURSE_REQUIRE_L2L") == "1":
        return  # the tests run and fail loudly on the import
    skip = pytest.mark.skip(reason="learn2learn not installed: run scripts/install_learn2learn.sh")
    for item in items:
        if "l2l" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def _deterministic_torch():
    torch.manual_seed(0)
    yield


@pytest.fixture
def one_thread():
    """Tiny tensors: one torch thread avoids thread spin-waits on a loaded machine. Use with
    ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    from metacourse.utils import torch_threads

    with torch_threads(1):
        yield


@pytest.fixture
def image_tasks():
    """A factory of N-way K-shot tasks of random images, ``image_tasks(n_tasks, ways, shots,
    queries, size=14, dtype=..., seed=0)`` → TaskBatch (labels 0…ways−1, K per class in order)."""
    from metacourse.tasks.base import TaskBatch

    def make(n_tasks=2, ways=3, shots=2, queries=2, size=14, dtype=torch.float32, seed=0):
        g = torch.Generator().manual_seed(seed)
        labels = lambda k: torch.arange(ways).repeat_interleave(k).expand(n_tasks, -1).contiguous()  # noqa: E731
        images = lambda k: torch.randn(n_tasks, ways * k, 1, size, size, generator=g, dtype=dtype)  # noqa: E731
        return TaskBatch(images(shots), labels(shots), images(queries), labels(queries))

    return make
