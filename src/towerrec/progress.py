"""Progress bars that appear only on a terminal (tqdm), so logs and CI stay clean."""
from __future__ import annotations

import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from tqdm.auto import tqdm

T = TypeVar("T")


def enabled(flag: bool | None = None) -> bool:
    """Explicit flag wins; else on only when stderr is a TTY and TOWERREC_PROGRESS != 0."""
    if flag is not None:
        return flag
    return sys.stderr.isatty() and os.environ.get("TOWERREC_PROGRESS", "1") != "0"


def progress(it: Iterable[T], *, desc: str = "", total: int | None = None, show: bool | None = None,
             **kwargs: object) -> Iterator[T] | tqdm:
    """Wrap `it` in a tqdm bar when enabled, else return it unchanged."""
    if not enabled(show):
        return iter(it)
    return tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True, **kwargs)
