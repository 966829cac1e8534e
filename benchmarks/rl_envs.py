"""Environment steps per second: batched torch envs vs Gymnasium vector envs (RL² task families).

    .venv/bin/python benchmarks/rl_envs.py [--seconds 2] [--envs 1 16 256 1024] [--json FILE]

One "env step" is one transition of one environment (a bandit pull, an MDP step). Each
measurement steps with uniformly random actions for about ``--seconds`` seconds and reports
env steps per second. Gymnasium vector envs use ``SyncVectorEnv`` with SAME_STEP autoreset (every
call is a real pull: a bandit episode ends at each step) and ``gym.make`` wrappers. Timings are
wall-clock on whatever machine runs this, so the shared CI CPU gives noisy, pessimistic numbers:
compare the ratio, not the absolute rates.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode

import metacourse.rl.envs  # noqa: F401  (registers the ids)
from metacourse.rl.envs import BatchedBernoulliBandit, BatchedTabularMDP

ENV_IDS = {"bandit": "metacourse/BernoulliBandit-v0", "mdp": "metacourse/TabularMDP-v0"}


def _rate(step, n_envs: int, seconds: float) -> float:
    """Env steps per second of ``step()`` (one call steps ``n_envs`` envs)."""
    calls, start = 0, time.perf_counter()
    while True:
        for _ in range(10):
            step()
        calls += 10
        elapsed = time.perf_counter() - start
        if elapsed >= seconds:
            return calls * n_envs / elapsed


def batched(kind: str, n_envs: int, seconds: float) -> float:
    """One task per env, one episode each; every step restarts the episodes that ended (as RL² does)."""
    rng, generator = np.random.default_rng(0), torch.Generator().manual_seed(0)
    env = BatchedBernoulliBandit.sample(n_envs, 5, rng) if kind == "bandit" else \
        BatchedTabularMDP.sample(n_envs, rng)
    env.reset(1, generator)

    def step():
        result = env.step(torch.randint(5, (n_envs, 1), generator=generator))
        env.restart(result.terminated | result.truncated)

    return _rate(step, n_envs, seconds)


def gymnasium_vector(kind: str, n_envs: int, seconds: float) -> float:
    vec = gym.make_vec(ENV_IDS[kind], num_envs=n_envs, vectorization_mode="sync",
                       vector_kwargs={"autoreset_mode": AutoresetMode.SAME_STEP})
    vec.reset(seed=0)
    vec.action_space.seed(0)
    try:
        return _rate(lambda: vec.step(vec.action_space.sample()), n_envs, seconds)
    finally:
        vec.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--envs", type=int, nargs="+", default=[1, 16, 256, 1024])
    parser.add_argument("--json", default=None, help="also write the numbers here")
    args = parser.parse_args()
    rows = []
    print(f"{'task':<7} {'envs':>6} {'batched torch':>15} {'Gymnasium sync':>15} {'ratio':>7}")
    for kind in ("bandit", "mdp"):
        for n_envs in args.envs:
            fast, slow = batched(kind, n_envs, args.seconds), gymnasium_vector(kind, n_envs, args.seconds)
            rows.append({"task": kind, "n_envs": n_envs, "batched_steps_per_s": round(fast),
                         "gymnasium_sync_steps_per_s": round(slow)})
            print(f"{kind:<7} {n_envs:>6} {fast:>15,.0f} {slow:>15,.0f} {fast / slow:>6.0f}x", flush=True)
    machine = {"cpu_count": os.cpu_count(), "platform": platform.platform(),
               "load_average_1min": os.getloadavg()[0], "seconds_per_measurement": args.seconds}
    print(f"machine: {machine}")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({"machine": machine, "rows": rows}, handle, indent=2)


if __name__ == "__main__":
    main()
