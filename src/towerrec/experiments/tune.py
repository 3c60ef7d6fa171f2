"""Hyperparameter search with Optuna on the validation split only.

The test split is never scored here: choosing hyperparameters by test numbers would make the
test a second validation set and every reported figure optimistic. The study lives in an SQLite
file in the output folder, so an interrupted search resumes where it stopped (trials that were
running when it died are marked failed and do not count towards `--trials`).

`--jobs N` runs the trials in N spawned processes that share the study through that file, each
with a fixed share of the trials (so the total is exact) and its own sampler seed.

A study is resumed only when everything its trials depend on is unchanged: data (by content),
split, protocol, model and search space are fingerprinted (`fingerprint`) into the study name. A
study with another fingerprint in the same optuna.db is left alone and a fresh one starts, with a
one-line note naming what changed (a rerun on filtered data once resumed the old study and
reported its best value). Each session seeds its sampler with the number of trials already in
the study, so a resumed search does not replay the first session's random start-up points.

Writes: `best_config.toml` (the whole experiment file with `[models.<label>]` holding the best
values: it runs unchanged in `run`, `train --config`, `evaluate --config`), `trials.csv` (one row
per trial), `optuna.db`, `manifest.json`, and `COMPLETE` last (`towerrec.outdir`).
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import multiprocessing
import os
import re
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

from towerrec.errors import TowerrecError
from towerrec.experiments.config import Experiment, ParamSpace
from towerrec.experiments.parallel import (
    default_jobs,
    thread_environment,
    threads_per_job,
)
from towerrec.experiments.toml_lines import key_lines, table_headers, tomllib
from towerrec.files import atomic_path, write_text

log = logging.getLogger(__name__)


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


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else toml_value(key)


def _dump_toml(table: dict, prefix: tuple[str, ...] = ()) -> list[str]:
    """A parsed TOML document as text (comments are lost): the fallback of `tuned_experiment_text`."""
    scalars = {k: v for k, v in table.items() if not isinstance(v, dict)}
    tables = {k: v for k, v in table.items() if isinstance(v, dict)}
    lines = []
    if prefix and (scalars or not tables):
        lines.append(f"[{'.'.join(_toml_key(p) for p in prefix)}]")
    lines += [f"{_toml_key(k)} = {toml_value(v)}" for k, v in scalars.items()]
    for key, value in tables.items():
        lines += ([""] if lines else []) + _dump_toml(value, prefix + (key,))
    return lines


def _model_table(spec_model: str, overrides: dict[str, Any]) -> list[str]:
    return [f"model = {toml_value(spec_model)}"] + [f"{'.'.join(_toml_key(p) for p in k.split('.'))} = "
                                                    f"{toml_value(v)}" for k, v in overrides.items() if v is not None]


def _spliced(exp: Experiment, label: str, table_lines: list[str], source: str | None) -> str | None:
    """The experiment text with `[models.<label>]` (and its sub-tables) replaced by `table_lines`
    and `[data] source` by `source`; None when the file's layout makes that unsafe (the table is
    not a plain `[models.<label>]` block, or is also set elsewhere)."""
    lines = exp.text.splitlines()
    headers = table_headers(exp.text)
    ours = ("models", label)
    found = [n for n, (_, path) in enumerate(headers) if path == ours]
    if len(found) != 1:
        return None
    begin = headers[found[0]][0]
    after = [line for line, path in headers[found[0] + 1:] if path[:2] != ours]
    stop = after[0] - 1 if after else len(lines)           # last line (1-based) of the block
    inside = [path for line, path in headers if begin <= line <= stop]
    elsewhere = [path for path, line in key_lines(exp.text).items()
                 if path[:2] == ours and not begin <= line <= stop]
    if any(path[:2] != ours for path in inside) or elsewhere:
        return None
    while stop > begin and (not lines[stop - 1].strip() or lines[stop - 1].lstrip().startswith("#")):
        stop -= 1                                          # comments just above the next table stay with it
    lines[begin - 1:stop] = table_lines
    if source is not None:
        line = key_lines(exp.text).get(("data", "source"))
        if line is None or line > begin:
            return None  # [data] after the models: line numbers moved; let the fallback write it
        pattern = re.compile(r"""(\bsource\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*')""")
        match = pattern.search(lines[line - 1])
        if match is None:
            return None
        rest = lines[line - 1][match.end():]
        if rest.strip().startswith("#"):   # the old comment described the relative path
            rest = "  # absolute: this file is not beside the data"
        lines[line - 1] = lines[line - 1][:match.start()] + match.group(1) + toml_value(source) + rest
    return "\n".join(lines) + "\n"


def tuned_experiment_text(exp: Experiment, label: str, params: dict[str, Any], value: float, trial: int,
                          n_trials: int) -> str:
    """The experiment file with `[models.<label>]` holding the best values: a complete experiment
    that `run`, `train --config` and `evaluate --config` take as it is. Comments say where the
    values come from. A relative data path becomes absolute, as the file is written elsewhere."""
    spec = exp.models[label]
    merged = {**spec.overrides, **params}
    note = (f"# tuned by `towerrec tune --model {label}`: best of {n_trials} trials (trial {trial}), "
            f"valid {exp.evaluation.primary} = {value:.6f}",
            f"# (seed {exp.seeds[0]}, split {exp.split.method}; the test split was not used); "
            f"searched: {', '.join(s.name for s in exp.tune[label])}")
    table = [*note, f"[models.{_toml_key(label)}]", *_model_table(spec.model, merged)]
    local = exp.path.parent / exp.data.source          # resolve_source's rule: relative to the file first
    source = str(local.resolve()) if not Path(exp.data.source).is_absolute() and local.exists() else None
    text = _spliced(exp, label, table, source)
    if text is None or not _loads(text):
        raw = tomllib.loads(exp.text)
        raw.setdefault("models", {})[label] = {"model": spec.model}
        for key, v in merged.items():
            *parents, leaf = key.split(".")
            node = raw["models"][label]
            for part in parents:
                node = node.setdefault(part, {})
            node[leaf] = v
        if source is not None:
            raw["data"]["source"] = source
        text = "\n".join([f"# {exp.path} with [models.{label}] tuned (written by towerrec tune; the original's "
                          "comments are not kept)", *note, *_dump_toml(raw)]) + "\n"
    return text


def _loads(text: str) -> bool:
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        return False
    return True


def fingerprint(exp: Experiment, label: str, dataset) -> dict[str, Any]:
    """What a study's trials depend on: a resumed study must share all of it. The data by content
    (sha256 of the interaction file, load filters and what they removed, resulting sizes: not
    its path), the split (method, ratios, seed), the protocol (metric, masking), the model (name,
    fixed overrides) and the search space."""
    spec, report, inter = exp.models[label], dataset.report, dataset.interactions
    tuned = {s.name for s in exp.tune[label]}
    sha = getattr(dataset, "data_sha256", None)
    return {
        "data": {"sha256": sha, "source": None if sha else exp.data.source,
                 "load": {**dataclasses.asdict(exp.data), "source": None},
                 "rows_read": report.rows_read, "steps": report.steps,
                 "interactions": len(inter), "users": inter.n_users, "items": inter.n_items},
        "split": {"method": exp.split.method, "ratios": list(exp.split.ratios), "seed": exp.seeds[0]},
        "protocol": {"metric": exp.evaluation.primary, "exclude_seen": exp.evaluation.exclude_seen,
                     "ranking": "full", "part": "valid"},
        "model": {"name": spec.model, "fixed": {k: v for k, v in spec.overrides.items() if k not in tuned}},
        "space": [dataclasses.asdict(s) for s in exp.tune[label]],
    }


def fingerprint_key(parts: dict[str, Any]) -> str:
    """12 hex digits of the sha256 of the canonical JSON of `fingerprint(...)`."""
    text = json.dumps(parts, sort_keys=True, default=str, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()[:12]


def sampler_seed(seed: int, n_before: int, worker: int = 0) -> int:
    """The sampler seed of a session that starts with `n_before` trials in the study: a resumed
    study must not replay the random start-up points of the first session (same seed = the same
    first proposals as trials 0, 1, ...), and parallel workers must not propose the same points."""
    return int(np.random.SeedSequence([seed, n_before, worker]).generate_state(1)[0])


def _objective(exp: Experiment, label: str, split, features, options):
    """Optuna objective: fit on train with the trial's params (FitOptions `options`), return the
    valid metric."""
    from towerrec.evaluation import evaluate

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
                          metrics=(metric.rsplit("@", 1)[0],), batch_size=ev.batch_size, beyond=None)
        value = result.summary[metric]
        log.info("trial %d: valid %s %.4f %s", trial.number, metric, value, params)
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


def _open_study(optuna, storage: str, exp: Experiment, label: str, parts: dict[str, Any], seed: int):
    """The study of this fingerprint (created if new), and a one-line note when optuna.db holds
    studies of the same experiment and label with another fingerprint (they are kept, not resumed)."""
    base = f"{exp.name}:{label}"
    name = f"{base}:{fingerprint_key(parts)}"
    existing = optuna.study.get_all_study_names(storage)
    note = None
    others = [n for n in existing if n != name and (n == base or n.startswith(base + ":"))]
    if name not in existing and others:
        old = optuna.load_study(study_name=others[-1], storage=storage).user_attrs.get("fingerprint", {})
        changed = [k for k in parts if old.get(k) != json.loads(json.dumps(parts[k], default=str))]
        note = (f"optuna.db holds {len(others)} earlier stud{'y' if len(others) == 1 else 'ies'} of {base} with other "
                f"{', '.join(changed) if old else 'settings'}: starting a fresh study (the old ones are kept)")
    study = optuna.create_study(study_name=name, storage=storage, load_if_exists=True, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed))
    if "fingerprint" not in study.user_attrs:
        study.set_user_attr("fingerprint", json.loads(json.dumps(parts, default=str)))
    return study, name, note


def tune(exp: Experiment, label: str, n_trials: int, out: str | Path, *, data_dir: str | None = None,
         command: list[str] | None = None, dataset=None, jobs: int | None = None) -> dict:
    """Run (or resume) the study for `label`; returns {best_value, best_params, trials, files}.

    The study is resumed only when its fingerprint (`fingerprint`: data, split, protocol, model,
    search space) is the same; otherwise a fresh study starts in the same optuna.db, with a note.
    `jobs` > 1 runs trials in that many spawned processes (default: one per core on a CPU, one
    with a GPU, as `towerrec run`); the total number of trials is the same."""
    import optuna

    from towerrec.experiments.manifest import build_manifest, write_manifest
    from towerrec.experiments.runner import load_data
    from towerrec.models import FitOptions
    from towerrec.outdir import mark_complete, prepare_tune_out
    from towerrec.splits import make_split

    if label not in exp.models:
        from towerrec.config import did_you_mean

        raise TowerrecError(f"--model {label!r} is not a model label of {exp.path}{did_you_mean(label, list(exp.models))}; "
                            f"labels: {', '.join(exp.models)}")
    if label not in exp.tune:
        raise TowerrecError(f"{exp.path}: no [tune.{label}] table with a search space for {label!r}")
    if exp.split.method == "cold-user":
        raise TowerrecError("tune scores valid users by id; the cold-user split has none (use another split)")
    if n_trials <= 0:
        raise TowerrecError(f"--trials must be positive, got {n_trials}")
    out = prepare_tune_out(out)
    start = time.perf_counter()
    dataset = dataset if dataset is not None else load_data(exp, data_dir)
    seed, metric = exp.seeds[0], exp.evaluation.primary
    split = make_split(dataset.interactions, exp.split.method, seed=seed, ratios=exp.split.ratios)
    features = SimpleNamespace(user_features=dataset.user_features, item_features=dataset.item_features)

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = f"sqlite:///{(out / 'optuna.db').resolve()}"
    parts = fingerprint(exp, label, dataset)
    study, study_name, note = _open_study(optuna, storage, exp, label, parts, seed)
    if note:
        log.info(note)
    for stale in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        study.tell(stale.number, state=optuna.trial.TrialState.FAIL)  # left by an interrupted run
    n_before = len(study.get_trials(deepcopy=False))
    done = len(study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,
                                                        optuna.trial.TrialState.PRUNED)))
    remaining = max(0, n_trials - done)
    if done:
        log.info(f"resuming {out / 'optuna.db'} (study {study_name}): {done} trials done, {remaining} to go")
    jobs = max(1, min(jobs if jobs is not None else default_jobs(remaining), remaining or 1))
    if remaining and jobs == 1:
        study.sampler = optuna.samplers.TPESampler(seed=sampler_seed(seed, n_before))
        study.optimize(_objective(exp, label, split, features, FitOptions(seed=seed)), n_trials=remaining)
    elif remaining:
        # each worker gets a fixed share of the trials (exact total) and its own sampler seed (else
        # every worker would propose the same first points); they share the study through SQLite
        shares = [remaining // jobs + (i < remaining % jobs) for i in range(jobs)]
        threads = threads_per_job(jobs)
        with thread_environment(threads), ProcessPoolExecutor(
                max_workers=jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = [pool.submit(_tune_worker, exp, label, split, features, storage, study_name, share,
                                   sampler_seed(seed, n_before, 1 + i), threads) for i, share in enumerate(shares)]
            for future in futures:
                future.result()
    try:
        best = study.best_trial
    except ValueError:
        raise TowerrecError(f"no trial of study {study_name} finished; see the errors above") from None
    params = {s.name: (s.choices[best.params[s.name]] if s.kind == "categorical"
                       and any(isinstance(c, tuple) for c in s.choices) else best.params[s.name])
              for s in exp.tune[label]}
    trials = study.trials_dataframe()
    with atomic_path(out / "trials.csv") as tmp:
        trials.to_csv(tmp, index=False)
    write_text(out / "best_config.toml", tuned_experiment_text(exp, label, params, best.value, best.number,
                                                               len(trials)))
    write_manifest(out, build_manifest(exp, dataset, command=command or sys.argv, seconds=time.perf_counter() - start,
                                       extra={"tune": {"model": label, "trials": len(trials), "metric": f"valid {metric}",
                                                       "best_value": best.value, "best_params": params,
                                                       "best_trial": best.number, "seed": seed, "jobs": jobs,
                                                       "study": study_name, "fingerprint": parts}}))
    mark_complete(out, command=command or sys.argv)
    return {"best_value": best.value, "best_params": params, "trials": len(trials), "study": study_name,
            "files": [out / "best_config.toml", out / "trials.csv", out / "optuna.db", out / "manifest.json",
                      out / "COMPLETE"]}
