"""Evaluate a trained Omniglot embedding network (ProtoNets, matching networks) without transduction.

``metacourse reproduce omniglot`` measures every method *transductively*: batch normalisation uses
the statistics of the batch it is given, and all of a task's queries go through the network in one
batch, so each query's prediction depends on the other queries. ProtoNets' and matching networks'
papers evaluate without that (batch norm with running statistics). This script re-measures a
trained network on the same 600 test tasks both ways (``metacourse.evaluate.embedding_accuracy``;
non-transductive: each query in one batch with the support set only) and stores the
non-transductive result beside the others, in the same format::

    OMP_NUM_THREADS=1 python scripts/omniglot_transduction.py --model protonet-omniglot-5w1s \\
        --json results/omniglot-protonet-5w1s-nontransductive.json
    python scripts/omniglot_transduction.py --model runs/matching-omniglot-5w1s-seed0-DIGEST.pt \\
        --json results/omniglot-matching-5w1s-nontransductive.json

``--model`` is a shipped checkpoint name (``metacourse.checkpoints.names()``) or a file written by
``metacourse reproduce omniglot``. The transductive re-measurement is printed and kept in the notes
(it repeats the number in the checkpoint's card).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from metacourse import checkpoints
from metacourse.algorithms import matching, protonet
from metacourse.evaluate import embedding_accuracy, summarize
from metacourse.experiments import omniglot
from metacourse.reproduce import Result, Row
from metacourse.utils import Clock


def scores_of(method: str, n_way: int):
    """Class scores from embeddings, as the method's ``predict`` computes them."""
    if method == "protonet":
        return lambda support, labels, query: protonet.class_logits(
            query, protonet.prototypes(support, labels, n_way))
    if method == "matching":
        temperature = matching.Config().temperature

        def scores(support, labels, query):
            one_hot = torch.nn.functional.one_hot(labels, n_way).to(support.dtype)
            return matching.attention(query, support, temperature) @ one_hot
        return scores
    raise ValueError(f"--model is a {method} network; this evaluation is for protonet and matching")


def load(model: str) -> tuple[torch.nn.Module, dict, str]:
    """(network, card, where it came from) for a shipped name or an exported file."""
    if model in checkpoints.names():
        trained = checkpoints.load(model)
        return trained.model, trained.card, f"shipped checkpoint {model}"
    path = Path(model)
    if not path.is_file():
        raise SystemExit(f"--model {model}: neither a shipped checkpoint ({', '.join(checkpoints.names())}) "
                         "nor a file; pass a .pt file written by `metacourse reproduce omniglot`")
    return omniglot.load_file(path), json.loads(path.with_suffix(".json").read_text()), str(path)


def main(argv: list[str] | None = None) -> Result:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="shipped checkpoint name or exported .pt file")
    parser.add_argument("--test-tasks", type=int, default=600)
    parser.add_argument("--json", required=True, help="where to write the non-transductive result")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    model, card, source = load(args.model)
    plan = dict(card["budget"]) | {"test_tasks": args.test_tasks}
    tasks = omniglot.test_tasks(plan)
    scores = scores_of(plan["method"], plan["ways"])
    measured = {}
    for transductive in (True, False):
        clock = Clock()
        accuracy = summarize(100 * embedding_accuracy(model, tasks, scores, transductive))
        measured[transductive] = (accuracy, *clock.totals())
        print(f"{'transductive' if transductive else 'non-transductive'}: {accuracy} "
              f"({measured[transductive][1]:.0f} s wall, {measured[transductive][2]:.0f} s CPU)")
    ours, wall, cpu = measured[False]
    same, _, _ = measured[True]
    key = (plan["ways"], plan["shots"])
    budget = plan | {k: card.get(k) for k in ("train_seconds", "train_cpu_seconds")} | {
        "evaluation": "non-transductive", "eval_seconds": round(wall, 1),
                     "eval_cpu_seconds": round(cpu, 1)}
    notes = [f"paper: {omniglot.PAPER_SOURCE[plan['method']]}, non-transductive",
             f"model: {source}, trained by `{card['command']}`",
             "non-transductive: each query passes through the network in one batch with the support set "
             "only (batch statistics of the support set and that query)",
             f"evaluated {ours.n} test tasks in {wall:.0f} s wall, {cpu:.0f} s CPU, 1 thread",
             f"transductive re-measurement of the same model on the same tasks: {same.mean:.2f} ± "
             f"{same.ci95:.2f} (card: {card['test_accuracy']['mean']:.2f} ± {card['test_accuracy']['ci95']:.2f})"]
    result = Result("omniglot", card["seed"], "cpu", time.perf_counter() - started, budget,
                    [Row(omniglot.LABELS[plan["method"]], f"accuracy_{key[0]}w{key[1]}s_%",
                         omniglot.PAPER[plan["method"]].get(key), ours)],
                    notes, {"model": source})
    result.save_json(args.json)
    print(f"wrote {args.json}", file=sys.stderr)
    return result


if __name__ == "__main__":
    main()
