"""Lecture 4's Omniglot tables read the stored runs and benchmarks (fast: nothing is trained)."""

from metacourse import results
from metacourse.experiments import omniglot


def test_bfloat16_and_five_query_runs_are_labelled_rows_not_duplicates():
    table = omniglot.gradient_methods_table().data
    rows = [[cell.strip() for cell in line.split("|")[1:4]] for line in table.splitlines()[2:] if line.startswith("| ")]
    assert rows == [["MAML", "float32", "1"], ["MAML", "float32", "5"], ["first-order MAML", "float32", "1"],
                    ["first-order MAML", "float32", "5"], ["first-order MAML", "bfloat16", "1"],
                    ["Reptile", "float32", "— (no query set)"], ["Prototypical Networks", "float32", "5"],
                    ["Prototypical Networks", "bfloat16", "5"]]
    bf16 = results.load("omniglot", method="protonet", shots=1, variant="bf16").rows[0].ours
    assert f"{bf16.mean:.2f} ± {bf16.ci95:.2f} (600)" in table


def test_a_run_without_cpu_time_says_so_and_counts_its_parts():
    table = omniglot.gradient_methods_markdown([results.load("omniglot", method="maml", shots=1)])
    assert "not recorded (99 min wall, 2 parts)" in table


def test_backend_table_compares_every_implementation_with_learn2learn():
    table = omniglot.backend_benchmark_table("a").data
    assert "| learn2learn 0.2.0 MAML |" in table and "1.00× / 1.00×" in table
    assert "| metacourse vmap |" in table and "1 inner step with" in table
    assert "5 inner steps" in omniglot.backend_benchmark_table("b").data
