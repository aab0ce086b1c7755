"""python -m micrograd_fast demo | digits | bench | run script.py [args...]"""
from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from typing import Optional

USAGE = """usage: python -m micrograd_fast COMMAND [args...]

commands:
  demo                 train micrograd's moons MLP and report loss, accuracy and time
  digits               train an MLP on 8x8 handwritten digits with cross-entropy (needs the
                       demo extra: pip install "micrograd_fast[demo]")
  bench                time the engines side by side and print the table
  run SCRIPT [args]    run an unmodified micrograd script with micrograd served by micrograd_fast

`python -m micrograd_fast COMMAND --help` describes each command; --version prints the version.
"""


def main(argv: Optional[Sequence[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv:  # a usage error, as for any command line without its command
        print(USAGE, end="", file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help"):
        print(USAGE, end="")
        return 0
    if argv[0] in ("-V", "--version"):
        from . import __version__
        from .engine import BACKEND

        print(f"micrograd_fast {__version__} ({BACKEND} engine, Python "
              f"{sys.version.split()[0]})")
        return 0
    command, rest = argv[0], argv[1:]
    run: Callable[[list[str]], int]
    if command == "demo":
        from .demo import main as run
    elif command == "digits":
        from .digits import main as run
    elif command == "bench":
        from .benchmark import main as run
    elif command == "run":
        from .dropin import run_main

        return run_main(rest, restore=False)  # the process ends with the script
    else:
        print(f"unknown command {command!r}\n\n{USAGE}", end="", file=sys.stderr)
        return 2
    return run(rest)


if __name__ == "__main__":
    sys.exit(main())
