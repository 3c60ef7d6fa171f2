"""Line numbers of TOML keys, which tomllib does not report.

Error messages about an experiment file must say where the mistake is. This is a position-only
scan of text that tomllib has already accepted: it records the 1-based line of every key, table
header and inline-table key (`("tune", "ease", "l2", "low") -> 42`), skipping strings (also
multi-line ones), comments and array contents, so a string that looks like `key = value` is never
taken for a key.
"""
from __future__ import annotations

import bisect
import re
from collections.abc import Callable

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib  # type: ignore[no-redef]

__all__ = ["key_lines", "table_headers", "tomllib"]


class _Locator:
    """A position-only scan of valid TOML: records `path -> line` for every key it meets."""

    _BARE = re.compile(r"[A-Za-z0-9_-]+")

    def __init__(self, text: str) -> None:
        self.s, self.i = text, 0
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]
        self.lines: dict[tuple[str, ...], int] = {}
        self.headers: list[tuple[int, tuple[str, ...]]] = []

    def line(self, pos: int) -> int:
        return bisect.bisect_right(self.starts, pos)

    def record(self, path: tuple[str, ...], pos: int) -> None:
        self.lines.setdefault(path, self.line(pos))

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def skip(self, newlines: bool) -> None:
        """Skip blanks, and when `newlines`, also line breaks and comments."""
        while self.i < len(self.s):
            c = self.s[self.i]
            if c in " \t\r" or (newlines and c == "\n"):
                self.i += 1
            elif c == "#" and newlines:
                end = self.s.find("\n", self.i)
                self.i = len(self.s) if end < 0 else end
            else:
                return

    def string(self) -> str:
        s, i = self.s, self.i
        quote = s[i]
        if s.startswith(quote * 3, i):
            end = s.find(quote * 3, i + 3)
            while quote == '"' and end > 0 and _escaped(s, end):
                end = s.find(quote * 3, end + 1)
            while s.startswith(quote, end + 3):  # up to two quotes may precede the closing three
                end += 1
            self.i = end + 3
            return s[i + 3:end]
        j = i + 1
        while s[j] != quote or (quote == '"' and _escaped(s, j)):
            j += 1
        self.i = j + 1
        raw = s[i + 1:j]
        return tomllib.loads(f"k = {s[i:j + 1]}")["k"] if "\\" in raw else raw

    def key(self) -> tuple[str, ...]:
        parts = []
        while True:
            self.skip(False)
            if self.peek() in ('"', "'"):
                parts.append(self.string())
            else:
                m = self._BARE.match(self.s, self.i)
                if not m:
                    break
                parts.append(m.group())
                self.i = m.end()
            self.skip(False)
            if self.peek() != ".":
                break
            self.i += 1
        return tuple(parts)

    def value(self, path: tuple[str, ...]) -> None:
        self.skip(False)
        c = self.peek()
        if c in ('"', "'"):
            self.string()
        elif c == "[":
            self.items("]", lambda: self.value(path))
        elif c == "{":
            self.items("}", lambda: self.pair(path))
        else:  # number, bool, date: up to the next delimiter
            while self.i < len(self.s) and self.s[self.i] not in ",]}\n#":
                self.i += 1

    def items(self, close: str, one: Callable[[], None]) -> None:
        """An array or inline table: `one()` per element, separated by commas, up to `close`."""
        self.i += 1
        while True:
            self.skip(True)
            if self.peek() in (close, ""):
                self.i += 1
                return
            one()
            self.skip(True)
            if self.peek() == ",":
                self.i += 1

    def pair(self, path: tuple[str, ...]) -> None:
        """`key = value` inside an inline table."""
        start = self.i
        key = self.key()
        self.record(path + key, start)
        self.skip(False)
        self.i += 1  # '='
        self.value(path + key)

    def document(self) -> dict[tuple[str, ...], int]:
        table: tuple[str, ...] = ()
        while True:
            self.skip(True)
            if self.i >= len(self.s):
                return self.lines
            start = self.i
            if self.peek() == "[":
                double = self.s.startswith("[[", self.i)
                self.i += 2 if double else 1
                table = self.key()
                self.record(table, start)
                self.headers.append((self.line(start), table))
                self.skip(False)
                self.i += 2 if double else 1
            else:
                key = self.key()
                if not key:  # not TOML we understand: stop rather than loop
                    return self.lines
                self.record(table + key, start)
                for n in range(1, len(key)):  # dotted keys define their parent tables here
                    self.record(table + key[:n], start)
                self.skip(False)
                self.i += 1  # '='
                self.value(table + key)


def _escaped(s: str, pos: int) -> bool:
    """Is the character at `pos` preceded by an odd number of backslashes?"""
    n = 0
    while pos - n - 1 >= 0 and s[pos - n - 1] == "\\":
        n += 1
    return n % 2 == 1


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """1-based line of every key, table header and inline-table key of a valid TOML text."""
    return _Locator(text).document()


def table_headers(text: str) -> list[tuple[int, tuple[str, ...]]]:
    """(1-based line, path) of every `[table]` / `[[array]]` header of a valid TOML text, in order."""
    locator = _Locator(text)
    locator.document()
    return locator.headers
