"""CLI subcommands of this feature, registered by towerrec.cli.build_parser."""
from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:
    """Add this feature's subcommands to the `towerrec` parser (none yet)."""
