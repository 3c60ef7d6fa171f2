"""Config overrides: the one place that turns `{name: value}` into a new frozen config dataclass.

`Recommender(config, **overrides)`, the registry's `build_model` and the experiment-file validator
all go through `apply_overrides` / `resolve_overrides`, so a name means the same thing in Python,
on the command line and in a TOML file, and a typo is an error everywhere (never a silent default).

Rules, for a config dataclass whose fields may themselves be config dataclasses (`train: TrainConfig`):
- a top-level field by name: `l2 = 500.0`;
- a nested field by dotted path: `train.epochs = 5`; TOML dotted keys and `[models.x.train]`
  sub-tables arrive as the nested dict `{"train": {"epochs": 5}}`, which means the same;
- a plain glossary name (`epochs = 5`) when the config has no such field itself and exactly one
  nested dataclass field (at any depth) has it: it is routed there; two candidates are an error
  asking for the dotted path;
- values are checked against the field's current value (its default): a list becomes a tuple where
  the default is a tuple, an integer becomes a float for a float field and an integral float an int
  for an int field; a `None` default is checked against the field's annotation where it resolves;
- a config class may accept other names for its fields (`ALIASES`, a ClassVar): ALS takes its
  published `factors` and `iterations` for the glossary's `embedding_dim` and `epochs`;
- an unknown name is an error with a "did you mean" and the known names.
"""
from __future__ import annotations

import dataclasses
import difflib
import numbers
import types
import typing
from collections.abc import Iterator, Mapping
from typing import Any, TypeVar

from towerrec.errors import TowerrecError

C = TypeVar("C")


class OverrideError(TowerrecError):
    """A bad override; `keypath` is the offending key's path inside the overrides mapping, so a
    TOML reader can turn it into `file:line` (`[models.x.train] epchs = 5` -> ("train", "epchs"))."""

    def __init__(self, keypath: tuple[str, ...], message: str) -> None:
        self.keypath = keypath
        super().__init__(message)


def did_you_mean(name: str, candidates: list[str] | tuple[str, ...] | set[str]) -> str:
    """`" (did you mean 'x'?)"` for the closest candidate (difflib), or `""` when none is close."""
    close = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def field_paths(config: Any) -> list[str]:
    """Every settable name of `config` as a dotted path, nested dataclass fields expanded."""
    out: list[str] = []
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out += [f"{f.name}.{p}" for p in field_paths(value)]
        else:
            out.append(f.name)
    return out


def _nested(config: Any) -> Iterator[tuple[str, Any]]:
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            yield f.name, value


def _descendants(config: Any, name: str, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Paths below `config`'s nested dataclass fields whose last part is `name`."""
    found = []
    for field_name, value in _nested(config):
        path = prefix + (field_name,)
        if name in {f.name for f in dataclasses.fields(value)}:
            found.append(path + (name,))
        found += _descendants(value, name, path)
    return found


def _unknown(config: Any, name: str, keypath: tuple[str, ...], where: str) -> OverrideError:
    paths = field_paths(config)
    leaves = {p.rsplit(".", 1)[-1] for p in paths}
    hint = did_you_mean(name, [*paths, *leaves])
    return OverrideError(keypath, f"unknown field {name!r}{where}{hint}; known fields: {', '.join(paths)}")


def resolve_name(config: Any, name: str, *, keypath: tuple[str, ...] | None = None,
                 where: str = "") -> tuple[str, ...]:
    """The field path that `name` (a field, a dotted path or a glossary name) sets in `config`."""
    keypath = keypath if keypath is not None else (name,)
    name = getattr(type(config), "ALIASES", {}).get(name, name)   # e.g. ALS's published `factors`
    parts = tuple(name.split("."))
    names = {f.name for f in dataclasses.fields(config)}
    if len(parts) == 1 and parts[0] not in names:
        routes = _descendants(config, parts[0])
        if len(routes) == 1:
            return routes[0]
        if len(routes) > 1:
            options = " or ".join(repr(".".join(r)) for r in routes)
            raise OverrideError(keypath, f"field {name!r}{where} is ambiguous: write {options}")
        raise _unknown(config, name, keypath, where)
    node, path = config, ()
    for i, part in enumerate(parts):
        if not dataclasses.is_dataclass(node) or part not in {f.name for f in dataclasses.fields(node)}:
            raise _unknown(config, name, keypath, where)
        path += (part,)
        if i < len(parts) - 1:
            node = getattr(node, part)
    return path


def get_path(config: Any, path: tuple[str, ...]) -> Any:
    """The value at a field path (`("train", "epochs")`)."""
    for part in path:
        config = getattr(config, part)
    return config


# ---- values ------------------------------------------------------------------------------------
def _integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _tupled(value: Any) -> Any:
    return tuple(_tupled(v) for v in value) if isinstance(value, (list, tuple)) else value


def _annotation(config: Any, name: str) -> Any:
    try:
        return typing.get_type_hints(type(config)).get(name)
    except (NameError, TypeError, AttributeError):  # unresolvable here: check nothing rather than guess
        return None


def _matches_annotation(value: Any, annotation: Any) -> bool | None:
    """Does `value` fit `int | None`-style annotations? None when the annotation is not simple."""
    args = typing.get_args(annotation) if typing.get_origin(annotation) in (typing.Union, types.UnionType) \
        else (annotation,)
    simple = [a for a in args if a in (int, float, str, bool, type(None))]
    if len(simple) != len(args):
        return None
    if value is None:
        return type(None) in simple
    return ((bool in simple and isinstance(value, bool)) or (int in simple and _integer(value))
            or (float in simple and _number(value)) or (str in simple and isinstance(value, str)))


def _kind(value: Any) -> str:
    if isinstance(value, bool):
        return "true or false"
    if _integer(value):
        return "an integer"
    if _number(value):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, (tuple, list)):
        return "a list"
    return f"a {type(value).__name__}"


_PLURAL = {"true or false": "true/false values", "an integer": "integers", "a number": "numbers",
           "a string": "strings"}


def check_value(config: Any, path: tuple[str, ...], value: Any, *, keypath: tuple[str, ...] = (),
                where: str = "") -> Any:
    """`value` converted for the field at `path` (list -> tuple, int <-> float), or an OverrideError."""
    dotted = ".".join(path)
    parent = get_path(config, path[:-1])
    current = getattr(parent, path[-1])

    def bad(expected: str) -> OverrideError:
        return OverrideError(keypath, f"{dotted}{where} must be {expected}, got {value!r}")

    if current is None:
        ok = _matches_annotation(value, _annotation(parent, path[-1]))
        if ok is False:
            raise bad(f"of type {_annotation(parent, path[-1])}")
        return _tupled(value)
    if isinstance(current, bool):
        if not isinstance(value, bool):
            raise bad("true or false")
        return value
    if _integer(current):
        if _integer(value) or (_number(value) and float(value).is_integer()):
            return int(value)
        raise bad("an integer")
    if _number(current):
        if not _number(value):
            raise bad("a number")
        return float(value)
    if isinstance(current, str):
        if not isinstance(value, str):
            raise bad("a string")
        return value
    if isinstance(current, (tuple, list)):
        if not isinstance(value, (list, tuple)):
            raise bad("a list")
        if current and not isinstance(current[0], (list, tuple)):
            for element in value:
                try:
                    check_value(_Holder(current[0]), ("value",), element)
                except OverrideError:
                    raise bad(f"a list of {_PLURAL.get(_kind(current[0]), 'values like ' + repr(current[0]))}") from None
        return _tupled(value) if isinstance(current, tuple) else list(value)
    if dataclasses.is_dataclass(current):
        if not isinstance(value, type(current)):
            raise bad(f"a {type(current).__name__} or a table of its fields")
        return value
    if not isinstance(value, type(current)):
        raise bad(_kind(current))
    return value


@dataclasses.dataclass(frozen=True)
class _Holder:
    """A one-field config, to check list elements with the same rules as fields."""

    value: Any


# ---- overrides ---------------------------------------------------------------------------------
def resolve_overrides(config: Any, overrides: Mapping[str, Any], *, where: str = "",
                      _prefix: tuple[str, ...] = (), _keypath: tuple[str, ...] = ()) -> dict[str, Any]:
    """`{canonical dotted path: checked value}` for `overrides` on `config` (nothing applied yet).

    Raises `OverrideError` whose `keypath` is the offending key's path inside `overrides`; `where`
    ends each message (e.g. " for model 'ease' in [models.x]")."""
    out: dict[str, Any] = {}
    given: dict[str, str] = {}
    node = get_path(config, _prefix)
    for key, value in overrides.items():
        keypath = _keypath + (key,)
        shown = ".".join(keypath)
        local = resolve_name(node, key, keypath=keypath, where=where)
        path = _prefix + local
        target = get_path(config, path)
        if isinstance(value, Mapping) and dataclasses.is_dataclass(target) and not isinstance(target, type):
            inner = resolve_overrides(config, value, where=where, _prefix=path, _keypath=keypath)
        else:
            inner = {".".join(path): check_value(config, path, value, keypath=keypath, where=where)}
        for dotted, checked in inner.items():
            if dotted in given:
                raise OverrideError(keypath, f"{dotted}{where} is given twice ({given[dotted]!r} and {shown!r})")
            given[dotted] = shown
            out[dotted] = checked
    return out


def _apply(node: Any, flat: dict[tuple[str, ...], Any]) -> Any:
    changes: dict[str, Any] = {p[0]: v for p, v in flat.items() if len(p) == 1}
    groups: dict[str, dict[tuple[str, ...], Any]] = {}
    for p, v in flat.items():
        if len(p) > 1:
            groups.setdefault(p[0], {})[p[1:]] = v
    for name, sub in groups.items():
        changes[name] = _apply(changes.get(name, getattr(node, name)), sub)
    return dataclasses.replace(node, **changes)


def apply_overrides(config: C, overrides: Mapping[str, Any] | None, *, source: str = "config",
                    where: str = "") -> C:
    """A copy of the frozen dataclass `config` with `overrides` set (rules: module docstring).

    >>> apply_overrides(SASRecConfig(), {"epochs": 5, "dropout": 0.2})     # doctest: +SKIP

    Errors are `TowerrecError`s starting with `source` ("SASRec", a file name, "--config")."""
    if not overrides:
        return config
    try:
        flat = resolve_overrides(config, overrides, where=where)
    except OverrideError as exc:
        raise TowerrecError(f"{source}: {exc}") from None
    return _apply(config, {tuple(k.split(".")): v for k, v in flat.items()})


def config_diff(default: Any, config: Any, prefix: str = "") -> list[tuple[str, Any]]:
    """(dotted path, value) of every field of `config` that differs from `default` (same class)."""
    out: list[tuple[str, Any]] = []
    for f in dataclasses.fields(config):
        a, b = getattr(default, f.name, None), getattr(config, f.name)
        if dataclasses.is_dataclass(b) and not isinstance(b, type) and type(a) is type(b):
            out += config_diff(a, b, f"{prefix}{f.name}.")
        elif a != b:
            out.append((f"{prefix}{f.name}", b))
    return out
