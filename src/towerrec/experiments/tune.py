"""Hyperparameter search with Optuna on the validation split only.

The test split is never scored here: choosing hyperparameters by test numbers would make the
test a second validation set and every reported figure optimistic. The study lives in an SQLite
file in the output folder, so an interrupted search resumes where it stopped (trials that were
running when it died are marked failed and do not count towards `--trials`).

`--jobs N` runs the trials in N spawned processes that share the study through that file, each
with a fixed share of the trials (so the total is exact) and its own sampler seed.

Writes: `best_config.toml` (a `[models.<label>]` table to paste into the experiment),
`trials.csv` (one row per trial), `optuna.db`, `manifest.json`.
"""
from __future__ import annotations

import multiprocessing
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from towerrec.errors import TowerrecError
from towerrec.experiments.config import Experiment, ParamSpace
from towerrec.experiments.parallel import default_jobs, thread_environment, threads_per_job


def suggest(trial, space: ParamSpace) -> Any:
    """One value for `space` from an Optuna trial."""
    if space.kind == "categorical":
        # Optuna stores only None/bool/int/float/str choices: tuples travel as their index
        if any(isinstance(c, tuple) for c in space.choices):
            return space.choices[trial.suggest_categorical(space.name, list(range(len(space.choices))))]
        return trial.suggest_categorical(space.name, list(space.choices))
    if space.kind == "int":
        return trial.suggest_int(space.name, int(space.low), int(space.high), step=int(space.step or 1),
                                 log=space.log)
    return trial.suggest_float(space.name, float(space.low), float(space.high), step=space.step, log=space.log)


def toml_value(value: Any) -> str:
    """A Python scalar or sequence as a TOML value (enough for config fields)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value) if isinstance(value, int) or value == value else "nan"
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if value is None:
        raise TowerrecError("TOML has no null: leave the field out to keep its default")
    raise TowerrecError(f"cannot write {type(value).__name__} {value!r} as TOML")


def best_config_toml(exp: Experiment, label: str, params: dict[str, Any], value: float, trial: int,
                     n_trials: int) -> str:
    spec = exp.models[label]
    merged = {**spec.overrides, **params}
    lines = [f"# best of {n_trials} trials (trial {trial}) for [models.{label}] in {exp.path}",
             f"# validation {exp.evaluation.primary} = {value:.6f} (seed {exp.seeds[0]}, split {exp.split.method});"
             " the test split was not used",
             f"[models.{label}]", f"model = {toml_value(spec.model)}"]
    lines += [f"{k} = {toml_value(v)}" for k, v in merged.items() if v is not None]
    return "\n".join(lines) + "\n"


def _objective(exp: Experiment, label: str, split, features, options):
    """Optuna objective: fit on train with the trial's params (FitOptions `options`), return the
    valid metric."""
    from towerrec.evaluate import evaluate

    ev, spec = exp.evaluation, exp.models[label]
    metric = ev.primary
    k = int(metric.rsplit("@", 1)[1])

    def objective(trial) -> float:
        params = {s.name: suggest(trial, s) for s in exp.tune[label]}
        model = spec.build(params)
        t0 = time.perf_counter()
        model.fit(split.train, user_features=features.user_features, item_features=features.item_features,
                  valid=split.valid, options=options)
        trial.set_user_attr("fit_seconds", round(time.perf_counter() - t0, 3))
        trial.set_user_attr("pid", os.getpid())
        result = evaluate(model, split, part="valid", exclude_seen=ev.exclude_seen, k=(k,),
                          metrics=(metric.rsplit("@", 1)[0],), batch_size=ev.batch_size)
        value = result.summary[metric]
        print(f"trial {trial.number}: valid {metric} {value:.4f} {params}", file=sys.stderr, flush=True)
        return value

    return objective


def _tune_worker(exp: Experiment, label: str, split, features, storage: str, study_name: str, n_trials: int,
                 sampler_seed: int, threads: int) -> None:
    """One `--jobs` process: `n_trials` trials of the shared study."""
    import optuna
    import torch

    from towerrec.models import FitOptions

    torch.set_num_threads(threads)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_name, storage=storage,
                              sampler=optuna.samplers.TPESampler(seed=sampler_seed))
    options = FitOptions(seed=exp.seeds[0], threads=threads, progress=False)   # bars of 2 processes interleave
    study.optimize(_objective(exp, label, split, features, options), n_trials=n_trials)


def tune(exp: Experiment, label: str, n_trials: int, out: str | Path, *, data_dir: str | None = None,
         command: list[str] | None = None, dataset=None, jobs: int | None = None) -> dict:
    """Run (or resume) the study for `label`; returns {best_value, best_params, trials, files}.

    `jobs` > 1 runs trials in that many spawned processes (default: one per core on a CPU, one
    with a GPU, as `towerrec run`); the total number of trials is the same."""
    import optuna

    from towerrec.experiments.manifest import build_manifest, write_manifest
    from towerrec.experiments.runner import load_data
    from towerrec.models import FitOptions
    from towerrec.split import make_split

    if label not in exp.models:
        raise TowerrecError(f"--model {label!r} is not a model label of {exp.path}; labels: {', '.join(exp.models)}")
    if label not in exp.tune:
        raise TowerrecError(f"{exp.path}: no [tune.{label}] table with a search space for {label!r}")
    if exp.split.method == "cold-user":
        raise TowerrecError("tune scores valid users by id; the cold-user split has none (use another split)")
    if n_trials <= 0:
        raise TowerrecError(f"--trials must be positive, got {n_trials}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    dataset = dataset if dataset is not None else load_data(exp, data_dir)
    seed, metric = exp.seeds[0], exp.evaluation.primary
    split = make_split(dataset.interactions, exp.split.method, seed=seed, ratios=exp.split.ratios)
    features = SimpleNamespace(user_features=dataset.user_features, item_features=dataset.item_features)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(out / 'optuna.db').resolve()}"
    study_name = f"{exp.name}:{label}"
    study = optuna.create_study(study_name=study_name, storage=storage, load_if_exists=True,
                                direction="maximize", sampler=optuna.samplers.TPESampler(seed=seed))
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # left by an interrupted run
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)))
    remaining = max(0, n_trials - done)
    if done:
        print(f"resuming {out / 'optuna.db'}: {done} trials done, {remaining} to go", file=sys.stderr)
    jobs = max(1, min(jobs if jobs is not None else default_jobs(remaining), remaining or 1))
    if remaining and jobs == 1:
        study.optimize(_objective(exp, label, split, features, FitOptions(seed=seed)), n_trials=remaining)
    elif remaining:
        # each worker gets a fixed share of the trials (exact total) and its own sampler seed (else
        # every worker would propose the same first points); they share the study through SQLite
        shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
        threads = threads_per_job(jobs)
        with thread_environment(threads), ProcessPoolExecutor(
                max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_tune_worker, exp, label, split, features, storage, study_name, share,
                                   seed + 1 + i, threads) for i, share in enumerate(shares)]
            for future in futures:
                future.result()
    best = study.best_trial
    params = {s.name: (s.choices[best.params[s.name]] if s.kind == "categorical"
                       and any(isinstance(c, tuple) for c in s.choices) else best.params[s.name])
              for s in exp.tune[label]}
    trials = study.trials_dataframe()
    trials.to_csv(out / "trials.csv", index=False)
    (out / "best_config.toml").write_text(best_config_toml(exp, label, params, best.value, best.number,
                                                           len(trials)))
    write_manifest(out, build_manifest(exp, dataset, command=command or sys.argv, seconds=time.perf_counter() - start,
                                       extra={"tune": {"model": label, "trials": len(trials), "metric": f"valid {metric}",
                                                       "best_value": best.value, "best_params": params,
                                                       "seed": seed, "jobs": jobs}}))
    return {"best_value": best.value, "best_params": params, "trials": len(trials),
            "files": [out / "best_config.toml", out / "trials.csv", out / "optuna.db", out / "manifest.json"]}
