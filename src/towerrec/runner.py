"""Fit and evaluate several models on one split: the engine behind `towerrec evaluate`.

One protocol for every model: fit on train (valid given for early stopping), full-ranking
evaluation on valid (train masked) and test (train + valid masked), or, for cold-user splits,
scoring held-out users from their input histories. Models that cannot score a split's users or
items are reported as not applicable rather than as zeros.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from towerrec.beyond import BeyondOptions
from towerrec.cost import PeakMemory, measure_cost
from towerrec.data.features import FeatureTable
from towerrec.evaluation import EvalResult, evaluate_split
from towerrec.metrics import METRICS
from towerrec.models.base import FitOptions, Recommender
from towerrec.splits import Split


@dataclass
class ModelRun:
    """One model's outcome on one split. `valid`/`test` are None when not applicable."""

    name: str
    model: Recommender | None
    valid: EvalResult | None
    test: EvalResult | None
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    not_applicable: str | None = None
    config: dict = field(default_factory=dict)
    training_history: list[dict] | None = None   # per epoch (loss, valid metric, seconds), if the model logs one
    cost: dict | None = None                      # towerrec.cost.Cost: parameters, size, memory, latency

    def row(self, part: str = "test") -> dict[str, float | str]:
        result = getattr(self, part)
        if result is None:
            return {"model": self.name, "note": f"not applicable: {self.not_applicable}"}
        return {"model": self.name, **result.summary, "fit_s": self.fit_seconds, "eval_s": self.eval_seconds}


def versions() -> dict[str, str]:
    """Versions that change numbers, for results.json."""
    import numpy
    import pandas
    import scipy
    import torch

    import towerrec

    return {"towerrec": towerrec.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "scipy": scipy.__version__}


def not_applicable(model: Recommender, split: Split) -> str | None:
    """Why a model cannot be evaluated on this split, or None."""
    if split.method == "cold-item" and not model.capabilities.cold_items:
        return "the model scores items only from their training interactions; cold items have none"
    if split.method == "cold-user" and not model.capabilities.histories:
        return "the model scores only users seen in training"
    return None


def run_model(name: str, model: Recommender, split: Split, *, user_features: FeatureTable | None = None,
              item_features: FeatureTable | None = None, k: Sequence[int] = (10, 20),
              metrics: Sequence[str] = METRICS, options: FitOptions = FitOptions(), exclude_seen: bool = True,
              batch_size: int = 1024, beyond: BeyondOptions | None = BeyondOptions(),
              cost: bool = True) -> ModelRun:
    """Fit `model` on `split.train` and evaluate it on valid and test (`towerrec.evaluation.evaluate_split`).

    Early stopping ranks the valid users with the same masking as the reported metrics. With `cost`,
    the fit's peak memory is recorded and, after it, the model's size and request latency
    (`towerrec.cost`); `beyond` sets the beyond-accuracy figures (None: none)."""
    config = dataclasses.asdict(model.config) if dataclasses.is_dataclass(model.config) else {}
    reason = not_applicable(model, split)
    if reason:
        return ModelRun(name, None, None, None, not_applicable=reason, config=config)
    start = time.perf_counter()
    with PeakMemory() as peak:
        model.fit(split.train, user_features=user_features, item_features=item_features,
                  valid=split.valid if split.method != "cold-user" else None,
                  options=dataclasses.replace(options, exclude_seen=exclude_seen))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluate_split(model, split, k=k, metrics=metrics, exclude_seen=exclude_seen, batch_size=batch_size,
                             beyond=beyond, item_features=item_features, user_features=user_features)
    eval_seconds = time.perf_counter() - start
    measured = measure_cost(model, fit_seconds=fit_seconds, peak=peak, seed=options.seed).as_dict() if cost else None
    return ModelRun(name, model, results["valid"], results["test"], fit_seconds, eval_seconds,
                    config=config, training_history=model.training_history(), cost=measured)


#: columns of the one-split leaderboard, at the smallest K
LEADERBOARD_METRICS = ("NDCG", "Recall", "Precision", "MAP", "MRR", "HitRate", "F1")


def leaderboard_text(runs: Sequence[ModelRun], ks: Sequence[int], part: str = "test") -> str:
    """Models x metrics at the smallest K (NDCG/Recall at the others), `Tied@K`, coverage and seconds;
    on splits with cold users also NDCG@K of warm users. Models that do not apply are listed as n/a."""
    from towerrec.display import text_table

    k0 = min(ks)
    columns = ["model"] + [f"{m}@{k0}" for m in LEADERBOARD_METRICS]
    columns += [f"{m}@{k}" for k in sorted(ks) if k != k0 for m in ("NDCG", "Recall")]
    results = [getattr(run, part) for run in runs if getattr(run, part) is not None]
    if any("warm" in r.groups for r in results):
        columns.append(f"NDCG@{k0} warm")
    columns += [f"Tied@{k0}", f"Coverage@{k0}", "fit_s", "eval_s"]
    rows, notes = [], []
    for run in runs:
        row = run.row(part)
        if "note" in row:
            notes.append(f"{run.name}: {row['note']}")
            row = {"model": run.name, **{c: "n/a" for c in columns[1:]}}
        else:
            groups = getattr(run, part).groups
            if "warm" in groups:
                row[f"NDCG@{k0} warm"] = groups["warm"].get(f"NDCG@{k0}", "n/a")
        rows.append([row.get(c, "") for c in columns])
    text = text_table(columns, rows)
    beyond = beyond_text(runs, k0, part)
    if beyond:
        text += "\n\n" + beyond
    result = results[0] if results else None
    if result is not None and "users" in result.info and result.info["users"]["cold"]:
        users = result.info["users"]
        fallback = ", ".join(f"{k} for {v:,}" for k, v in result.info.get("fallback", {}).items()) or "none"
        notes.append(f"{users['cold']:,} of {users['warm'] + users['cold']:,} evaluated users have no training "
                     f"interaction (cold); model fallbacks: {fallback} (first model shown)")
    return text + ("\n" + "\n".join(notes) if notes else "")


#: beyond-accuracy columns of the second CLI table (at the smallest K), then the cost columns
BEYOND_COLUMNS = ("ILD", "EmbILD", "Novelty", "Serendipity", "ARP", "LongTail", "Miscalibration", "Coverage", "Gini")
COST_COLUMNS = (("params", "parameters", 1), ("size MB", "artifact_bytes", 2**-20), ("peak MB", "peak_train_mb", 1),
                ("fit s", "fit_seconds", 1), ("p50 ms", "latency_p50_ms", 1), ("p99 ms", "latency_p99_ms", 1))


def beyond_text(runs: Sequence[ModelRun], k0: int, part: str = "test") -> str:
    """The second table: beyond-accuracy figures at K = k0, the largest NDCG@k0 gap between user
    groups of each attribute, and the cost of each model ("" when no run has any of them)."""
    from towerrec.display import text_table

    results = [(run, getattr(run, part)) for run in runs if getattr(run, part) is not None]
    metrics = [f"{m}@{k0}" for m in BEYOND_COLUMNS if any(f"{m}@{k0}" in r.summary for _, r in results)]
    attributes = list(dict.fromkeys(a for _, r in results for a in r.fairness))
    costs = [c for c in COST_COLUMNS if any(run.cost and run.cost.get(c[1]) is not None for run, _ in results)]
    if not results or not (set(metrics) - {f"Coverage@{k0}"} or attributes or costs):
        return ""
    gap = f"NDCG@{k0}"
    columns = ["model", *metrics, *[f"{gap} gap ({a})" for a in attributes], *[c[0] for c in costs]]
    rows = []
    for run, result in results:
        row = [run.name, *[result.summary.get(m, "n/a") for m in metrics]]
        row += [_or_na(result.fairness.get(a, {}).get("gap", {}).get(gap)) for a in attributes]
        row += [_scaled((run.cost or {}).get(key), scale) for _, key, scale in costs]
        rows.append(row)
    return text_table(columns, rows)


def _or_na(value: float | None) -> float | str:
    return "n/a" if value is None else float(value)


def _scaled(value: float | int | None, scale: float) -> str | float:
    if value is None:
        return "n/a"
    if scale == 1 and isinstance(value, int):
        return f"{value:,}"
    return float(value) * scale
