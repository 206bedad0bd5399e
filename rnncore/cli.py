"""Command line: ``python -m rnncore <command> ...``.

Each subcommand lives in ``rnncore/commands/<name>.py`` and exposes
``register(subparsers)`` (adds its parser, sets ``func``) -- so this router stays short.
User errors (``ValueError`` and its subclasses) print one line and exit 2.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS = ("train", "evaluate", "generate", "gradflow", "corpus")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m rnncore",
        description="Train, sample and probe recurrent networks with hand-derived BPTT.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMANDS:
        try:
            module = importlib.import_module(f"rnncore.commands.{name}")
        except ModuleNotFoundError as exc:  # a command still being written
            if exc.name != f"rnncore.commands.{name}":
                raise
            continue
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (ValueError, FileNotFoundError, PermissionError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
