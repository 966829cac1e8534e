"""The ``metacourse`` command line.

    metacourse list                                   registered experiments
    metacourse reproduce sinusoid [--fast] [--meta-steps N] [--seed S] [--device D] [--json FILE]
    metacourse reproduce NAME --help                  the options of one experiment, its own included
    metacourse labs build | check | strip             generate labs/ from solutions/ and verify, verify, strip outputs
    metacourse results FILE.json [...]                saved results as Markdown tables
    metacourse colab apply | check                    "Open in Colab" badges and setup cells
    metacourse grade LAB SUBMISSIONS --out DIR        grade a class's submitted labs, each in a sandbox
    metacourse site [--out DIR]                       the course website (Jupyter Book) in DIR/_build/html
"""

from __future__ import annotations

import argparse
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path


class _Parser(argparse.ArgumentParser):
    """argparse with errors as one line, ``metacourse: error: ...``, and exit status 2."""

    def error(self, message: str):
        self.exit(2, f"metacourse: error: {message} (see `{self.prog} --help`)\n")


def _integer(minimum: int, meaning: str = ""):
    """An argparse type: an integer >= ``minimum`` (argparse names the option in its error)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"takes a whole number, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be {minimum} or more, got {value}"
                                             + (f" ({meaning})" if meaning else ""))
        return value
    parse.__name__ = "integer"
    return parse


def _reproduce_options(rep: argparse.ArgumentParser) -> None:
    """The options every experiment takes."""
    rep.add_argument("--fast", action="store_true", default=None,
                     help="tiny budget: a smoke test, not a reproduction (also: METACOURSE_FAST=1)")
    rep.add_argument("--meta-steps", type=_integer(1), default=None,
                     help="override the number of meta-steps")
    rep.add_argument("--seed", type=_integer(0, "seeds are non-negative"), default=0)
    rep.add_argument("--device", default=None, help="cpu, cuda, cuda:N, mps (default: the experiment's choice)")
    rep.add_argument("--json", default=None, metavar="FILE", help="also write the results as JSON")
    rep.add_argument("--out-dir", default="runs", help="checkpoints and plots (default: runs/)")
    rep.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="metacourse", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    commands.add_parser("list", help="list the registered experiments")
    rep = commands.add_parser("reproduce", help="run an experiment and print paper vs ours", add_help=False,
                              epilog="Experiments may take options of their own: "
                                     "`metacourse reproduce NAME --help`.")
    rep.add_argument("experiment", nargs="?", help="name of the experiment (see `metacourse list`)")
    rep.add_argument("-h", "--help", action="store_true", help="show the options (those of EXPERIMENT too)")
    _reproduce_options(rep)
    labs = commands.add_parser("labs", help="generate or check labs/ from solutions/")
    labs.add_argument("action", choices=("build", "check", "strip"),
                      help="build labs/ and check them, only check them, or strip outputs from solutions and labs")
    labs.add_argument("--solutions", default="solutions")
    labs.add_argument("--labs", default="labs")
    results = commands.add_parser(
        "results", help="print saved results (--json files) as Markdown tables, or the course's stored results",
        epilog="metacourse results --markdown > docs/results.md; metacourse results --catalogue (after adding "
               "a file to results/)")
    results.add_argument("files", nargs="*", metavar="FILE.json")
    results.add_argument("--markdown", action="store_true",
                         help="print every stored run in results/ as the page docs/results.md")
    results.add_argument("--catalogue", action="store_true",
                         help="rewrite results/catalogue.json, the index metacourse.results.load reads")
    colab = commands.add_parser("colab", help="add or check the Colab badge and setup cell of every notebook")
    colab.add_argument("action", choices=("apply", "check"),
                       help="apply: write them into lectures/ and solutions/; check: list what is stale")
    grade = commands.add_parser(
        "grade", help="grade a class's submitted labs, each submission in a sandbox of its own (bubblewrap)",
        epilog="example: metacourse grade lab04_maml_sinusoid submissions/ --out graded/ --jobs 2")
    grade.add_argument("lab", help="the lab: its solution's path, stem or a prefix naming one "
                                   "(e.g. lab04_maml_sinusoid)")
    grade.add_argument("submissions", help="folder of SUBMISSIONS/<student>.ipynb or SUBMISSIONS/<student>/*.ipynb")
    grade.add_argument("--out", required=True, metavar="DIR", help="where results.json, grades.csv, report.md go")
    grade.add_argument("--solutions", default="solutions", help="folder of solution notebooks (hidden checks)")
    grade.add_argument("--jobs", type=int, default=1, help="notebooks graded at the same time")
    grade.add_argument("--cell-timeout", type=float, default=120, help="seconds per notebook cell")
    grade.add_argument("--total-timeout", type=float, default=900, help="seconds per notebook")
    grade.add_argument("--check-timeout", type=float, default=120, help="seconds per check cell")
    grade.add_argument("--student", action="append", default=None, help="grade only this student (repeatable)")
    grade.add_argument("--hidden-visibility", default="after_published",
                       choices=("hidden", "after_due_date", "after_published", "visible"),
                       help="Gradescope visibility of checks with hidden tests (default: after_published)")
    grade.add_argument("--no-sandbox", action="store_true",
                       help="run the students' code with your own rights, without a sandbox: trusted work only")
    site = commands.add_parser("site", help="build the course website (Jupyter Book 1) from the notebooks and docs")
    site.add_argument("--out", default=None, metavar="DIR", help="build folder (default: build/site)")
    return parser


def _reproduce(args: argparse.Namespace) -> int:
    """Check every option and output first, then run: a mistake costs seconds, not a training run."""
    from .paths import check_writable

    if args.experiment is None:
        if args.help:
            _help_parser(None).print_help()
            return 0
        raise ValueError("reproduce needs the experiment's name, e.g. `metacourse reproduce sinusoid`; "
                         "`metacourse list` names them all")
    if not args.help:  # the outputs first: the cheapest checks, and the costliest to fail late
        if args.json:
            check_writable(args.json, "--json")
        check_writable(args.out_dir, "--out-dir", folder=True)
    from .reproduce import RunOptions, get_experiment, with_defaults  # torch: after the cheap checks
    from .utils import check_device, fast_mode

    if not args.help:
        if args.device is not None and args.device != "auto":
            check_device(args.device, "--device")
    experiment = get_experiment(args.experiment)
    if args.help:
        _help_parser(experiment).print_help()
        return 0
    extra = with_defaults(experiment, _experiment_options(experiment, args.rest))
    fast = bool(args.fast)
    if args.fast is None and fast_mode():
        fast = True
        print("metacourse: METACOURSE_FAST is set: a FAST run (a smoke test with a tiny budget, not a "
              "reproduction); unset it for the full budget", file=sys.stderr)
    options = RunOptions(fast=fast, meta_steps=args.meta_steps, seed=args.seed,
                         device=args.device, out_dir=args.out_dir, progress=not args.no_progress,
                         extra=extra)
    result = experiment.run(options)
    if args.device is not None and args.device != "auto" and args.device.split(":")[0] != result.device.split(":")[0]:
        result.notes.append(f"--device {args.device} was not used: {experiment.name} ran on {result.device}")
    print(result.table())
    for name, path in result.artifacts.items():
        print(f"{name}: {path}")
    if args.json:
        result.save_json(args.json)
        print(f"json: {args.json}")
    return 0


def _experiment_parser(experiment, parser: argparse.ArgumentParser | None = None) -> argparse.ArgumentParser:
    """The options an experiment declares (e.g. ``--arms 5``), added to ``parser`` (or a new one)."""
    parser = parser or _Parser(prog=f"metacourse reproduce {experiment.name}")
    group = parser.add_argument_group(f"options of {experiment.name}") if experiment.arguments else parser
    for argument in experiment.arguments:
        kind = argument.type
        if argument.minimum is not None and argument.choices is None:
            kind = _integer(argument.minimum, argument.help)
        group.add_argument(argument.flag, type=kind, default=argument.default, choices=argument.choices,
                           help=f"{argument.help} (default: {argument.default})")
    return parser


def _help_parser(experiment) -> argparse.ArgumentParser:
    """``metacourse reproduce NAME --help``: the common options and the experiment's own."""
    name = experiment.name if experiment else "EXPERIMENT"
    parser = _Parser(prog=f"metacourse reproduce {name}",
                     description=experiment.description if experiment else "run an experiment and print paper vs ours",
                     epilog=None if experiment else "`metacourse list` names the experiments; "
                     "`metacourse reproduce NAME --help` shows an experiment's own options too.")
    _reproduce_options(parser)
    return _experiment_parser(experiment, parser) if experiment else parser


def _experiment_options(experiment, rest: list[str]) -> dict:
    """Parse the options an experiment declares (e.g. ``--arms 5``) from the remaining arguments."""
    return vars(_experiment_parser(experiment).parse_args(rest))


def _labs(args: argparse.Namespace) -> int:
    from .course import labs

    if args.action == "strip":
        notebooks = sorted([*Path(args.solutions).glob("*.ipynb"), *Path(args.labs).glob("*.ipynb")])
        for path in notebooks:
            if labs.strip_outputs(path):
                print(f"stripped {path}")
        return 0
    if args.action == "build":  # build, then check what was built: one command for instructors
        for path in labs.build_labs(args.solutions, args.labs):
            print(f"wrote {path}")
    problems = labs.check_labs(args.solutions, args.labs)
    for problem in problems:
        print(problem, file=sys.stderr)
    print("labs are in sync with solutions" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _results(args: argparse.Namespace) -> int:
    import json

    from . import results
    from .reproduce import Result

    if args.markdown or args.catalogue:
        if args.files:
            raise ValueError("--markdown and --catalogue read the whole results/ folder: give no FILE.json with them")
        folder = results.results_folder()
        if folder is None:
            raise FileNotFoundError("there is no results/ folder here: run this in a clone of the course")
        if args.catalogue:
            (folder / results.CATALOGUE).write_text(json.dumps(results.build_catalogue(folder), indent=1) + "\n")
            print(f"wrote {folder / results.CATALOGUE}")
        if args.markdown:
            print(results.markdown_page(folder), end="")
        return 0
    if not args.files:
        raise ValueError("name result files (metacourse results FILE.json ...), or use --markdown / --catalogue")
    for path in args.files:
        try:
            result = Result.from_dict(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError, KeyError, TypeError) as error:
            raise ValueError(f"{path} is not a results file written by `metacourse reproduce --json` "
                             f"({error!r})") from None
        print(f"### {result.experiment} ({path})\n\n{result.markdown()}\n")
    return 0


def _colab(args: argparse.Namespace) -> int:
    import nbformat

    from .course import colab
    from .course.labs import find_root

    root = find_root()
    notebooks = sorted([*(root / "lectures").glob("*.ipynb"), *(root / "solutions").glob("*.ipynb")])
    if args.action == "check":
        notebooks += sorted((root / "labs").glob("*.ipynb"))
    problems = []
    for path in notebooks:
        nb = nbformat.read(path, as_version=4)
        relative = path.relative_to(root)
        if args.action == "check":
            problems += colab.check(nb, relative)
        elif colab.check(nb, relative):
            nbformat.write(colab.apply(nb, relative), path)
            print(f"updated {relative}")
    if args.action == "apply":
        print("labs/ get theirs from `metacourse labs build`")
        return 0
    for problem in problems:
        print(problem, file=sys.stderr)
    print("every notebook has its Colab badge and setup cell" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def _grade(args: argparse.Namespace) -> int:
    from .course.grading import SandboxUnavailable, grade

    try:
        summary = grade(args.lab, args.submissions, args.out, solutions_dir=args.solutions, jobs=args.jobs,
                        cell_timeout=args.cell_timeout, total_timeout=args.total_timeout,
                        check_timeout=args.check_timeout, students=args.student, sandbox=not args.no_sandbox,
                        hidden_visibility=args.hidden_visibility)
    except SandboxUnavailable as error:
        print(f"metacourse: error: {error}", file=sys.stderr)
        return 2
    print(summary.table())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.command != "reproduce":
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    args.rest = rest  # an experiment's own options, parsed once the experiment is known
    try:
        if args.command == "list":
            from .reproduce import experiment_names, get_experiment

            for name in experiment_names():
                experiment = get_experiment(name)
                flags = " ".join(f"[{a.flag} {a.key.upper()}]" for a in experiment.arguments)
                print(f"{name:<24} {experiment.description}" + (f"\n{'':<24} {flags}" if flags else ""))
            return 0
        if args.command == "reproduce":
            return _reproduce(args)
        if args.command == "results":
            return _results(args)
        if args.command == "colab":
            return _colab(args)
        if args.command == "grade":
            return _grade(args)
        if args.command == "site":
            from .course.site import main as site

            return site(args.out)
        return _labs(args)
    except (ValueError, OSError, FloatingPointError) as error:  # bad input, a file, a diverged run
        print(f"metacourse: error: {_one_line(error)}", file=sys.stderr)
        return 2
    except ImportError as error:
        package = getattr(error, "name", None) or "the package named above"
        print(f"metacourse: error: {_one_line(error)}; this command needs an optional package: "
              f"pip install {package}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as error:
        print(f"metacourse: interrupted{': ' + str(error) if str(error) else ''}", file=sys.stderr)
        return 130
    except Exception:
        traceback.print_exc()
        print("metacourse: internal error: the traceback above is a bug in metacourse, not a problem with "
              "your input; please report it with the command you ran", file=sys.stderr)
        return 1


def _one_line(error: BaseException) -> str:
    """An error as one line: an OSError's file and reason, anything else its message."""
    if isinstance(error, OSError) and error.strerror:
        where = f" {error.filename!s}" if error.filename else ""
        return f"{error.strerror}:{where}"
    return " ".join(str(error).split()) or type(error).__name__


if __name__ == "__main__":
    sys.exit(main())
