"""metacourse.utils: the clock the experiments time themselves with."""

import time

import pytest
import torch

from metacourse.utils import Clock, GeneratorState


def test_clock_adds_the_seconds_of_earlier_sessions():
    fresh, resumed = Clock(), Clock(wall=100.0, cpu=40.0)
    deadline = time.perf_counter() + 0.05
    while time.perf_counter() < deadline:  # burn a little CPU so both clocks move
        sum(range(1000))
    wall, cpu = fresh.totals()
    assert 0.05 <= wall < 5 and 0 < cpu < 5
    resumed_wall, resumed_cpu = resumed.totals()
    assert 100.05 <= resumed_wall < 105 and 40 < resumed_cpu < 45
    assert fresh.wall() >= wall  # it keeps running


def test_generator_state_resumes_the_same_draws(tmp_path):
    generator = torch.Generator().manual_seed(11)
    torch.rand(5, generator=generator)
    saved = GeneratorState(generator).state_dict()
    torch.save(saved, tmp_path / "state.pt")
    expected = torch.rand(5, generator=generator)
    restored = torch.Generator().manual_seed(0)
    GeneratorState(restored).load_state_dict(torch.load(tmp_path / "state.pt"))
    assert torch.equal(torch.rand(5, generator=restored), expected)
    with pytest.raises(KeyError):
        GeneratorState(restored).load_state_dict({})
