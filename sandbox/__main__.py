"""``python -m sandbox``: start both vendor APIs (see ``--help``)."""

from __future__ import annotations

import sys

from sandbox.config import parse_args
from sandbox.server import run


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
