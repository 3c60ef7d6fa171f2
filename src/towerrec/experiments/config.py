"""The experiment file: a TOML schema read once, validated with line numbers, frozen into dataclasses.

A typo in an experiment file must not silently fall back to a default (a misspelt `regularisation`
would leave the model at its default and the comparison quietly wrong), so every unknown key is an
error naming the key and its line (`toml_lines.key_lines`: tomllib itself gives no positions).

    name = "ml100k-general"            # optional; default: the file's stem
    seeds = [0, 1, 2]                  # one split + model seed each; mean ± std over seeds
    [data]        source, min_rating, duplicates, kcore, columns = {user, item, rating, time}
    [split]       method, ratios
    [evaluation]  metrics, k, exclude_seen, primary, curve_k, batch_size, beyond, categories, fairness, cost
    [significance] baselines, alpha, reference
    [models.<label>]  model = "<registry name>" (default: the label, when it is one), then config
                      fields of that model: `field`, `nested.field` or a `[models.<label>.nested]`
                      sub-table, or a glossary name such as `epochs` that one nested config has;
                      `rerank = {method, weight, candidates, space}` (or a method name) re-ranks its
                      lists (`towerrec.rerank`): a model plus a re-ranker is one comparable entry
    [tune.<label>]    <field> = {low, high, log, step, type} or {choices = [...]}, same field names

This one format is read by `towerrec run` and `tune` (`load_experiment`) and by `train --config`
and `evaluate --config` (`load_config`: [data] optional there, as the command line names the data;
only the [models.*] tables are used). Field names follow `towerrec.config.apply_overrides`.
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from towerrec.config import (
    OverrideError,
    did_you_mean,
    get_path,
    resolve_name,
    resolve_overrides,
)
from towerrec.errors import TowerrecError
from towerrec.experiments.toml_lines import key_lines, tomllib

BASELINES = ("pop", "itemknn", "ease", "als")
#: NDCG and Recall at these K draw the curves over K (added to the evaluated K; recs then hold max K)
CURVE_K = (1, 5, 10, 20, 50)


# ---- the validated experiment -----------------------------------------------------------------
@dataclass(frozen=True)
class DataSpec:
    source: str
    min_rating: float | None = None
    duplicates: str = "first"
    user_kcore: int = 0
    item_kcore: int = 0
    columns: dict[str, str] = field(default_factory=dict)

    def load_options(self):
        from towerrec.data.load import LoadOptions

        return LoadOptions(user_col=self.columns.get("user"), item_col=self.columns.get("item"),
                           rating_col=self.columns.get("rating"), time_col=self.columns.get("time"),
                           min_rating=self.min_rating, duplicates=self.duplicates,
                           user_kcore=self.user_kcore, item_kcore=self.item_kcore)


@dataclass(frozen=True)
class SplitSpec:
    method: str = "random"
    ratios: tuple[float, float, float] = (0.8, 0.1, 0.1)
    windows: int = 5               # method "rolling" (towerrec.rolling): test windows ...
    start: float = 0.5             # ... from this time quantile on


@dataclass(frozen=True)
class EvaluationSpec:
    metrics: tuple[str, ...]
    k: tuple[int, ...] = (10, 20)
    exclude_seen: bool = True
    primary: str = "NDCG@10"       # ranks the leaderboard, picks the reference, is what `tune` maximises
    curve_k: tuple[int, ...] = CURVE_K
    batch_size: int = 1024
    beyond: bool = True                     # beyond-accuracy figures (towerrec.beyond) at each K of `k`
    categories: str | None = None           # the item feature holding categories (default: genres, ...)
    fairness: tuple[str, ...] | None = None  # user attributes for group gaps (default: towerrec.beyond.user_groups)
    cost: bool = True                       # parameters, size, peak memory, latency (towerrec.cost)

    def beyond_options(self):
        """The `towerrec.beyond.BeyondOptions` of this table (None when `beyond = false`)."""
        from towerrec.beyond import BeyondOptions

        return BeyondOptions(k=self.k, categories=self.categories, fairness=self.fairness) if self.beyond else None

    @property
    def eval_k(self) -> tuple[int, ...]:
        """K actually evaluated: the requested ones plus those of the curves."""
        return tuple(sorted(set(self.k) | set(self.curve_k)))


@dataclass(frozen=True)
class SignificanceSpec:
    baselines: tuple[str, ...] = BASELINES   # registry names; their best by `primary` is the reference
    alpha: float = 0.05
    reference: str | None = None             # a model label that overrides the automatic choice


@dataclass(frozen=True)
class ModelSpec:
    """A `[models.<label>]` table: the registry name and its overrides, keyed by canonical dotted
    field path (`train.epochs`, whatever spelling the file used), values already type-checked."""

    label: str
    model: str
    overrides: dict[str, Any]
    source: str = ""               # names the spec in errors; default "[models.<label>]"
    rerank: dict[str, Any] | None = None   # towerrec.rerank.RerankConfig fields, when the lists are re-ranked

    def build(self, extra: dict[str, Any] | None = None, *, preset: str | None = None):
        """The model; `extra` (canonical paths, e.g. a tuning trial's values) wins over the table."""
        from towerrec.models import build_model

        model = build_model(self.model, {**self.overrides, **(extra or {})}, preset=preset,
                            source=self.source or f"[models.{self.label}]")
        if self.rerank is None:
            return model
        from towerrec.rerank import RerankConfig, Reranked

        return Reranked(model, RerankConfig(**self.rerank))


@dataclass(frozen=True)
class ParamSpace:
    """One tuned field: a float/int range (optionally log-scaled, stepped) or a list of choices."""

    name: str
    kind: str                      # "float", "int" or "categorical"
    low: float | None = None
    high: float | None = None
    log: bool = False
    step: float | None = None
    choices: tuple = ()


@dataclass(frozen=True)
class Experiment:
    name: str
    path: Path
    text: str
    seeds: tuple[int, ...]
    data: DataSpec | None          # None only from `load_config` (train/evaluate --config) without [data]
    split: SplitSpec
    evaluation: EvaluationSpec
    significance: SignificanceSpec
    models: dict[str, ModelSpec]
    tune: dict[str, tuple[ParamSpace, ...]]
    raw_keys: tuple[str, ...] = ()   # the top-level keys and tables the file has

    def resolve_source(self) -> str:
        """A relative path in `source` is relative to the experiment file when it exists there."""
        candidate = self.path.parent / self.data.source
        if not Path(self.data.source).is_absolute() and candidate.exists():
            return str(candidate)
        return self.data.source


# ---- validation -------------------------------------------------------------------------------
class _Checker:
    """Type and key checks whose errors name `file:line`."""

    def __init__(self, path: Path, text: str) -> None:
        self.file, self.lines = str(path), key_lines(text)

    def line(self, keypath: tuple[str, ...]) -> int | None:
        for n in range(len(keypath), 0, -1):
            if keypath[:n] in self.lines:
                return self.lines[keypath[:n]]
        return None

    def error(self, keypath: tuple[str, ...], message: str) -> TowerrecError:
        line = self.line(keypath)
        return TowerrecError(f"{self.file}:{line}: {message}" if line else f"{self.file}: {message}")

    def only(self, table: dict, where: tuple[str, ...], allowed: Iterable[str], note: str = "") -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                place = f"in {_name(where)}" if where else "at the top level"
                raise self.error(where + (key,), f"unknown key {key!r} {place}"
                                                 f"{did_you_mean(key, allowed)}; known keys: "
                                                 f"{', '.join(allowed)}{note}")

    def table(self, parent: dict, where: tuple[str, ...], key: str) -> dict:
        value = parent.get(key, {})
        if not isinstance(value, dict):
            raise self.error(where + (key,), f"{_name(where + (key,))} must be a table")
        return value

    def get(self, table: dict, where: tuple[str, ...], key: str, kind: type | tuple, default: Any = None) -> Any:
        if key not in table:
            return default
        value = table[key]
        if not _is(value, kind):
            raise self.error(where + (key,), f"{_dotted(where, key)} must be {_kind_name(kind)}, "
                                             f"got {value!r}")
        return value

    def int_list(self, table: dict, where: tuple[str, ...], key: str, default: tuple[int, ...],
                 minimum: int = 1) -> tuple[int, ...]:
        value = self.get(table, where, key, list, default)
        if any(not _is(v, int) or v < minimum for v in value):
            raise self.error(where + (key,), f"{_dotted(where, key)} must be a list of integers >= {minimum}, "
                                             f"got {value!r}")
        return tuple(int(v) for v in value)


def _is(value: Any, kind: type | tuple) -> bool:
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if isinstance(value, bool):
        return bool in kinds
    if float in kinds and isinstance(value, int):
        return True
    return isinstance(value, kinds)


def _kind_name(kind: type | tuple) -> str:
    names = {bool: "true or false", int: "an integer", float: "a number", str: "a string", list: "a list",
             dict: "a table"}
    kinds = kind if isinstance(kind, tuple) else (kind,)
    return " or ".join(names.get(k, k.__name__) for k in kinds)


def _name(where: tuple[str, ...]) -> str:
    return f"[{'.'.join(where)}]" if where else "the top level"


def _dotted(where: tuple[str, ...], key: str) -> str:
    return ".".join(where + (key,))


TOP_KEYS = ("name", "seeds", "data", "split", "evaluation", "significance", "models", "tune")
DATA_KEYS = ("source", "min_rating", "duplicates", "kcore", "columns")
COLUMN_KEYS = ("user", "item", "rating", "time")
SPLIT_KEYS = ("method", "ratios", "windows", "start")
EVAL_KEYS = ("metrics", "k", "exclude_seen", "primary", "curve_k", "batch_size", "beyond", "categories", "fairness",
             "cost")
RERANK_KEYS = ("method", "weight", "candidates", "space")
SIGNIFICANCE_KEYS = ("baselines", "alpha", "reference")
SPACE_KEYS = ("low", "high", "log", "step", "type", "choices")


def _read(path: str | Path, what: str) -> str:
    try:
        return Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TowerrecError(f"{path}: {what} not found") from None
    except (IsADirectoryError, UnicodeDecodeError) as exc:
        raise TowerrecError(f"{path}: cannot read the {what}: {exc}") from None


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; any mistake is a TowerrecError naming file and line."""
    return parse_experiment(_read(path, "experiment file"), path)


def load_config(path: str | Path) -> Experiment:
    """A `--config` file of `train`/`evaluate`: the experiment format, validated the same way, but
    [data] may be left out (the command line names the data); the caller uses its [models.*]."""
    return parse_experiment(_read(path, "config file"), path, need_data=False)


TOP_NOTE = "; model fields go in a [models.<label>] table with model = \"<name>\""


def parse_experiment(text: str, path: str | Path = "experiment.toml", *, need_data: bool = True) -> Experiment:
    """Validate TOML text (the file name only labels errors and resolves relative data paths)."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TowerrecError(f"{path}: invalid TOML: {exc}") from None
    c = _Checker(path, text)
    c.only(raw, (), TOP_KEYS, TOP_NOTE)
    name = c.get(raw, (), "name", str, path.stem)
    seeds = c.int_list(raw, (), "seeds", (0,), minimum=0)
    if not seeds or len(set(seeds)) != len(seeds):
        raise c.error(("seeds",), f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")
    data = _data(c, raw) if need_data or "data" in raw else None
    return Experiment(name=name, path=path, text=text, seeds=seeds, data=data, split=_split(c, raw),
                      evaluation=_evaluation(c, raw), significance=_significance(c, raw),
                      models=(models := _models(c, raw)), tune=_tune(c, raw, models), raw_keys=tuple(raw))


def select_models(config: Experiment | None, names: Sequence[str] | None, *,
                  option: str = "--models") -> list[ModelSpec]:
    """The models a `--models a,b` / `--model a` names: each name is a [models.<label>] label of
    the `--config` file when it has one, else a registry name at its defaults; `names=None` means
    every table of the file. An unknown name is an error, before any data is read."""
    from towerrec.models import MODELS

    tables = config.models if config is not None else {}
    if names is None:
        return list(tables.values())
    specs = []
    for name in names:
        if name in tables:
            specs.append(tables[name])
        elif name in MODELS:
            specs.append(ModelSpec(name, name, {}, source=f"{option} {name}"))
        else:
            labels = f"labels of {config.path}: {', '.join(tables)}; " if tables else ""
            raise TowerrecError(f"{option}: unknown model {name!r}{did_you_mean(name, [*tables, *MODELS])}; "
                                f"{labels}known models: {', '.join(sorted(MODELS))}")
    if len(set(names)) != len(names):
        raise TowerrecError(f"{option} names a model twice: {', '.join(names)}")
    return specs


def _data(c: _Checker, raw: dict) -> DataSpec:
    from towerrec.data.load import DUPLICATE_POLICIES

    w = ("data",)
    if "data" not in raw:
        raise c.error((), "missing [data] table (at least `source = \"ml-100k\"` or a file/folder path)")
    t = c.table(raw, (), "data")
    c.only(t, w, DATA_KEYS)
    source = c.get(t, w, "source", str)
    if not source:
        raise c.error(w, "[data] needs `source`: a dataset name, folder or CSV/TSV/Parquet file")
    duplicates = c.get(t, w, "duplicates", str, "first")
    if duplicates not in DUPLICATE_POLICIES:
        raise c.error(w + ("duplicates",), f"data.duplicates must be one of {list(DUPLICATE_POLICIES)}, "
                                           f"got {duplicates!r}")
    kcore = c.get(t, w, "kcore", (int, list), 0)
    ks = [kcore] if isinstance(kcore, int) else kcore
    if not 1 <= len(ks) <= 2 or any(not _is(k, int) or k < 0 for k in ks):
        raise c.error(w + ("kcore",), f"data.kcore must be an integer or [users, items], got {kcore!r}")
    columns = c.table(t, w, "columns")
    c.only(columns, w + ("columns",), COLUMN_KEYS)
    for key in columns:
        c.get(columns, w + ("columns",), key, str)
    min_rating = c.get(t, w, "min_rating", float)
    return DataSpec(source=source, min_rating=None if min_rating is None else float(min_rating),
                    duplicates=duplicates, user_kcore=int(ks[0]), item_kcore=int(ks[-1]), columns=dict(columns))


def _split(c: _Checker, raw: dict) -> SplitSpec:
    from towerrec.splits import SPLITS

    w = ("split",)
    t = c.table(raw, (), "split")
    c.only(t, w, SPLIT_KEYS)
    method = c.get(t, w, "method", str, "random")
    if method not in (*SPLITS, "rolling"):
        raise c.error(w + ("method",), f"split.method must be one of {[*SPLITS, 'rolling']}, got {method!r}")
    windows, start = c.get(t, w, "windows", int, 5), float(c.get(t, w, "start", float, 0.5))
    if method != "rolling" and ("windows" in t or "start" in t):
        raise c.error(w + ("windows" if "windows" in t else "start",),
                      "split.windows and split.start go with method = \"rolling\"")
    if windows < 1:
        raise c.error(w + ("windows",), f"split.windows must be a positive integer, got {windows}")
    if not 0 < start < 1:
        raise c.error(w + ("start",), f"split.start must be a time quantile in (0, 1), got {start}")
    ratios = c.get(t, w, "ratios", list, [0.8, 0.1, 0.1])
    if len(ratios) != 3 or any(not _is(r, float) or r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise c.error(w + ("ratios",), f"split.ratios must be three non-negative numbers summing to 1, "
                                       f"got {ratios!r}")
    return SplitSpec(method, tuple(float(r) for r in ratios), windows, start)  # type: ignore[arg-type]


def _evaluation(c: _Checker, raw: dict) -> EvaluationSpec:
    from towerrec.metrics import METRICS

    w = ("evaluation",)
    t = c.table(raw, (), "evaluation")
    c.only(t, w, EVAL_KEYS)
    metrics = c.get(t, w, "metrics", list, list(METRICS))
    bad = [m for m in metrics if m not in METRICS]
    if bad or not metrics:
        raise c.error(w + ("metrics",), f"unknown metric(s) {bad} in evaluation.metrics; known: {', '.join(METRICS)}")
    k = c.int_list(t, w, "k", (10, 20))
    if not k:
        raise c.error(w + ("k",), "evaluation.k needs at least one list length")
    curve_k = c.int_list(t, w, "curve_k", CURVE_K)
    default_primary = f"{'NDCG' if 'NDCG' in metrics else metrics[0]}@{min(k)}"
    primary = c.get(t, w, "primary", str, default_primary)
    valid_primary = {f"{m}@{kk}" for m in metrics for kk in k}
    if primary not in valid_primary:
        raise c.error(w + ("primary",), f"evaluation.primary {primary!r} is not among the evaluated metrics; "
                                        f"choose one of {', '.join(sorted(valid_primary))}")
    batch_size = c.get(t, w, "batch_size", int, 1024)
    if batch_size <= 0:
        raise c.error(w + ("batch_size",), f"evaluation.batch_size must be positive, got {batch_size}")
    fairness = c.get(t, w, "fairness", list)
    if fairness is not None and any(not isinstance(a, str) or not a for a in fairness):
        raise c.error(w + ("fairness",), f"evaluation.fairness must be a list of user attribute names, "
                                         f"got {fairness!r}")
    return EvaluationSpec(metrics=tuple(metrics), k=tuple(sorted(set(k))),
                          exclude_seen=c.get(t, w, "exclude_seen", bool, True), primary=primary,
                          curve_k=tuple(sorted(set(curve_k))), batch_size=batch_size,
                          beyond=c.get(t, w, "beyond", bool, True), categories=c.get(t, w, "categories", str),
                          fairness=tuple(fairness) if fairness is not None else None,
                          cost=c.get(t, w, "cost", bool, True))


def _significance(c: _Checker, raw: dict) -> SignificanceSpec:
    w = ("significance",)
    t = c.table(raw, (), "significance")
    c.only(t, w, SIGNIFICANCE_KEYS)
    baselines = c.get(t, w, "baselines", list, list(BASELINES))
    if any(not isinstance(b, str) for b in baselines):
        raise c.error(w + ("baselines",), f"significance.baselines must be model names, got {baselines!r}")
    alpha = float(c.get(t, w, "alpha", float, 0.05))
    if not 0 < alpha < 1:
        raise c.error(w + ("alpha",), f"significance.alpha must be in (0, 1), got {alpha}")
    reference = c.get(t, w, "reference", str)
    if reference is not None and reference not in raw.get("models", {}):
        raise c.error(w + ("reference",), f"significance.reference {reference!r} is not a model label "
                                          f"of [models.*]")
    return SignificanceSpec(tuple(baselines), alpha, reference)


def _default_config(name: str):
    from towerrec.models import build_model

    return build_model(name).config


def _models(c: _Checker, raw: dict) -> dict[str, ModelSpec]:
    from towerrec.audit import safe_name
    from towerrec.models import MODELS

    tables = c.table(raw, (), "models")
    if not tables:
        raise c.error((), "no [models.<label>] table: name at least one model, e.g. [models.ease] model = \"ease\"")
    specs, files = {}, {}
    known = f"known models: {', '.join(sorted(MODELS))}"
    for label, table in tables.items():
        w = ("models", label)
        if not isinstance(table, dict):
            raise c.error(w, f"models.{label} must be a table like [models.{label}] with model = \"...\"")
        name = c.get(table, w, "model", str)
        if name is None:
            if label not in MODELS:
                raise c.error(w, f"[models.{label}] has no `model = \"<name>\"` and {label!r} is no model "
                                 f"name{did_you_mean(label, list(MODELS))}; {known}")
            name = label
        if name not in MODELS:
            raise c.error(w + ("model",), f"unknown model {name!r} in [models.{label}]"
                                          f"{did_you_mean(name, list(MODELS))}; {known}")
        where = f" for model {name!r} in [models.{label}]"
        rerank = _rerank(c, w, table)
        overrides = {k: v for k, v in table.items() if k not in ("model", "rerank")}
        try:
            canonical = resolve_overrides(_default_config(name), overrides, where=where)
        except OverrideError as exc:
            raise c.error(w + exc.keypath, str(exc)) from None
        if safe_name(label) in files:
            raise c.error(w, f"model labels {files[safe_name(label)]!r} and {label!r} give the same file name")
        files[safe_name(label)] = label
        specs[label] = ModelSpec(label, name, canonical, rerank=rerank)
        try:
            specs[label].build()   # what only the registry knows (presets) is found here, not after loading data
        except TowerrecError as exc:
            raise c.error(w, str(exc)) from None
    return specs


def _rerank(c: _Checker, w: tuple[str, ...], table: dict) -> dict[str, Any] | None:
    """A model table's `rerank`: a method name or {method, weight, candidates, space}, checked."""
    from towerrec.rerank import RerankConfig

    if "rerank" not in table:
        return None
    where = w + ("rerank",)
    value = table["rerank"]
    if isinstance(value, str):
        value = {"method": value}
    if not isinstance(value, dict):
        raise c.error(where, f"{_dotted(w, 'rerank')} must be a method name or a table {{method, weight, candidates, "
                             f"space}}, got {value!r}")
    c.only(value, where, RERANK_KEYS)
    method = c.get(value, where, "method", str)
    if method is None:
        raise c.error(where, f"{_dotted(w, 'rerank')} needs `method` (mmr, dpp, calibrated or popularity)")
    config = RerankConfig(method, float(c.get(value, where, "weight", float, 0.5)),
                          c.get(value, where, "candidates", int, 100), c.get(value, where, "space", str, "auto"))
    try:
        config.validate()
    except TowerrecError as exc:
        raise c.error(where, str(exc)) from None
    return dataclasses.asdict(config)


def _tune(c: _Checker, raw: dict, models: dict[str, ModelSpec]) -> dict[str, tuple[ParamSpace, ...]]:
    tables = c.table(raw, (), "tune")
    out = {}
    for label, table in tables.items():
        w = ("tune", label)
        if label not in models:
            raise c.error(w, f"[tune.{label}] names no model{did_you_mean(label, list(models))}; "
                             f"model labels: {', '.join(models)}")
        if not isinstance(table, dict) or not table:
            raise c.error(w, f"[tune.{label}] must be a table of field = {{low, high}} or {{choices = [...]}}")
        config = _default_config(models[label].model)
        spaces = _spaces(c, w, table, config, (), f" for model {models[label].model!r} in [tune.{label}]")
        names = [s.name for s in spaces]
        for n, space in enumerate(spaces):
            if space.name in names[:n]:
                raise c.error(w, f"[tune.{label}] searches {space.name} twice")
        out[label] = tuple(spaces)
    return out


def _spaces(c: _Checker, w: tuple[str, ...], table: dict, config: Any, prefix: tuple[str, ...],
            where: str) -> list[ParamSpace]:
    """Search spaces of a [tune.<label>] table (or of a nested group such as `train = {...}`),
    named by canonical field path; each space's values are checked against the field."""
    spaces = []
    node = get_path(config, prefix)
    for key, spec in table.items():
        kw = w + (key,)
        try:
            path = prefix + resolve_name(node, key, keypath=(key,), where=where)
        except OverrideError as exc:
            raise c.error(kw, str(exc)) from None
        target = get_path(config, path)
        if dataclasses.is_dataclass(target) and isinstance(spec, dict):
            spaces += _spaces(c, kw, spec, config, path, where)
            continue
        space = _space(c, kw, ".".join(path), spec)
        values = list(space.choices) if space.kind == "categorical" else [space.low, space.high]
        if space.kind == "float" and isinstance(target, int) and not isinstance(target, bool):
            raise c.error(kw, f"{space.name}{where} is an integer field: add type = \"int\" to its range")
        for value in values:
            try:
                resolve_overrides(config, {space.name: value}, where=where)
            except OverrideError as exc:
                raise c.error(kw, str(exc)) from None
        spaces.append(space)
    return spaces


def _space(c: _Checker, where: tuple[str, ...], key: str, spec: Any) -> ParamSpace:
    dotted = ".".join(where)
    if not isinstance(spec, dict):
        raise c.error(where, f"{dotted} must be {{low = .., high = ..}} or {{choices = [..]}}, got {spec!r}")
    c.only(spec, where, SPACE_KEYS)
    if "choices" in spec:
        choices = spec["choices"]
        if set(spec) - {"choices"} or not isinstance(choices, list) or not choices:
            raise c.error(where, f"{dotted}: `choices` must be a non-empty list and stands alone")
        return ParamSpace(key, "categorical", choices=tuple(tuple(v) if isinstance(v, list) else v for v in choices))
    if "low" not in spec or "high" not in spec:
        raise c.error(where, f"{dotted} needs both `low` and `high` (or `choices`)")
    kind = c.get(spec, where, "type", str, "float")
    if kind not in ("float", "int"):
        raise c.error(where + ("type",), f"{dotted}.type must be \"float\" or \"int\", got {kind!r}")
    number = int if kind == "int" else float
    low, high = c.get(spec, where, "low", number), c.get(spec, where, "high", number)
    log = c.get(spec, where, "log", bool, False)
    step = c.get(spec, where, "step", number)
    if not low < high:
        raise c.error(where, f"{dotted}: low must be below high, got {low} and {high}")
    if log and low <= 0:
        raise c.error(where, f"{dotted}: a log range needs low > 0, got {low}")
    if log and step is not None:
        raise c.error(where + ("step",), f"{dotted}: `step` cannot be combined with log = true")
    return ParamSpace(key, kind, float(low) if kind == "float" else int(low),
                      float(high) if kind == "float" else int(high), log, step)
