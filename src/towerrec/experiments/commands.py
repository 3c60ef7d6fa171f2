"""`towerrec run` and `towerrec tune`: experiments described by a TOML file.

    towerrec run examples/ml100k-general.toml --out results/ml100k-general
    towerrec tune examples/ml100k-general.toml --model ease --trials 30

Heavy imports (torch, matplotlib, optuna) happen inside the commands so `towerrec --help` stays fast.
Both check their optional extra first, so a missing one is a one-line install hint, not a
traceback after the run.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from pathlib import Path

from towerrec.errors import TowerrecError

log = logging.getLogger(__name__)


def _info(message: str) -> None:
    log.info(message)


def require(module: str, why: str, extra: str = "report") -> None:
    """A one-line error with the install command when the optional `module` is missing."""
    try:
        importlib.import_module(module)
    except ImportError:
        raise TowerrecError(f"{why} needs {module}, which is not installed: pip install 'towerrec[{extra}]'") from None


def cmd_run(args: argparse.Namespace) -> int:
    from towerrec.experiments.config import load_experiment
    from towerrec.experiments.leaderboard import build_leaderboard, to_text
    from towerrec.experiments.manifest import build_manifest, write_manifest
    from towerrec.experiments.parallel import default_jobs
    from towerrec.experiments.report import write_report
    from towerrec.experiments.results import write_results
    from towerrec.experiments.runner import run_experiment
    from towerrec.outdir import mark_complete, prepare_out

    exp = load_experiment(args.experiment)
    require("matplotlib", "towerrec run (its report.html)")
    out = prepare_out(args.out or Path("results") / exp.name, overwrite=args.overwrite)
    command = ["towerrec", *getattr(args, "argv", sys.argv[1:])]
    if exp.split.method == "rolling":
        return _run_rolling(exp, out, args, command)
    jobs = args.jobs or default_jobs(len(exp.seeds) * len(exp.models))
    result = run_experiment(exp, out, data_dir=args.data_dir, command=command, jobs=jobs)
    board, comparisons, reference = build_leaderboard(exp, result.records)
    manifest = build_manifest(exp, result.dataset, command=command, seconds=result.seconds)
    write_results(out, result, board, comparisons, reference)
    write_report(out, result, board, comparisons, reference, manifest)
    write_manifest(out, manifest)
    mark_complete(out, command=command)   # last: a folder without it is a run that did not finish
    print(f"\n{exp.name} | {result.dataset.name} | split {exp.split.method} | seeds "
          f"{', '.join(map(str, exp.seeds))} | test set, mean ± std over seeds\n")
    print(to_text(exp, board, reference))
    print(f"\nwrote {out}/: report.html, leaderboard.csv/.md, results.json, significance(_beyond).csv, "
          f"per_user.parquet, "
          f"manifest.json, seed-*/ (split, recs, per_user), COMPLETE in {result.seconds:.1f} s")
    return 0


def _run_rolling(exp, out: Path, args: argparse.Namespace, command: list[str]) -> int:
    """`towerrec run` of an experiment with [split] method = "rolling" (`towerrec.experiments.rolling`)."""
    from towerrec.experiments.rolling import rolling_text, run_rolling_experiment
    from towerrec.outdir import mark_complete

    result = run_rolling_experiment(exp, out, data_dir=args.data_dir, command=command)
    mark_complete(out, command=command)
    print(f"\n{exp.name} | split rolling, {exp.split.windows} windows from quantile {exp.split.start:g} | seeds "
          f"{', '.join(map(str, exp.seeds))} | refit vs update\n")
    print(rolling_text(result))
    print(f"\nwrote {out}/: report.html, rolling.json, rolling.csv, rolling.png, COMPLETE in {result.seconds:.1f} s")
    return 0


def cmd_tune(args: argparse.Namespace) -> int:
    from towerrec.experiments.config import load_experiment
    from towerrec.experiments.tune import tune

    exp = load_experiment(args.experiment)
    if exp.split.method == "rolling":
        raise TowerrecError(f"{args.experiment}: tune needs a split with a validation part; method = \"rolling\" "
                            "has none (tune on another split, then run the rolling evaluation)")
    require("optuna", "towerrec tune")
    out = Path(args.out or Path("results") / f"{exp.name}-tune-{args.model}")
    command = ["towerrec", *getattr(args, "argv", sys.argv[1:])]
    summary = tune(exp, args.model, args.trials, out, data_dir=args.data_dir, command=command, jobs=args.jobs)
    print(f"best valid {exp.evaluation.primary} {summary['best_value']:.4f} after {summary['trials']} trials: "
          f"{summary['best_params']}")
    print(f"wrote {out}/best_config.toml (the experiment with the tuned values: runs as it is in run, train "
          f"--config and evaluate --config), trials.csv, optuna.db (rerun to resume), manifest.json, COMPLETE")
    return 0


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}")
    return value


def register(sub: argparse._SubParsersAction) -> None:
    """Add `run` and `tune` to the `towerrec` parser."""
    p = sub.add_parser("run", help="run an experiment file: seeds x models, leaderboard, significance, report.html")
    p.add_argument("experiment", help="experiment TOML ([data], [split], [evaluation], seeds, [models.<label>])")
    p.add_argument("--out", default=None,
                   help="results folder (default: results/<experiment name>); COMPLETE is written last. A "
                        "folder holding other results is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the towerrec results already in --out first (never files towerrec did not write)")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets (default: $TOWERREC_DATA)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="fit this many (seed, model) cells at once, in worker processes with cores/jobs threads "
                        "each; the numbers do not depend on it (default: one per core on a CPU, 1 with a GPU; "
                        "each worker holds a copy of the data)")
    p.set_defaults(func=cmd_run)

    p = sub.add_parser("tune", help="search a model's hyperparameters with Optuna on the validation split")
    p.add_argument("experiment", help="experiment TOML with a [tune.<label>] search space")
    p.add_argument("--model", required=True, help="the model label of [models.<label>] to tune")
    p.add_argument("--trials", type=int, default=20, help="total trials, counting those of a resumed study")
    p.add_argument("--out", default=None,
                   help="output folder (default: results/<experiment>-tune-<label>); a rerun resumes the study "
                        "only if data, split, protocol, model and search space are unchanged")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets (default: $TOWERREC_DATA)")
    p.add_argument("--jobs", type=_positive_int, default=None,
                   help="trials in N processes sharing the study (default: one per CPU core, 1 with a GPU)")
    p.set_defaults(func=cmd_tune)
