"""The paper-budget runs on one GPU, in one timed command: what a 2-core CPU cannot give the papers.

Parts, in order of value (each gets a share of the time left when it starts):

1. ``maml-omniglot`` — MAML on Omniglot 5-way 1-shot, second order, the paper's setup (meta-batch 32,
   one inner step at α = 0.4 in training, three at test, Adam 1e-3): a short probe run measures
   meta-steps per second and the cost of evaluating test tasks, then as many of the paper's 60,000
   meta-steps as the share holds are trained and evaluated on 600 test tasks.
2. ``rl2-bandits-k5-n100`` — RL² on Bernoulli bandits, k = 5, n = 100, at the reference batch
   (2,400 trials × 100 pulls = 240,000 observations per PPO update, GRU 256), as many updates as fit.
3. ``rl2-mdp-n10`` — RL² on tabular MDPs, n = 10 episodes of 10 steps, 2,400 trials per update
   (240,000 observations), GRU 256.
4. ``maml-rl-cheetah-dir`` — MAML-RL HalfCheetah forward/backward at the paper's budget preset,
   as many meta-iterations as fit (skipped when MuJoCo does not import).

Every part runs in a process of its own under a time limit and writes, as it finishes, its result
in the ``metacourse reproduce`` JSON schema (``OUT/<part>.json``), its log (``OUT/<part>.log``) and
its line of ``OUT/summary.json`` (status, seconds, throughput, steps planned). A run cut off by the
machine's limit still leaves every finished part behind.

RL²'s environments (small torch tensors) and policy are small: those parts run on the machine's CPU
cores (``torch`` uses all of them), not on the GPU. MAML and MAML-RL use ``--device``.

    python benchmarks/gpu_suite.py --minutes 11 --out "$OUT"           # on a CUDA machine
    python benchmarks/gpu_suite.py --dry-run --out /tmp/suite          # CPU rehearsal, < 2 minutes

The dry run runs every part with FAST budgets on the CPU, through the same code paths, so the
suite cannot rot between the rare chances to run it (``tests/test_gpu_suite.py``). Its numbers are
smoke tests, never reproductions. ``scripts/gpu_suite.sh`` installs the package on a bare machine
and starts the suite.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

PAPER_MAML_STEPS = 60_000
RL2_OBSERVATIONS = 240_000
PARTS = ("maml-omniglot", "rl2-bandits-k5-n100", "rl2-mdp-n10", "maml-rl-cheetah-dir")
SHARES = {"maml-omniglot": 0.5, "rl2-bandits-k5-n100": 0.4, "rl2-mdp-n10": 0.6, "maml-rl-cheetah-dir": 1.0}
"""Each part's share of the time left when it starts (the last part takes what remains)."""
_STARTUP_SECONDS = 20.0  # importing torch, reading Omniglot, building the model: outside the step rate


def _cli(args: list[str]) -> None:
    """Run ``metacourse ...`` in this process; an error exit is an error here too."""
    from metacourse.cli import main

    code = main(args)
    if code:
        raise SystemExit(f"metacourse {' '.join(args)} exited with {code}")


def _read(path: Path) -> dict:
    return json.loads(path.read_text())


def _fit(seconds: float, per_step: float, fixed: float, cap: int) -> int:
    """How many steps of ``per_step`` seconds fit in ``seconds`` after ``fixed`` seconds, at least 1."""
    return max(1, min(cap, math.floor((seconds - fixed) / max(per_step, 1e-6))))


# ---------------------------------------------------------------------------------------------
# The parts (each runs in a child process: ``gpu_suite.py --part NAME --seconds S``)


def part_maml(out: Path, seconds: float, device: str, dry_run: bool) -> dict:
    common = ["reproduce", "omniglot", "--method", "maml", "--ways", "5", "--shots", "1",
              "--device", device, "--no-progress"] + (["--fast"] if dry_run else [])
    probe_steps, probe_tasks = (2, 4) if dry_run else (100, 50)
    probe = out / "maml-omniglot.probe.json"
    start = time.perf_counter()
    _cli(common + ["--meta-steps", str(probe_steps), "--test-tasks", str(probe_tasks),
                   "--json", str(probe), "--out-dir", str(out / "runs" / "probe")])
    stored = _read(probe)
    budget = {**stored["budget"], **stored.get("measured", {})}  # times are measured, not planned
    per_step = budget["train_seconds"] / probe_steps
    test_tasks = 10 if dry_run else 600
    eval_seconds = budget["eval_seconds"] * test_tasks / probe_tasks
    left = seconds - (time.perf_counter() - start)
    steps = 3 if dry_run else _fit(left, per_step, eval_seconds + _STARTUP_SECONDS, PAPER_MAML_STEPS)
    _cli(common + ["--meta-steps", str(steps), "--test-tasks", str(test_tasks),
                   "--json", str(out / "maml-omniglot.json"), "--out-dir", str(out / "runs")])
    return {"meta_steps_per_second": round(1 / per_step, 2), "meta_steps": steps,
            "paper_meta_steps": PAPER_MAML_STEPS,
            "full_budget_minutes": round(PAPER_MAML_STEPS * per_step / 60, 1)}


def part_rl2(out: Path, seconds: float, kind: str, dry_run: bool) -> dict:
    from metacourse.experiments import rl2 as experiment

    episodes = 100 if kind == "bandit" else 10
    steps_per_trial = episodes if kind == "bandit" else episodes * 10
    trials = 8 if dry_run else RL2_OBSERVATIONS // steps_per_trial
    key = (kind, episodes)
    reference = dict(experiment.RL2_BUDGETS[key])
    args = (["reproduce", "rl2-bandits", "--arms", "5", "--pulls", "100"] if kind == "bandit"
            else ["reproduce", "rl2-mdp", "--episodes", "10"])
    args += ["--method", "rl2", "--no-progress", "--instances", "50" if dry_run else "1000"]
    name = "rl2-bandits-k5-n100" if kind == "bandit" else "rl2-mdp-n10"

    def run(updates: int, json_path: Path, out_dir: Path) -> dict:
        experiment.RL2_BUDGETS[key] = reference | {"updates": updates, "trials_per_update": trials,
                                                   "hidden_size": 16 if dry_run else 256}
        _cli(args + ["--json", str(json_path), "--out-dir", str(out_dir)])
        return _read(json_path)

    start = time.perf_counter()
    probe_updates = 3
    probe = run(probe_updates, out / f"{name}.probe.json", out / "runs" / "probe")
    train = probe.get("measured", {}).get("rl2", {}).get("train_wall_seconds_all_sessions", probe["wall_seconds"])
    per_update = train / probe_updates
    fixed = probe["wall_seconds"] - train  # baselines' validation, test instances, start-up
    left = seconds - (time.perf_counter() - start)
    updates = 2 if dry_run else _fit(left, per_update, fixed + _STARTUP_SECONDS, 100_000)
    run(updates, out / f"{name}.json", out / "runs")
    return {"updates": updates, "trials_per_update": trials,
            "observations_per_update": trials * steps_per_trial,
            "seconds_per_update": round(per_update, 2)}


def part_cheetah(out: Path, seconds: float, device: str, dry_run: bool) -> dict:
    try:
        import mujoco  # noqa: F401
    except ImportError as error:
        return {"skipped": f"MuJoCo does not import here ({error}); pip install -e '.[mujoco]'"}
    common = ["reproduce", "maml-rl-cheetah-dir", "--device", device, "--no-progress"]
    common += ["--fast"] if dry_run else ["--budget", "paper"]
    start = time.perf_counter()
    probe = out / "maml-rl-cheetah-dir.probe.json"
    _cli(common + ["--meta-steps", "1", "--json", str(probe), "--out-dir", str(out / "runs" / "probe")])
    per_step = _read(probe)["wall_seconds"]  # one meta-iteration with its evaluation: an upper bound
    left = seconds - (time.perf_counter() - start)
    steps = 1 if dry_run else _fit(left, per_step, per_step, 10_000)
    _cli(common + ["--meta-steps", str(steps), "--json", str(out / "maml-rl-cheetah-dir.json"),
                   "--out-dir", str(out / "runs")])
    return {"meta_steps": steps, "seconds_per_meta_step_upper_bound": round(per_step, 1)}


def run_part(name: str, out: Path, seconds: float, device: str, dry_run: bool) -> dict:
    if name == "maml-omniglot":
        return part_maml(out, seconds, device, dry_run)
    if name.startswith("rl2-"):
        return part_rl2(out, seconds, "bandit" if "bandits" in name else "mdp", dry_run)
    return part_cheetah(out, seconds, device, dry_run)


# ---------------------------------------------------------------------------------------------
# The suite: parts in order, each in its own process under a time limit


def _environment(device: str) -> dict:
    import torch

    info = {"python": platform.python_version(), "torch": torch.__version__, "device": device,
            "cpu_count": os.cpu_count(), "install_seconds": os.environ.get("METACOURSE_INSTALL_SECONDS")}
    if device.startswith("cuda") and torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def suite(out: Path, minutes: float, device: str, dry_run: bool, parts: list[str]) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + 60 * minutes
    summary = {"environment": _environment(device), "dry_run": dry_run, "minutes": minutes, "parts": {}}
    for index, name in enumerate(parts):
        left = deadline - time.monotonic()
        share = 1.0 if index == len(parts) - 1 else SHARES[name]
        seconds = left * share
        if seconds < 30 and not dry_run:
            summary["parts"][name] = {"status": "skipped: no time left"}
            continue
        log = out / f"{name}.log"
        command = [sys.executable, __file__, "--part", name, "--seconds", f"{seconds:.0f}",
                   "--out", str(out), "--device", device] + (["--dry-run"] if dry_run else [])
        start = time.monotonic()
        print(f"[suite] {name}: {seconds:.0f} s allotted", flush=True)
        with open(log, "w") as handle:
            try:
                code = subprocess.run(command, stdout=handle, stderr=subprocess.STDOUT,
                                      timeout=max(seconds, 1) * 1.25 + 30).returncode
            except subprocess.TimeoutExpired:
                code = "timeout"
        entry = {"status": "ok" if code == 0 else f"failed ({code}): see {log.name}",
                 "seconds": round(time.monotonic() - start, 1)}
        facts = out / f"{name}.facts.json"
        if facts.exists():
            entry |= _read(facts)
        summary["parts"][name] = entry
        (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
        print(f"[suite] {name}: {entry['status']} in {entry['seconds']} s", flush=True)
    (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=11.0, help="the whole suite's time budget")
    parser.add_argument("--out", type=Path, required=True, help="folder for results, logs and summary.json")
    parser.add_argument("--device", default=None, help="default: cuda when available (cpu in a dry run)")
    parser.add_argument("--dry-run", action="store_true", help="FAST budgets on the CPU: a rehearsal")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--part", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--seconds", type=float, default=0.0, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.minutes <= 0:
        parser.error(f"--minutes must be positive, got {args.minutes}")
    parts = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown:
        parser.error(f"--parts: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    if args.device is None:
        import torch

        args.device = "cuda" if torch.cuda.is_available() and not args.dry_run else "cpu"
    if args.part:  # a child process: one part
        facts = run_part(args.part, args.out, args.seconds, args.device, args.dry_run)
        (args.out / f"{args.part}.facts.json").write_text(json.dumps(facts, indent=2) + "\n")
        return 0
    summary = suite(args.out, args.minutes, args.device, args.dry_run, parts)
    failed = [name for name, entry in summary["parts"].items() if not entry["status"].startswith(("ok", "skipped"))]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
