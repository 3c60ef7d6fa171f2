"""The experiment-level files of a results folder (each seed's audit files are in `seed-<n>/`).

    experiment.toml        the experiment file as run (byte copy)
    leaderboard.csv/.md    one row per model: mean and std over seeds, difference to the reference
    significance.csv       every comparison with the reference: CI, raw and Holm-adjusted p-values
    significance_beyond.csv   the same for each per-user beyond-accuracy metric (a `metric` column)
    per_user.parquet       model, seed, user_id, every test metric: the input of the tests
    results.json           all of the above plus per-seed summaries and training histories

Each file is written atomically (`towerrec.files`).
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from towerrec.experiments.leaderboard import beyond_significance, seed_table, to_markdown
from towerrec.experiments.runner import ExperimentResult, dataset_info, per_user_long
from towerrec.files import atomic_path, write_text


def _clean(value):
    """JSON-safe: NaN -> null, numpy scalars -> Python."""
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def results_dict(result: ExperimentResult, board: pd.DataFrame, comparisons: pd.DataFrame,
                 reference: str | None) -> dict:
    exp = result.experiment
    per_seed = seed_table(result.records)
    models = {}
    for label, spec in exp.models.items():
        recs = [r for r in result.records if r.label == label]
        rows = per_seed[per_seed["model"] == label] if not per_seed.empty else per_seed
        entry: dict = {"model": spec.model, "config": spec.overrides}
        if rows.empty:
            entry["not_applicable"] = next((r.not_applicable for r in recs if r.not_applicable), None)
        else:
            entry["per_seed"] = {str(r.seed): {"test": r.test, "valid": r.valid, "fit_seconds": r.fit_seconds,
                                               "eval_seconds": r.eval_seconds, "cost": r.cost,
                                               "test_fairness": r.fairness} for r in recs if r.test}
            entry["training_history"] = {str(r.seed): r.history for r in recs if r.history}
        if spec.rerank is not None:
            entry["rerank"] = spec.rerank
        models[label] = entry
    beyond = beyond_significance(exp, result.records, reference)
    return _clean({
        "name": exp.name,
        "dataset": dataset_info(result.dataset),
        "split": {"method": exp.split.method, "ratios": list(exp.split.ratios), "first_seed": result.split_info},
        "evaluation": {"metrics": list(exp.evaluation.metrics), "k": list(exp.evaluation.k),
                       "evaluated_k": list(exp.evaluation.eval_k), "primary": exp.evaluation.primary,
                       "exclude_seen": exp.evaluation.exclude_seen, "ranking": "full"},
        "seeds": list(exp.seeds),
        "significance": {"reference": reference, "baselines": list(exp.significance.baselines),
                         "alpha": exp.significance.alpha, "metric": exp.evaluation.primary,
                         "pairing": "per user, each user's value averaged over seeds",
                         "correction": "Holm, separately for t-test and Wilcoxon p-values",
                         "significant_when": "both Holm-adjusted p-values < alpha",
                         "comparisons": comparisons.to_dict(orient="records"),
                         "beyond": beyond.to_dict(orient="records")},
        "leaderboard": board.to_dict(orient="records"),
        "models": models,
        "seconds": round(result.seconds, 2),
    })


def write_results(out: str | Path, result: ExperimentResult, board: pd.DataFrame, comparisons: pd.DataFrame,
                  reference: str | None) -> list[Path]:
    """Write the experiment-level files; returns their paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    exp = result.experiment
    users = int(comparisons["n_users"].max()) if not comparisons.empty else None
    paths = [out / "experiment.toml", out / "leaderboard.csv", out / "leaderboard.md", out / "significance.csv",
             out / "per_user.parquet", out / "results.json", out / "significance_beyond.csv"]
    write_text(paths[0], exp.text)
    with atomic_path(paths[1]) as tmp:
        board.to_csv(tmp, index=False, float_format="%.10g")
    write_text(paths[2], to_markdown(exp, board, reference, users))
    with atomic_path(paths[3]) as tmp:
        comparisons.to_csv(tmp, index=False, float_format="%.10g")
    with atomic_path(paths[4]) as tmp:
        per_user_long(result.records).to_parquet(tmp, index=False)
    write_text(paths[5], json.dumps(results_dict(result, board, comparisons, reference), indent=2, default=str))
    with atomic_path(paths[6]) as tmp:
        beyond_significance(exp, result.records, reference).to_csv(tmp, index=False, float_format="%.10g")
    return paths
