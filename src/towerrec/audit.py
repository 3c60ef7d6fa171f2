"""Write what anyone needs to recompute every reported figure without towerrec.

Layout of an `--out DIR` (EVALUATION.md, "Auditability"):
  split/{train,valid,test}.csv   user_id,item_id[,rating][,timestamp|position] with original ids
  recs/<model>.csv               user_id,rank,item_id,score: test top-K for every evaluated user
  per_user/<model>.parquet       per-user test metric values (for significance tests)
  results.json                   per model: metrics, config, seed, seconds, versions

Every file is written atomically (`towerrec.files`): a killed run leaves whole files or none.
The caller writes the `COMPLETE` marker (`towerrec.outdir`) after the last one.
"""
from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path

from towerrec.files import atomic_path, write_text
from towerrec.runner import ModelRun, versions
from towerrec.splits import Split


def json_safe(value: object) -> object:
    """NaN and infinities -> None, numpy scalars and arrays -> Python: strict JSON, never a bare NaN."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        return json_safe(value.tolist())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def json_text(value: object) -> str:
    """Indented strict JSON (`allow_nan=False`: a NaN that escaped `json_safe` is a bug, not output)."""
    return json.dumps(json_safe(value), indent=2, default=str, allow_nan=False)


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def write_split(out: Path, split: Split) -> None:
    (out / "split").mkdir(parents=True, exist_ok=True)
    parts = {"train": split.train, "valid": split.valid, "test": split.test}
    if split.valid_history is not None:
        parts["valid_history"] = split.valid_history
    if split.test_history is not None:
        parts["test_history"] = split.test_history
    for name, part in parts.items():
        with atomic_path(out / "split" / f"{name}.csv") as tmp:
            part.to_frame().to_csv(tmp, index=False)


def results_dict(runs: Sequence[ModelRun], *, dataset: dict, split: Split, k: Sequence[int],
                 exclude_seen: bool, command: Sequence[str] | None = None) -> dict:
    models = {}
    for run in runs:
        entry: dict = {"config": run.config, "seed": split.seed}
        if run.test is None:
            entry["not_applicable"] = run.not_applicable
        else:
            entry.update({
                "valid": run.valid.summary, "test": run.test.summary,
                "users_evaluated": {"valid": run.valid.info["users_evaluated"],
                                    "test": run.test.info["users_evaluated"]},
                "fit_seconds": round(run.fit_seconds, 4), "eval_seconds": round(run.eval_seconds, 4),
            })
            if "users" in run.test.info:       # warm (with training interactions) / cold counts
                entry["test_users"] = run.test.info["users"]
            if run.test.groups:
                entry["test_groups"] = run.test.groups
            if run.test.fairness:            # user attribute -> group means and the largest gap
                entry["test_fairness"] = run.test.fairness
            if run.cost is not None:         # towerrec.cost: parameters, artifact size, peak memory, latency
                entry["cost"] = run.cost
            entry["fallback"] = {part: getattr(run, part).info.get("fallback", {}) for part in ("valid", "test")}
            if run.training_history:
                entry["training_history"] = run.training_history
        models[run.name] = entry
    return {
        "dataset": dataset,
        "split": {"method": split.method, "seed": split.seed, **split.info},
        "protocol": {"ranking": "full", "k": list(k), "exclude_seen": exclude_seen,
                     "exclusion": "valid: train items removed; test: train and valid items removed"
                     if exclude_seen else "nothing removed",
                     "ties": f"a random order of the items drawn from seed {split.seed} "
                             "(towerrec.ranking.TieOrder); Tied@K is the share of users whose list was cut "
                             "inside a tie"},
        "models": models,
        "versions": versions(),
        "command": list(command) if command is not None else sys.argv,
    }


def write_evaluation(out: str | Path, runs: Sequence[ModelRun], *, dataset: dict, split: Split,
                     k: Sequence[int], exclude_seen: bool, command: Sequence[str] | None = None) -> Path:
    """Write split files, recommendation lists, per-user metrics and results.json under `out`."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    write_split(out, split)
    (out / "recs").mkdir(exist_ok=True)
    (out / "per_user").mkdir(exist_ok=True)
    item_map, user_map = split.train.item_map, split.train.user_map
    for run in runs:
        if run.test is None:
            continue
        with atomic_path(out / "recs" / f"{safe_name(run.name)}.csv") as tmp:
            run.test.recs_frame(user_map, item_map).to_csv(tmp, index=False)
        with atomic_path(out / "per_user" / f"{safe_name(run.name)}.parquet") as tmp:
            run.test.per_user.to_parquet(tmp, index=False)
    results = results_dict(runs, dataset=dataset, split=split, k=k, exclude_seen=exclude_seen, command=command)
    write_text(out / "results.json", json_text(results))
    return out
