"""The experiment loop: for each seed, one split and every model, through `towerrec.runner.run_model`.

Each seed's folder is written by `towerrec.audit.write_evaluation` (split/, recs/, per_user/,
results.json), so every figure stays recomputable without towerrec. Fitted models are dropped
after their seed; what later tables and plots need is kept in small `ModelSeed` records (summaries,
per-user values, training history; for the first seed also recommendation counts and the lists of
a few example users).
"""
from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from towerrec.experiments.config import Experiment
from towerrec.runner import ModelRun
from towerrec.splits import Split

N_EXAMPLE_USERS = 3
EXAMPLE_LIST = 10     # recommended titles shown per example user
EXAMPLE_HISTORY = 8   # most recent history titles shown


@dataclass
class ModelSeed:
    """One model on one seed, without the fitted model."""

    label: str
    model: str
    seed: int
    valid: dict[str, float] | None
    test: dict[str, float] | None
    per_user: pd.DataFrame | None          # user_id + test metric columns
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    not_applicable: str | None = None
    history: list[dict] | None = None      # per epoch: epoch, loss, valid metric, seconds
    rec_counts: np.ndarray | None = None   # [n_items] appearances in the top-k lists (first seed)
    examples: dict[str, list[int]] = field(default_factory=dict)  # user_id -> top item indices
    cost: dict | None = None               # towerrec.cost.Cost as a dict
    fairness: dict = field(default_factory=dict)   # user attribute -> group means and gaps (test)


@dataclass
class Examples:
    """A few typical users of the first seed: their train history and test targets (item indices)."""

    user_ids: list[str]
    history: list[list[int]]       # most recent first
    n_history: list[int]
    targets: list[set[int]]


@dataclass
class ExperimentResult:
    experiment: Experiment
    dataset: object                 # towerrec.data.dataset.Dataset (titles, name, checksum)
    records: list[ModelSeed]
    examples: Examples
    item_share: np.ndarray          # [n_items] train share of the first seed (catalogue popularity)
    rec_k: int                      # list length behind rec_counts, coverage and popularity plots
    split_info: dict
    seconds: float = 0.0

    def labels(self) -> list[str]:
        return list(self.experiment.models)


log = logging.getLogger(__name__)


def _info(message: str) -> None:
    log.info(message)


def load_data(exp: Experiment, data_dir: str | None = None):
    """The experiment's dataset, names resolved via `data_dir` or $TOWERREC_DATA."""
    from towerrec.data.registry import load_dataset

    dataset = load_dataset(exp.resolve_source(), exp.data.load_options(),
                           data_dir=data_dir)
    inter = dataset.interactions
    _info(f"{dataset.name}: {len(inter):,} interactions, {inter.n_users:,} users, {inter.n_items:,} items")
    return dataset


def pick_examples(split: Split, n: int = N_EXAMPLE_USERS) -> Examples:
    """Users at the quartiles of train-history length among test users: typical, not cherry-picked."""
    users = split.test.active_users()
    # cold-user splits: held-out users have no train rows; their input history is `test_history`
    train = split.test_history if split.test_history is not None else split.train
    counts = train.user_counts()
    by_length = users[np.argsort(counts[users], kind="stable")]
    quantiles = np.linspace(0.25, 0.75, n) if n > 1 else np.array([0.5])
    chosen = list(dict.fromkeys(by_length[np.round(quantiles * (len(by_length) - 1)).astype(int)].tolist()))
    test = split.test
    order = train.order() if train.time is not None else np.arange(len(train))
    history, targets = [], []
    for u in chosen:  # a handful of users, not a hot path
        rows = order[train.user_idx[order] == u]
        history.append(train.item_idx[rows][::-1][:EXAMPLE_HISTORY].tolist())
        targets.append(set(test.item_idx[test.user_idx == u].tolist()))
    return Examples([str(x) for x in train.user_map.ids[chosen]], history,
                    [int(counts[u]) for u in chosen], targets)


def _record(run: ModelRun, name: str, split: Split, first: bool, examples: Examples, rec_k: int) -> ModelSeed:
    seed = split.seed
    if run.test is None:
        return ModelSeed(run.name, name, seed, None, None, None, not_applicable=run.not_applicable)
    # warm / cold users' metrics ride along as "NDCG@10 (warm)" ...: into the leaderboard and its CSV
    groups = {f"{m} ({g})": v for g, values in run.test.groups.items() for m, v in values.items() if "@" in m}
    # the largest gap between user groups, as "NDCG@10 gap (gender)": into the leaderboard and its CSV
    gaps = {f"{m} gap ({attr})": v for attr, fair in run.test.fairness.items() for m, v in fair["gap"].items()
            if v is not None}
    record = ModelSeed(run.name, name, seed, run.valid.summary, {**run.test.summary, **groups, **gaps},
                       run.test.per_user, run.fit_seconds, run.eval_seconds, history=run.training_history,
                       cost=run.cost, fairness=run.test.fairness)
    if first:
        top = run.test.top_items[:, :rec_k]
        record.rec_counts = np.bincount(top[top >= 0], minlength=split.train.n_items)
        idx = split.train.user_map.index(np.asarray(examples.user_ids, dtype=object))
        rows = np.searchsorted(run.test.user_idx, idx)
        record.examples = {uid: run.test.top_items[r, :EXAMPLE_LIST][run.test.top_items[r, :EXAMPLE_LIST] >= 0]
                           .tolist() for uid, r in zip(examples.user_ids, rows)}
    return record


def _fit_and_evaluate(exp: Experiment, split: Split, dataset, label: str, *, threads: int | None = None,
                      progress: bool | None = None) -> ModelRun:
    """One (seed, model) cell of the experiment. The fitted model is dropped: what the results
    need (metrics, top lists, per-user values, training history) is in the ModelRun."""
    from towerrec.models import FitOptions
    from towerrec.runner import run_model

    ev = exp.evaluation
    run = run_model(label, exp.models[label].build(), split, user_features=dataset.user_features,
                    item_features=dataset.item_features, k=ev.eval_k, metrics=ev.metrics,
                    options=FitOptions(seed=split.seed, threads=threads, progress=progress),
                    exclude_seen=ev.exclude_seen, batch_size=ev.batch_size, beyond=ev.beyond_options(), cost=ev.cost)
    return dataclasses.replace(run, model=None)


def run_experiment(exp: Experiment, out: str | Path, *, data_dir: str | None = None,
                   command: Sequence[str] | None = None, dataset=None, jobs: int = 1) -> ExperimentResult:
    """Fit and evaluate every model on every seed; write each seed's audit folder under `out`.

    jobs > 1 fits that many (seed, model) cells at once in worker processes (`towerrec.experiments.
    parallel`), each with cores / jobs threads; the numbers do not depend on the completion order."""
    from towerrec.audit import write_evaluation
    from towerrec.splits import make_split

    start = time.perf_counter()
    out = Path(out)
    dataset = dataset if dataset is not None else load_data(exp, data_dir)
    ev = exp.evaluation
    rec_k = min(ev.k)
    splits: dict[int, Split] = {}
    for seed in exp.seeds:
        split = make_split(dataset.interactions, exp.split.method, seed=seed, ratios=exp.split.ratios)
        _info(f"seed {seed}: split {exp.split.method}: "
              + ", ".join(f"{k}={v:,}" for k, v in split.info["rows"].items())
              + f"; users evaluated: test {split.info['users_evaluated']['test']:,}")
        splits[seed] = split
    first = splits[exp.seeds[0]]
    examples = pick_examples(first)
    counts = first.train.item_counts().astype(np.float64)
    item_share, split_info = counts / max(counts.sum(), 1.0), dict(first.info)

    def report(seed: int, label: str, run: ModelRun) -> None:
        _info(f"seed {seed}: {label}: {ev.primary} {run.test.summary[ev.primary]:.4f} (fit {run.fit_seconds:.1f} s, "
              f"eval {run.eval_seconds:.1f} s)" if run.test else f"seed {seed}: {label}: not applicable: "
              f"{run.not_applicable}")

    cells = [(seed, label) for seed in exp.seeds for label in exp.models]
    if jobs > 1:
        from towerrec.experiments.parallel import run_cells

        runs = run_cells(exp, splits, dataset, cells, jobs, _fit_and_evaluate, on_done=report)
    else:
        runs = {}
        for seed, label in cells:
            runs[seed, label] = _fit_and_evaluate(exp, splits[seed], dataset, label)
            report(seed, label, runs[seed, label])
    records: list[ModelSeed] = []
    for n, seed in enumerate(exp.seeds):
        seed_runs = [runs[seed, label] for label in exp.models]
        records += [_record(run, exp.models[run.name].model, splits[seed], n == 0, examples, rec_k)
                    for run in seed_runs]
        write_evaluation(out / f"seed-{seed}", seed_runs, dataset=dataset_info(dataset), split=splits[seed],
                         k=ev.eval_k, exclude_seen=ev.exclude_seen, command=command)
    return ExperimentResult(exp, dataset, records, examples, item_share, rec_k, split_info,
                            time.perf_counter() - start)


def dataset_info(dataset) -> dict:
    return {"name": dataset.name, "path": str(dataset.path), "sha256": getattr(dataset, "data_sha256", None),
            "report": dataset.report.lines()}


def per_user_long(records: Sequence[ModelSeed]) -> pd.DataFrame:
    """model, seed, user_id, metric columns: every per-user test value of the experiment."""
    frames = [r.per_user.assign(model=r.label, seed=r.seed) for r in records if r.per_user is not None]
    if not frames:
        return pd.DataFrame(columns=["model", "seed", "user_id"])
    frame = pd.concat(frames, ignore_index=True)
    return frame[["model", "seed", "user_id", *[c for c in frame.columns if c not in ("model", "seed", "user_id")]]]


def per_user_matrix(long: pd.DataFrame, metric: str, labels: Sequence[str]) -> pd.DataFrame:
    """users x models of one metric, averaged over seeds per user (pairs stay the same users)."""
    if long.empty:
        return pd.DataFrame(columns=list(labels))
    table = long.pivot_table(index="user_id", columns="model", values=metric, aggfunc="mean", sort=True)
    return table.reindex(columns=[m for m in labels if m in table.columns])
