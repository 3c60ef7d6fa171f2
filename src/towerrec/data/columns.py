"""Which column is the user, the item, the rating and the time: found by name, never guessed silently.

Names are matched case-insensitively (`Rating`, `USER_ID` and `userId` all count), and the load
report names the chosen column for every role and every column left unused. Two columns that
differ only in case (`rating` and `Rating`) are an error: picking one would be a guess.

Only `rating` and `weight` are taken as weights without being asked. A column such as `count`,
`plays` or `score` may be a listening count, but as often a feature or a model's output, so it is
reported as ignored until the user names it (`--rating-col count`).
"""
from __future__ import annotations

from dataclasses import dataclass

from towerrec.data.validate import Where, unique_names

# lower-case names, in order of preference; matching is case-insensitive
USER_COLUMNS = ("user_id", "user", "userid", "uid", "customer_id")
ITEM_COLUMNS = ("item_id", "item", "itemid", "iid", "movieid", "movie_id", "product_id")
RATING_COLUMNS = ("rating", "weight")
TIME_COLUMNS = ("timestamp", "time", "ts", "datetime", "position")
ROLE_OPTIONS = {"user": "--user-col", "item": "--item-col", "rating": "--rating-col", "time": "--time-col"}


@dataclass(frozen=True)
class Columns:
    """The column chosen for each role (None: absent) and the columns no role uses."""

    user: str
    item: str
    rating: str | None = None
    time: str | None = None
    ignored: tuple[str, ...] = ()

    @property
    def used(self) -> list[str]:
        return [c for c in (self.user, self.item, self.rating, self.time) if c is not None]

    @property
    def time_kind(self) -> str | None:
        """`position` for a per-user order column, `timestamp` for any other time column."""
        if self.time is None:
            return None
        return "position" if self.time.lower() == "position" else "timestamp"

    def roles(self) -> dict[str, str]:
        return {role: c for role, c in (("user", self.user), ("item", self.item), ("rating", self.rating),
                                        ("time", self.time)) if c is not None}


def _case_matches(names: list[str], wanted: str) -> list[str]:
    return [n for n in names if n.lower() == wanted.lower()]


def named_column(names: list[str], wanted: str, role: str, where: Where) -> str:
    """The column the user named: an exact match, else the one match ignoring case."""
    if wanted in names:
        return wanted
    found = _case_matches(names, wanted)
    if len(found) == 1:
        return found[0]
    if found:
        raise where.error(f"{role} column {wanted!r} is ambiguous: {found} differ only in case",
                          expected="name the column exactly as in the header")
    raise where.error(f"no {role} column {wanted!r}; found {names}")


def find_column(names: list[str], candidates: tuple[str, ...], role: str, where: Where) -> str | None:
    """The first candidate present (case-insensitively); two columns for one candidate are an error."""
    for candidate in candidates:
        found = _case_matches(names, candidate)
        if len(found) > 1:
            raise where.error(f"columns {', '.join(repr(c) for c in found)} differ only in case, so which one is "
                              f"the {role} column is ambiguous",
                              expected=f"one of them (rename or drop the other), or {ROLE_OPTIONS.get(role, 'a')} "
                                       f"naming it")
        if found:
            return found[0]
    return None


def detect_columns(names: list[str], where: Where, *, user: str | None = None, item: str | None = None,
                   rating: str | None = None, time: str | None = None, optional: bool = True) -> Columns:
    """Pick each role's column: the one named, else by the candidate names above.

    `optional=False` leaves rating and time out unless named (`Interactions.from_frame`).
    """
    unique_names(names, where)
    picked: dict[str, str | None] = {}
    for role, wanted, candidates in (("user", user, USER_COLUMNS), ("item", item, ITEM_COLUMNS),
                                     ("rating", rating, RATING_COLUMNS), ("time", time, TIME_COLUMNS)):
        if wanted:
            picked[role] = named_column(names, wanted, role, where)
        elif role in ("user", "item"):
            picked[role] = find_column(names, candidates, role, where)
            if picked[role] is None:
                raise where.error(f"no {role} column found among {names}",
                                  expected=f"one of {list(candidates)} (any case) or {ROLE_OPTIONS[role]}")
        else:
            picked[role] = find_column(names, candidates, role, where) if optional else None
    chosen = [c for c in picked.values() if c is not None]
    if len(set(chosen)) < len(chosen):
        twice = sorted({c for c in chosen if chosen.count(c) > 1})
        raise where.error(f"column(s) {twice} chosen for more than one role ({picked})",
                          expected="a different column for each of user, item, rating and time")
    ignored = tuple(n for n in names if n not in chosen)
    return Columns(user=picked["user"], item=picked["item"], rating=picked["rating"], time=picked["time"],
                   ignored=ignored)
