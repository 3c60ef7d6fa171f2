"""Progress and logging: bars on a terminal, log lines everywhere.

Every module logs to a child of the `towerrec` logger (`logging.getLogger(__name__)`); the library
adds no handler of its own, so an application decides where messages go. The CLI calls
`configure_logging` (`-v` DEBUG, default INFO, `-q` WARNING): messages go to stderr, results to stdout.

Bars (tqdm) appear only on a terminal and vanish when done; a finished bar leaves a one-line
summary at INFO, so a terminal session keeps a record. Off a terminal there are no bars and the
training loop logs one line per epoch instead.
"""
from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Iterable, Iterator
from typing import TypeVar

T = TypeVar("T")
log = logging.getLogger("towerrec")


def enabled(flag: bool | None = None) -> bool:
    """Explicit flag wins; else on only when stderr is a TTY and TOWERREC_PROGRESS != 0."""
    if flag is not None:
        return flag
    return sys.stderr.isatty() and os.environ.get("TOWERREC_PROGRESS", "1") != "0"


class Progress(Iterator[T]):
    """An iterator with an optional tqdm bar: `set_postfix(**values)` shows values on it, `shown`
    says whether there is one, and a finished bar logs one summary line at INFO."""

    def __init__(self, it: Iterable[T], *, desc: str, total: int | None, show: bool, summary: bool,
                 **kwargs: object) -> None:
        self.desc, self.summary, self.shown = desc, summary, show
        self._bar = None
        if show:
            from tqdm.auto import tqdm

            self._bar = tqdm(it, desc=desc, total=total, leave=False, dynamic_ncols=True, **kwargs)
        self._it = iter(self._bar if self._bar is not None else it)
        self._start, self._n, self._postfix = time.perf_counter(), 0, ""

    def __iter__(self) -> "Progress[T]":
        return self

    def __next__(self) -> T:
        try:
            item = next(self._it)
        except StopIteration:
            if self._bar is not None and self.summary:
                n = self._n
                log.info("%s: %d step%s in %.1f s%s", self.desc or "done", n, "" if n == 1 else "s",
                         time.perf_counter() - self._start, f" ({self._postfix})" if self._postfix else "")
            raise
        self._n += 1
        return item

    def set_postfix(self, **values: object) -> None:
        self._postfix = ", ".join(f"{k} {v}" for k, v in values.items())
        if self._bar is not None:
            self._bar.set_postfix(**values)


def progress(it: Iterable[T], *, desc: str = "", total: int | None = None, show: bool | None = None,
             summary: bool = True, **kwargs: object) -> Progress[T]:
    """`it` with a tqdm bar when enabled (a terminal, or `show=True`); when the bar finishes one INFO
    line `desc: n steps in s` replaces it (`summary=False` for bars inside a larger one)."""
    return Progress(it, desc=desc, total=total, show=enabled(show), summary=summary, **kwargs)


class _Formatter(logging.Formatter):
    """Plain messages at INFO (what a user reads); level and logger name otherwise."""

    def format(self, record: logging.LogRecord) -> str:
        if record.levelno == logging.INFO:
            return record.getMessage()
        if record.levelno >= logging.WARNING:
            return f"towerrec: {record.levelname.lower()}: {record.getMessage()}"
        return f"{record.name}: {record.getMessage()}"


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever `sys.stderr` is at emit time, so a redirected (or test-captured and
    since closed) stream is never written to after it is replaced."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def configure_logging(verbosity: int = 0) -> None:
    """Send `towerrec` logs to stderr: verbosity -1 WARNING (`-q`), 0 INFO, 1 DEBUG (`-v`)."""
    level = logging.WARNING if verbosity < 0 else logging.DEBUG if verbosity > 0 else logging.INFO
    log.setLevel(level)
    for handler in list(log.handlers):
        if getattr(handler, "_towerrec_cli", False):
            log.removeHandler(handler)
    handler = _StderrHandler()
    handler._towerrec_cli = True  # type: ignore[attr-defined]
    handler.setFormatter(_Formatter())
    log.addHandler(handler)
    log.propagate = False
