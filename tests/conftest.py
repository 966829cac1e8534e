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
