"""Numbers a lecture quotes in its prose, checked against the stored results they come from.

A lecture shows most measured numbers through code (:mod:`metacourse.results`). A number written
in the text is listed in the lecture's claims table, ``lectures/claims/<lecture>.json``::

    [{"quote": "99.22 ± 0.12",
      "result": {"experiment": "omniglot", "method": "protonet", "shots": 1},
      "values": [["row", "Prototypical Networks", "mean"], ["row", "Prototypical Networks", "ci95"]]}]

:func:`check` finds the quote in the lecture's markdown (or its appendix's, with ``"where":
"appendix"``), reads the numbers in it in order and compares each with the stored value at its
path, rounded to the decimals written (after ``"scale"``, e.g. 1/60 for minutes). A stored
number that changes, or a quote edited by hand, makes the check fail.

Paths: ``["row", METHOD, FIELD]``, ``["row", METHOD, METRIC, FIELD]`` (FIELD: mean, ci95, median,
n), ``["measured", key, ...]``, ``["plan", key, ...]``, ``["wall_seconds"]``, ``["seed"]``.
"""

from __future__ import annotations

import json
import re
from decimal import ROUND_HALF_EVEN, ROUND_HALF_UP, Decimal
from pathlib import Path
from typing import Any

from .. import results

__all__ = ["NUMBER", "check", "claims_of", "markdown_text", "value_at"]

NUMBER = re.compile(r"(?<![\w.])-?\d{1,3}(?:,\d{3})+(?:\.\d+)?|(?<![\w.])-?\d+(?:\.\d+)?")
"""A number as written in prose: ``0.53``, ``1,234``, ``-2.5``."""


def markdown_text(notebook: Path) -> str:
    """The markdown cells of ``notebook``, joined."""
    cells = json.loads(notebook.read_text(encoding="utf-8"))["cells"]
    return "\n\n".join("".join(cell["source"]) if isinstance(cell["source"], list) else cell["source"]
                       for cell in cells if cell["cell_type"] == "markdown")


def claims_of(lecture: Path) -> list[dict[str, Any]]:
    """The claims table of ``lecture`` (``lectures/claims/<stem>.json``; empty when there is none)."""
    table = lecture.parent / "claims" / f"{lecture.stem}.json"
    return json.loads(table.read_text(encoding="utf-8")) if table.is_file() else []


def value_at(stored: results.StoredResult, path: list) -> float:
    """The number at ``path`` in a stored run (see the module's docstring)."""
    head, *rest = path
    if head == "row":
        row = stored.row(*rest[:-1])
        return float(getattr(row.ours, rest[-1]))
    if head in ("measured", "plan"):
        value: Any = getattr(stored, head)
        for key in rest:
            value = value[key]
        return float(value)
    if head in ("wall_seconds", "seed") and not rest:
        return float(getattr(stored, head))
    raise ValueError(f"unknown path {path}: use row / measured / plan / wall_seconds / seed")


def _rounds_to(written: str, value: float) -> bool:
    text = written.replace(",", "")
    places = Decimal(text).as_tuple().exponent
    target = Decimal(repr(value))
    return any(target.quantize(Decimal(1).scaleb(places), rounding=mode) == Decimal(text)
               for mode in (ROUND_HALF_UP, ROUND_HALF_EVEN))


def check(lecture: Path, *, folder: Path | None = None) -> list[str]:
    """Every claim of ``lecture`` that is not in its text or not what the stored result says."""
    texts = {"lecture": markdown_text(lecture)}
    appendix = lecture.parent / "appendix" / f"{lecture.stem}_appendix.ipynb"
    if appendix.is_file():
        texts["appendix"] = markdown_text(appendix)
    failures = []
    for number, claim in enumerate(claims_of(lecture)):
        quote, where = claim["quote"], claim.get("where", "lecture")
        label = f"{lecture.stem} claim {number} {quote!r}"
        if quote not in texts.get(where, ""):
            failures.append(f"{label}: not found in the {where}'s markdown (update the claims table)")
            continue
        try:
            stored = results.load(**claim["result"], folder=folder)
            values = [value_at(stored, path) for path in claim["values"]]
        except (KeyError, LookupError, ValueError, TypeError) as error:
            failures.append(f"{label}: {error}")
            continue
        written = NUMBER.findall(quote)
        if len(written) != len(values):
            failures.append(f"{label}: {len(written)} numbers in the quote, {len(values)} values listed")
            continue
        scales = claim.get("scale", [1.0] * len(values))
        for text, value, scale in zip(written, values, scales):
            if not _rounds_to(text, value * scale):
                failures.append(f"{label}: {text} written, the stored result gives {value * scale!r}")
    return failures

