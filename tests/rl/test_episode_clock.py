"""The one episode clock of the batched task envs: a horizon that truncates (a time limit) or
terminates (part of the task), padding after the end, and restarts."""

import pytest
import torch

from metacourse.rl.envs._episodes import EpisodeClock


def test_a_time_limit_truncates_unless_the_task_ended_the_episode_at_the_same_step():
    clock = EpisodeClock((1, 3), horizon=2)
    running = clock.running
    terminated, truncated = clock.tick(running, torch.tensor([[False, True, False]]))
    assert terminated.tolist() == [[False, True, False]] and not truncated.any()
    terminated, truncated = clock.tick(clock.running, torch.tensor([[True, True, False]]))
    assert terminated.tolist() == [[True, False, False]]   # the 2nd episode is padding now: no flag
    assert truncated.tolist() == [[False, False, True]]
    assert clock.over.all() and clock.steps.tolist() == [[2, 1, 2]]


def test_a_horizon_that_is_part_of_the_task_terminates():
    clock = EpisodeClock((2, 1), horizon=3, limit="terminates")
    for _ in range(2):
        terminated, truncated = clock.tick(clock.running)
        assert not terminated.any() and not truncated.any()
    terminated, truncated = clock.tick(clock.running)
    assert terminated.all() and not truncated.any()
    terminated, truncated = clock.tick(clock.running)   # padding: nothing ends twice
    assert not terminated.any() and clock.steps.tolist() == [[3], [3]]


def test_restart_starts_only_the_ended_episodes_and_names_the_fix_for_a_bad_mask():
    clock = EpisodeClock((1, 2), horizon=1, limit="terminates")
    clock.tick(clock.running)
    clock.restart(torch.tensor([[True, False]]))
    assert clock.running.tolist() == [[True, False]] and clock.steps.tolist() == [[0, 1]]
    with pytest.raises(ValueError, match=r"step.terminated \| step.truncated"):
        clock.restart(torch.tensor([True, False]))
    with pytest.raises(ValueError, match="truncates"):
        EpisodeClock((1, 1), horizon=1, limit="ends")


def test_a_clock_restored_from_its_state_carries_on_where_it_stopped():
    clock = EpisodeClock((1, 2), horizon=3)
    clock.tick(clock.running, torch.tensor([[True, False]]))
    restored = EpisodeClock((1, 2), horizon=3)
    restored.load_state_dict(clock.state_dict())
    assert restored.steps.tolist() == [[1, 1]] and restored.running.tolist() == [[False, True]]
    assert [flags.tolist() for flags in restored.tick(restored.running)] == [[[False, False]], [[False, False]]]
