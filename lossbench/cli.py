"""The `lossbench` command line: compare losses on a task, list what exists, reprint and redraw runs."""
from __future__ import annotations

import argparse
import sys
from typing import Callable, Sequence

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A user's mistake on the command line: printed as one line, exit code 2."""


def _cmd_losses(args: argparse.Namespace) -> int:
    from lossbench import losses

    for line in losses.describe():
        print(line)
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lossbench",
        description=(
            "Train identical models with different losses (softmax cross-entropy, binary cross-entropy, "
            "MSE) and compare them with confidence intervals over seeds."
        ),
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    p = sub.add_parser("losses", help="list the loss families and their implementations, a line each")
    p.set_defaults(func=_cmd_losses)

    from lossbench.exercises.commands import add_commands

    add_commands(sub)  # `lossbench check`, `lossbench grade`, `lossbench exercises export`
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 a check failed, 2 a usage or data error)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (UsageError, ValueError, FileNotFoundError) as err:
        print(f"lossbench {args.command}: error: {err}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print(f"lossbench {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
