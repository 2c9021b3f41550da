"""The ``nnh`` command.

* ``nnh grade ASSIGNMENT ...`` grades a class (see :mod:`nnh.grade`);
* ``nnh ablation --seeds 5 --out results.json`` runs the capstone experiment
  (see :mod:`nnh.ablation`).

Subcommands are registered in :data:`COMMANDS` (name → (module, help)); each
module has ``main(argv) -> int``.
"""

from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = {
    "grade": ("nnh.grade", "grade a class's submissions with nbgrader, in parallel"),
    "ablation": ("nnh.ablation", "run the bag-of-tricks ablation (every configuration, several seeds)"),
}


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = argparse.ArgumentParser(prog="nnh", description="Tools of the nnh course.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    if not argv or argv[0] in {"-h", "--help"} or argv[0] not in COMMANDS:
        parser.parse_args(argv)  # prints help or the error, exits
    module = importlib.import_module(COMMANDS[argv[0]][0])
    return module.main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
