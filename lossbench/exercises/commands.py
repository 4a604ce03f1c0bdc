"""The exercise commands of the `lossbench` command line: check, grade, exercises export."""
from __future__ import annotations

import argparse


def add_commands(sub: argparse._SubParsersAction) -> None:
    """Register the exercise subcommands on the `lossbench` parser."""
