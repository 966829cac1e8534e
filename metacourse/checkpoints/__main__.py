"""``python -m metacourse.checkpoints runs/NAME-seedS-DIGEST.pt [...]``: ship trained checkpoints with the package."""

from __future__ import annotations

import sys

from . import ship


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(__doc__.strip().strip("`"))
        print("Copies a checkpoint and its card (written by `metacourse reproduce omniglot`) into "
              "metacourse/checkpoints/ as NAME.pt and NAME.json, after checking the card.")
        return 0 if argv else 2
    for path in argv:
        try:
            print(f"shipped {ship(path)}")
        except (OSError, ValueError) as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
