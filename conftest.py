"""Set-up for every pytest run of the repository (tests/, lectures/, solutions/).

Notebooks run with their own folder as the working directory, so a relative ``METACOURSE_DATA``
(the README's ``../shared/data``) is made absolute here, against the folder pytest was started
from, before any kernel starts.
"""

from __future__ import annotations

import os
from pathlib import Path

if os.environ.get("METACOURSE_DATA"):
    os.environ["METACOURSE_DATA"] = str(Path(os.environ["METACOURSE_DATA"]).expanduser().resolve())
