"""The experiment file: a TOML schema read once, validated with line numbers, frozen into dataclasses.

A typo in an experiment file must not silently fall back to a default (a misspelt `regularisation`
would leave the model at its default and the comparison quietly wrong), so every unknown key is an
error naming the key and its line (`toml_lines.key_lines`: tomllib itself gives no positions).

    name = "ml100k-general"            # optional; default: the file's stem
    seeds = [0, 1, 2]                  # one split + model seed each; mean ± std over seeds
    [data]        source, min_rating, duplicates, kcore, columns = {user, item, rating, time}
    [split]       method, ratios
    [evaluation]  metrics, k, exclude_seen, primary, curve_k, batch_size
    [significance] baselines, alpha, reference
    [models.<label>]  model = "<registry name>", then config fields of that model
    [tune.<label>]    <field> = {low, high, log, step, type} or {choices = [...]}
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

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


@dataclass(frozen=True)
class EvaluationSpec:
    metrics: tuple[str, ...]
    k: tuple[int, ...] = (10, 20)
    exclude_seen: bool = True
    primary: str = "NDCG@10"       # ranks the leaderboard, picks the reference, is what `tune` maximises
    curve_k: tuple[int, ...] = CURVE_K
    batch_size: int = 1024

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
    label: str
    model: str
    overrides: dict[str, Any]

    def build(self, extra: dict[str, Any] | None = None):
        from towerrec.cli import build_model

        return build_model(self.model, {**self.overrides, **(extra or {})}, source=f"[models.{self.label}]")


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
    data: DataSpec
    split: SplitSpec
    evaluation: EvaluationSpec
    significance: SignificanceSpec
    models: dict[str, ModelSpec]
    tune: dict[str, tuple[ParamSpace, ...]]

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

    def only(self, table: dict, where: tuple[str, ...], allowed: Iterable[str]) -> None:
        allowed = list(allowed)
        for key in table:
            if key not in allowed:
                raise self.error(where + (key,), f"unknown key {key!r} in {_name(where)}; "
                                                 f"known keys: {', '.join(allowed)}")

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
SPLIT_KEYS = ("method", "ratios")
EVAL_KEYS = ("metrics", "k", "exclude_seen", "primary", "curve_k", "batch_size")
SIGNIFICANCE_KEYS = ("baselines", "alpha", "reference")
SPACE_KEYS = ("low", "high", "log", "step", "type", "choices")


def load_experiment(path: str | Path) -> Experiment:
    """Read and validate an experiment file; any mistake is a TowerrecError naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TowerrecError(f"{path}: experiment file not found") from None
    return parse_experiment(text, path)


def parse_experiment(text: str, path: str | Path = "experiment.toml") -> Experiment:
    """Validate TOML text (the file name only labels errors and resolves relative data paths)."""
    path = Path(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise TowerrecError(f"{path}: invalid TOML: {exc}") from None
    c = _Checker(path, text)
    c.only(raw, (), TOP_KEYS)
    name = c.get(raw, (), "name", str, path.stem)
    seeds = c.int_list(raw, (), "seeds", (0,), minimum=0)
    if not seeds or len(set(seeds)) != len(seeds):
        raise c.error(("seeds",), f"seeds must be a non-empty list of distinct integers, got {list(seeds)}")
    return Experiment(name=name, path=path, text=text, seeds=seeds, data=_data(c, raw), split=_split(c, raw),
                      evaluation=_evaluation(c, raw), significance=_significance(c, raw),
                      models=(models := _models(c, raw)), tune=_tune(c, raw, models))


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
    from towerrec.split import SPLITS

    w = ("split",)
    t = c.table(raw, (), "split")
    c.only(t, w, SPLIT_KEYS)
    method = c.get(t, w, "method", str, "random")
    if method not in SPLITS:
        raise c.error(w + ("method",), f"split.method must be one of {list(SPLITS)}, got {method!r}")
    ratios = c.get(t, w, "ratios", list, [0.8, 0.1, 0.1])
    if len(ratios) != 3 or any(not _is(r, float) or r < 0 for r in ratios) or abs(sum(ratios) - 1) > 1e-6:
        raise c.error(w + ("ratios",), f"split.ratios must be three non-negative numbers summing to 1, "
                                       f"got {ratios!r}")
    return SplitSpec(method, tuple(float(r) for r in ratios))  # type: ignore[arg-type]


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
    return EvaluationSpec(metrics=tuple(metrics), k=tuple(sorted(set(k))),
                          exclude_seen=c.get(t, w, "exclude_seen", bool, True), primary=primary,
                          curve_k=tuple(sorted(set(curve_k))), batch_size=batch_size)


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


def _config_fields(name: str) -> dict[str, dataclasses.Field]:
    from towerrec.models import MODELS

    return {f.name: f for f in dataclasses.fields(MODELS[name]().config)}


def _check_field_type(c: _Checker, where: tuple[str, ...], key: str, value: Any, f: dataclasses.Field) -> None:
    """A light check against the field's default: catches `factors = "64"` before the model does."""
    default = f.default if f.default is not dataclasses.MISSING else None
    if default is None:
        return
    expected: type | tuple = (bool if isinstance(default, bool) else float if isinstance(default, (int, float))
                              else list if isinstance(default, (tuple, list)) else type(default))
    if isinstance(default, int) and not isinstance(default, bool) and _is(value, float) \
            and not isinstance(value, bool) and float(value) != int(value):
        raise c.error(where + (key,), f"{_dotted(where, key)} must be an integer, got {value!r}")
    if not _is(value, expected):
        raise c.error(where + (key,), f"{_dotted(where, key)} must be {_kind_name(expected)}, got {value!r}")


def _models(c: _Checker, raw: dict) -> dict[str, ModelSpec]:
    from towerrec.audit import safe_name
    from towerrec.models import MODELS

    tables = c.table(raw, (), "models")
    if not tables:
        raise c.error((), "no [models.<label>] table: name at least one model, e.g. [models.ease] model = \"ease\"")
    specs, files = {}, {}
    for label, table in tables.items():
        w = ("models", label)
        if not isinstance(table, dict):
            raise c.error(w, f"models.{label} must be a table like [models.{label}] with model = \"...\"")
        name = c.get(table, w, "model", str)
        if name is None:
            raise c.error(w, f"[models.{label}] needs `model = \"<name>\"`; known models: {', '.join(sorted(MODELS))}")
        if name not in MODELS:
            raise c.error(w + ("model",), f"unknown model {name!r} in [models.{label}]; "
                                          f"known models: {', '.join(sorted(MODELS))}")
        fields = _config_fields(name)
        overrides = {k: v for k, v in table.items() if k != "model"}
        for key, value in overrides.items():
            if key not in fields:
                raise c.error(w + (key,), f"unknown field {key!r} for model {name!r} in [models.{label}]; "
                                          f"known fields: {', '.join(fields)}")
            _check_field_type(c, w, key, value, fields[key])
        if safe_name(label) in files:
            raise c.error(w, f"model labels {files[safe_name(label)]!r} and {label!r} give the same file name")
        files[safe_name(label)] = label
        specs[label] = ModelSpec(label, name, overrides)
    return specs


def _tune(c: _Checker, raw: dict, models: dict[str, ModelSpec]) -> dict[str, tuple[ParamSpace, ...]]:
    tables = c.table(raw, (), "tune")
    out = {}
    for label, table in tables.items():
        w = ("tune", label)
        if label not in models:
            raise c.error(w, f"[tune.{label}] names no model; model labels: {', '.join(models)}")
        if not isinstance(table, dict) or not table:
            raise c.error(w, f"[tune.{label}] must be a table of field = {{low, high}} or {{choices = [...]}}")
        fields = _config_fields(models[label].model)
        spaces = []
        for key, spec in table.items():
            if key not in fields:
                raise c.error(w + (key,), f"unknown field {key!r} for model {models[label].model!r} in "
                                          f"[tune.{label}]; known fields: {', '.join(fields)}")
            spaces.append(_space(c, w + (key,), key, spec))
        out[label] = tuple(spaces)
    return out


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
