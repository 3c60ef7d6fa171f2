"""The `towerrec` command line: the only module that reads argv.

User mistakes (bad data, unknown names, bad options) print one line on stderr and exit 2;
tracebacks are kept for bugs.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from towerrec.display import text_table
from towerrec.errors import TowerrecError

log = logging.getLogger("towerrec.cli")
#: `towerrec.splits.SPLITS`, spelt out: importing the splits module (pandas, pyarrow) would slow every `--help`
SPLITS = ("random", "user-temporal", "temporal", "loo", "cold-item", "cold-user")
#: `evaluate` also takes the rolling evaluation (`towerrec.rolling`): windows, not one split
ROLLING = "rolling"

DEFAULT_MODELS = ("pop", "itemknn", "ease", "als")     # `evaluate` without --models or --config


class _Parser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line on stderr and exit 2."""

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"towerrec: error: {message} (see '{self.prog} --help')\n")


# ---- helpers shared by commands ----------------------------------------------------------------
def _int_list(text: str, what: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise TowerrecError(f"{what} must be comma-separated integers, got {text!r}") from None
    if not values or any(v <= 0 for v in values):
        raise TowerrecError(f"{what} must be positive integers, got {text!r}")
    return values


def _float_list(text: str, what: str) -> tuple[float, ...]:
    try:
        return tuple(float(x) for x in text.split(",") if x.strip())
    except ValueError:
        raise TowerrecError(f"{what} must be comma-separated numbers, got {text!r}") from None


def _add_data_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data", required=True,
                   help="dataset folder, CSV/TSV/Parquet file, or a known dataset name (see `towerrec datasets`)")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets (default: $TOWERREC_DATA)")
    p.add_argument("--user-col"), p.add_argument("--item-col")
    p.add_argument("--rating-col"), p.add_argument("--time-col")
    p.add_argument("--min-rating", type=float, default=None,
                   help="implicit conversion: keep rows with rating >= this")
    p.add_argument("--duplicates", default="first", choices=("keep", "first", "last", "sum"),
                   help="repeated (user, item) rows: keep all, the first or last in time, or sum weights "
                        "(default: first)")
    p.add_argument("--kcore", default=None, help="U[,I]: keep users with >= U and items with >= I interactions")
    p.add_argument("--download", action="store_true",
                   help="download a known dataset into the cache when it is not found locally")
    p.add_argument("--no-verify", action="store_true", help="with --download: accept an archive without a checksum")


def _load(args: argparse.Namespace):
    from towerrec.data.load import LoadOptions
    from towerrec.data.registry import load_dataset

    user_k = item_k = 0
    if args.kcore:
        ks = _int_list(args.kcore, "--kcore")
        user_k, item_k = ks[0], ks[-1]
    options = LoadOptions(user_col=args.user_col, item_col=args.item_col, rating_col=args.rating_col,
                          time_col=args.time_col, min_rating=args.min_rating, duplicates=args.duplicates,
                          user_kcore=user_k, item_kcore=item_k)
    data_dir = args.data_dir   # None: the registry looks in $TOWERREC_DATA, then the cache
    dataset = load_dataset(args.data, options, data_dir=data_dir, download=args.download,
                           verify=not args.no_verify)
    for line in dataset.report.lines():
        _info(line)
    inter = dataset.interactions
    _info(f"{dataset.name}: {len(inter):,} interactions, {inter.n_users:,} users, {inter.n_items:,} items")
    return dataset


def _info(message: str) -> None:
    log.info(message)


def _read_config(path: str | None):
    """The `--config` file (the experiment format, `towerrec.experiments.config`), or None."""
    if not path:
        return None
    from towerrec.experiments.config import load_config

    return load_config(path)


def _config_note(config) -> None:
    """Say once that an experiment file's other tables do not steer train/evaluate."""
    unused = [t for t in ("data", "split", "evaluation", "significance", "seeds") if config and t in config.raw_keys]
    if unused:
        _info(f"{config.path}: only its [models.*] tables are used here ({', '.join(unused)} are left to the "
              f"command line)")


def _names(text: str | None, option: str) -> list[str] | None:
    if text is None:
        return None
    names = [m.strip() for m in text.split(",") if m.strip()]
    if not names:
        raise TowerrecError(f"{option} needs at least one model name")
    return names


# ---- commands ------------------------------------------------------------------------------------
def cmd_datasets(args: argparse.Namespace) -> int:
    from towerrec.data.registry import download_dataset, list_datasets

    if args.download:
        path = download_dataset(args.download, verify=not args.no_verify)
        print(f"{args.download}: ready at {path}")
        return 0
    rows = list_datasets(args.data_dir)
    for row in rows:
        for key in ("rows", "users", "items"):
            row[key] = "" if row.get(key) is None else f"{row[key]:,}"
    columns = ["name", "rows", "users", "items", "location"]
    print(text_table(columns, [[row.get(c, "") for c in columns] for row in rows]))
    return 0


def _evaluate(dataset, models: Sequence[tuple[str, object]], *, split_method: str, ks: tuple[int, ...],
              seed: int, ratios: tuple[float, ...], exclude_seen: bool, out: str | None,
              batch_size: int, command: Sequence[str] | None) -> list:
    """Fit and evaluate `models` ((label, unfitted model) pairs, built before the data was read);
    with `out` (already prepared by `towerrec.outdir.prepare_out`) write the audit files and,
    last, the COMPLETE marker."""
    from towerrec.audit import write_evaluation
    from towerrec.models import FitOptions
    from towerrec.outdir import mark_complete
    from towerrec.runner import leaderboard_text, run_model
    from towerrec.splits import make_split

    split = make_split(dataset.interactions, split_method, seed=seed, ratios=ratios)
    _info(f"split {split_method} (seed {seed}): " + ", ".join(f"{k}={v:,}" for k, v in split.info["rows"].items())
          + f"; users evaluated: test {split.info['users_evaluated']['test']:,}")
    runs = []
    options = FitOptions(seed=seed)
    for name, model in models:
        _info(f"fitting {name} ...")
        runs.append(run_model(name, model, split, user_features=dataset.user_features,
                              item_features=dataset.item_features, k=ks, options=options,
                              exclude_seen=exclude_seen, batch_size=batch_size))
    protocol = "full ranking, " + ("train (+valid) items excluded" if exclude_seen else "nothing excluded")
    print(f"\n{dataset.name} | split {split_method} seed {seed} | {protocol} | test set\n")
    print(leaderboard_text(runs, ks))
    if out:
        path = write_evaluation(out, runs, dataset={"name": dataset.name, "path": str(dataset.path),
                                                    "report": dataset.report.lines()},
                                split=split, k=ks, exclude_seen=exclude_seen, command=command)
        mark_complete(path, command=command)
        print(f"\nwrote {path}/results.json, split/, recs/, per_user/, COMPLETE")
    return runs


def _prepare_out(args: argparse.Namespace) -> None:
    if args.out:
        from towerrec.outdir import prepare_out

        prepare_out(args.out, overwrite=args.overwrite)


def cmd_evaluate(args: argparse.Namespace) -> int:
    from towerrec.experiments.config import select_models

    ks = _int_list(args.k, "--k")
    ratios = _float_list(args.ratios, "--ratios")
    config = _read_config(args.config)
    names = _names(args.models, "--models")
    if names is None and config is None:
        names = list(DEFAULT_MODELS)
    specs = select_models(config, names, option="--models")
    models = [(spec.label, spec.build()) for spec in specs]      # every name checked before the data is read
    rolling = _rolling_args(args)
    _prepare_out(args)
    _config_note(config)
    dataset = _load(args)
    if rolling is not None:
        from towerrec.experiments.rolling import evaluate_rolling
        from towerrec.outdir import mark_complete

        evaluate_rolling(dataset, models, windows=rolling[0], start=rolling[1], seed=args.seed, ks=ks, out=args.out,
                         command=["towerrec", *args.argv], batch_size=args.batch_size)
        if args.out:
            mark_complete(args.out, command=["towerrec", *args.argv])
            print(f"\nwrote {args.out}/rolling.json, rolling.csv, rolling.png, COMPLETE")
        return 0
    _evaluate(dataset, models, split_method=args.split, ks=ks, seed=args.seed, ratios=ratios,
              exclude_seen=not args.no_exclude_seen, out=args.out, batch_size=args.batch_size,
              command=["towerrec", *args.argv])
    return 0


def _rolling_args(args: argparse.Namespace) -> tuple[int, float] | None:
    """(windows, start) for `--split rolling`, None otherwise; the two options only go with it."""
    if args.split != ROLLING:
        if args.windows is not None or args.start is not None:
            raise TowerrecError("--windows and --start go with --split rolling")
        return None
    windows = 5 if args.windows is None else args.windows
    start = 0.5 if args.start is None else args.start
    if windows < 1:
        raise TowerrecError(f"--windows must be a positive integer, got {windows}")
    if not 0 < start < 1:
        raise TowerrecError(f"--start must be a quantile in (0, 1), got {start}")
    return windows, start


def cmd_quickstart(args: argparse.Namespace) -> int:
    from towerrec.data.registry import load_dataset
    from towerrec.models import MODELS, build_model

    names = [m for m in ("pop", "itemknn", "ease", "als", "hybrid") if m in MODELS]
    models = [(name, build_model(name)) for name in names]
    _prepare_out(args)
    data_dir = args.data_dir   # None: the registry looks in $TOWERREC_DATA, then the cache
    try:
        dataset = load_dataset("ml-100k", data_dir=data_dir, download=False)
    except TowerrecError as exc:
        _info(f"ml-100k not found ({exc}); using the built-in synthetic dataset instead")
        dataset = load_dataset("synthetic")
    inter = dataset.interactions
    _info(f"{dataset.name}: {len(inter):,} interactions, {inter.n_users:,} users, {inter.n_items:,} items")
    start = time.perf_counter()
    _evaluate(dataset, models, split_method="random", ks=(10, 20), seed=0, ratios=(0.8, 0.1, 0.1),
              exclude_seen=True, out=args.out, batch_size=1024, command=["towerrec", *args.argv])
    print(f"\nquickstart finished in {time.perf_counter() - start:.1f} s. Next: "
          "towerrec evaluate --data <folder|file> --models ease,als --split loo --out results/")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from towerrec.experiments.config import select_models
    from towerrec.models import FitOptions
    from towerrec.splits import make_split

    config = _read_config(args.config)
    name = args.model
    if name is None:
        if args.preset is not None:
            name = "two-tower"
        elif config is not None and len(config.models) == 1:
            name = next(iter(config.models))
        else:
            labels = f" (labels in {args.config}: {', '.join(config.models)})" if config is not None else ""
            raise TowerrecError(f"train needs --model: a [models.<label>] label of --config or a model name{labels}")
    (spec,) = select_models(config, [name], option="--model")
    model = spec.build(preset=args.preset)      # checked before the data is read
    name = spec.label
    _config_note(config)
    if args.stream:
        return _train_stream(args, model, name)
    dataset = _load(args)
    options = FitOptions(seed=args.seed)
    split = args.split or "random"
    if split == "none":
        model.fit(dataset.interactions, user_features=dataset.user_features,
                  item_features=dataset.item_features, options=options)
    else:
        from towerrec.evaluation import evaluate_split

        parts = make_split(dataset.interactions, split, seed=args.seed)
        model.fit(parts.train, user_features=dataset.user_features, item_features=dataset.item_features,
                  valid=parts.valid, options=options)
        results = evaluate_split(model, parts, k=(10,))
        valid, test = results["valid"], results["test"]
        if os.environ.get("RANK", "0") == "0":
            print(f"{name}: valid NDCG@10 {valid.summary['NDCG@10']:.4f}, "
                  f"test NDCG@10 {test.summary['NDCG@10']:.4f} (split {split}, seed {args.seed}, full ranking)")
    # one call writes the whole folder, model.json last: titles and the attribute table (for serving
    # filters) come from the dataset's items table when it has one. Under torchrun save is a
    # collective: rank 0 writes while the others wait
    n = dataset.interactions
    items = dataset.items
    path = model.save(args.out, titles=dataset.titles(range(n.n_items)) if items is not None else None,
                      item_table=items, dataset={"name": dataset.name, "users": n.n_users, "items": n.n_items,
                                                 "interactions": len(n)})
    if os.environ.get("RANK", "0") != "0":
        return 0
    print(f"saved {name} to {path}")
    return 0


def _train_stream(args: argparse.Namespace, model, name: str) -> int:
    """`train --stream`: fit from a Parquet log read in shards (`towerrec.data.stream`), validate and
    test on the held-out user sample of the preparatory pass, save the artifact."""
    from towerrec.data.stream import StreamOptions
    from towerrec.data.stream_log import scan_log
    from towerrec.evaluation import evaluate_holdout
    from towerrec.models import FitOptions

    cleaning = [opt for opt, on in (("--min-rating", args.min_rating is not None), ("--kcore", bool(args.kcore)),
                                    ("--duplicates", args.duplicates != "first"), ("--download", args.download))
                if on]
    if cleaning:
        raise TowerrecError(f"{', '.join(cleaning)}: not applied to a streamed log (it is never loaded whole); "
                            "clean the Parquet files beforehand, or train without --stream")
    if args.split not in (None, "none"):
        raise TowerrecError("--stream holds out a sample of users (--holdout-users) instead of --split; "
                            "--split none fits on every row")
    reason = model.stream_refusal()
    if reason:                                   # before the pass over the data
        raise TowerrecError(f"{name} cannot train from a stream: {reason}")
    stream = StreamOptions(holdout_users=0 if args.split == "none" else args.holdout_users, workers=args.workers,
                           shuffle_buffer=args.shuffle_buffer, user_col=args.user_col, item_col=args.item_col,
                           time_col=args.time_col)
    log_ = scan_log(args.data, stream, seed=args.seed)
    s = log_.summary()
    _info(f"{args.data}: {s['rows']:,} rows in {s['fragments']:,} row groups, {s['users']:,} users, {s['items']:,} "
          f"items; held out: {s['valid_rows']:,} valid + {s['test_rows']:,} test rows of {s['holdout_users']:,} "
          f"sampled users ({s['scan_seconds']:.1f} s pass)")
    model.fit_stream(log_, options=FitOptions(seed=args.seed))
    rank0 = os.environ.get("RANK", "0") == "0"
    if len(log_.holdout.test) and rank0:
        results = evaluate_holdout(model, log_.holdout, k=(10,), seed=args.seed)
        print(f"{name}: valid NDCG@10 {results['valid'].summary['NDCG@10']:.4f}, test NDCG@10 "
              f"{results['test'].summary['NDCG@10']:.4f} (streamed; held-out sample of "
              f"{log_.holdout.test.active_users().size:,} users: last item test, the one before valid; full ranking)")
    path = model.save(args.out)   # under torchrun a collective: rank 0 writes while the others wait
    if rank0:
        print(f"saved {name} to {path}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from towerrec.artifact import read_titles, resolve_artifact
    from towerrec.models import load_model

    path = resolve_artifact(args.artifact)          # a model store: its LATEST version
    model = load_model(str(path))
    titles = read_titles(path, model.n_items)
    if args.users:
        if args.explain:
            raise TowerrecError("--explain works with --user or --history, not with --users")
        return _batch_recommend(model, args)
    history = [h.strip() for h in args.history.split(",") if h.strip()] if args.history else None
    if history is not None:
        recs = model.recommend(history=history, k=args.k)
    elif args.user:
        recs = model.recommend([args.user], k=args.k)
    else:
        raise TowerrecError("recommend needs --user, --history or --users")
    frame = recs.to_frame()
    if titles is not None:
        idx = model.item_map_.index(frame["item_id"].to_numpy())
        frame["title"] = [titles[i] for i in idx]
    if args.explain and len(frame):
        explained = model.explain(None if history is not None else args.user, list(frame["item_id"]),
                                  history=history)
        names = dict(zip(model.item_map_.to_list(), titles)) if titles is not None else None
        frame["why"] = [e.sentence(names) for e in explained]
        _info(f"explanations: {explained[0].method}")
    if recs.fallback and recs.fallback[0]:
        _info(f"fallback: {recs.fallback[0]}")
    print(frame.to_string(index=False))
    return 0


def _batch_recommend(model, args: argparse.Namespace) -> int:
    import numpy as np

    from towerrec.progress import progress

    if args.users == "all":
        users = model.user_map_.ids
    else:
        from towerrec.data.tables import read_table

        table = read_table(args.users, string_columns=("user_id",))
        col = "user_id" if "user_id" in table.column_names else table.column_names[0]
        users = np.asarray(table.column(col).to_pylist(), dtype=object)
    if not args.out:
        raise TowerrecError("--users needs --out FILE (.csv or .parquet)")
    out = Path(args.out)
    if out.suffix not in (".csv", ".parquet"):
        raise TowerrecError(f"--out must end in .csv or .parquet, got {out.name!r}")
    import pyarrow as pa
    import pyarrow.parquet as pq

    # memory stays bounded: at most ~16M scores per batch, and each batch is written as it comes
    batch = max(1, min(4096, 2**24 // max(model.n_items, 1)))
    tmp = out.with_name(out.name + ".tmp")
    schema = pa.schema([("user_id", pa.string()), ("rank", pa.int64()), ("item_id", pa.string()),
                        ("score", pa.float32())])
    writer = pq.ParquetWriter(tmp, schema) if out.suffix == ".parquet" else None
    n_rows = 0
    try:
        for start in progress(range(0, len(users), batch), desc="recommend", total=-(-len(users) // batch)):
            frame = model.recommend(users[start:start + batch], k=args.k, batch_size=batch).to_frame()
            frame = frame.astype({"user_id": str, "item_id": str, "rank": "int64", "score": "float32"})
            if writer is not None:
                writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
            else:
                frame.to_csv(tmp, mode="a" if n_rows else "w", header=not n_rows, index=False)
            n_rows += len(frame)
    finally:
        if writer is not None:
            writer.close()
    tmp.replace(out)
    print(f"wrote {n_rows:,} rows for {len(users):,} users to {out}")
    return 0


# ---- parser ------------------------------------------------------------------------------------
def build_parser() -> argparse.ArgumentParser:
    from towerrec import __version__

    parser = _Parser(prog="towerrec", description="Build, evaluate and serve recommenders.")
    parser.add_argument("--version", action="version", version=f"towerrec {__version__}")
    _add_verbosity(parser, "_top")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    add_parser = sub.add_parser

    def add_with_verbosity(name: str, **kwargs: object) -> argparse.ArgumentParser:
        p = add_parser(name, **kwargs)
        _add_verbosity(p, "")           # `towerrec evaluate -v ...` as well as `towerrec -v evaluate ...`
        return p

    sub.add_parser = add_with_verbosity  # type: ignore[method-assign]

    p = sub.add_parser("datasets", help="list known datasets and where they were found")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets (default: $TOWERREC_DATA)")
    p.add_argument("--download", metavar="NAME", default=None,
                   help="download NAME into the cache ($TOWERREC_CACHE or ~/.cache/towerrec), verify, convert")
    p.add_argument("--no-verify", action="store_true", help="with --download: accept an archive without a checksum")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("evaluate", help="fit models on a split and print a full-ranking leaderboard")
    _add_data_args(p)
    p.add_argument("--models", default=None,
                   help="comma-separated names: each a [models.<label>] label of --config, else a registry "
                        "model name at its defaults (default: every table of --config; without --config "
                        "pop,itemknn,ease,als)")
    p.add_argument("--split", default="random", choices=(*SPLITS, ROLLING),
                   help="one split, or 'rolling': time windows, refit against incremental update per window")
    p.add_argument("--ratios", default="0.8,0.1,0.1", help="train,valid,test ratios")
    p.add_argument("--windows", type=int, default=None, help="--split rolling: test windows (default 5)")
    p.add_argument("--start", type=float, default=None,
                   help="--split rolling: time quantile where the windows begin; the first fit sees the rows "
                        "before it (default 0.5)")
    p.add_argument("--k", default="10,20", help="list lengths, e.g. 10,20")
    _add_config_args(p, "its [models.<label>] tables (model = \"<name>\" plus config fields) are used")
    p.add_argument("--no-exclude-seen", action="store_true",
                   help="do not mask already-seen items (RecBole's sequential protocol)")
    p.add_argument("--batch-size", type=int, default=1024, help="users scored per batch")
    _add_out_args(p)
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quickstart", help="evaluate the baselines on ml-100k (or synthetic data)")
    p.add_argument("--data-dir", default=None, help="folder holding ml-100k/ (default: $TOWERREC_DATA)")
    _add_out_args(p)
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("train", help="fit one model and save it as an artifact folder")
    _add_data_args(p)
    p.add_argument("--model", default=None,
                   help="a [models.<label>] label of --config, else a registry model name (default: the only "
                        "table of --config; two-tower with --preset)")
    p.add_argument("--preset", default=None,
                   help="two-tower preset cf, content or hybrid: only with --model two-tower (or a label whose "
                        "model is two-tower); any other model is an error")
    _add_config_args(p, "--model picks its table")
    p.add_argument("--split", default=None, choices=(*SPLITS, "none"),
                   help="hold-out split for early stopping and a test figure (default random), or 'none' to fit "
                        "on everything")
    p.add_argument("--out", required=True)
    p.add_argument("--stream", action="store_true",
                   help="read --data (a Parquet file or folder of them) from disk in shards instead of loading it: "
                        "for logs larger than memory; models without a history encoder (e.g. --preset cf)")
    p.add_argument("--holdout-users", type=int, default=2000,
                   help="with --stream: users sampled for valid (second-to-last item) and test (last item)")
    p.add_argument("--workers", type=int, default=0, help="with --stream: DataLoader reader processes per rank")
    p.add_argument("--shuffle-buffer", type=int, default=1 << 20,
                   help="with --stream: rows mixed before batching (memory: 16 bytes a row per reader)")
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recommend", help="top-k from a saved model")
    p.add_argument("artifact")
    p.add_argument("--user", default=None)
    p.add_argument("--history", default=None, help="comma-separated item ids (new user)")
    p.add_argument("--users", default=None, help="FILE with a user_id column, or 'all' (batch mode)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--explain", action="store_true",
                   help="say why each item is recommended ('because you liked X'; see towerrec.explain)")
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_recommend)

    # commands that live with their feature (each module's import is light: heavy deps load lazily)
    from towerrec.experiments.commands import register as register_experiments
    from towerrec.serve.commands import register as register_serve
    from towerrec.update_command import register as register_update

    register_serve(sub)
    register_experiments(sub)
    register_update(sub)
    return parser


def _add_out_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default=None,
                   help="write split/, recs/, per_user/, results.json and, last, COMPLETE here; a folder "
                        "holding other results is refused unless --overwrite")
    p.add_argument("--overwrite", action="store_true",
                   help="delete the towerrec results already in --out first (never other files)")


def _add_config_args(p: argparse.ArgumentParser, use: str) -> None:
    p.add_argument("--seed", type=int, default=0, help="split and model seed (default 0)")
    p.add_argument("--config", default=None, help="an experiment TOML (the format of `towerrec run`, e.g. the "
                                                  f"best_config.toml `tune` writes): {use}")


def _add_verbosity(p: argparse.ArgumentParser, suffix: str) -> None:
    p.add_argument("-v", "--verbose", action="count", default=0, dest=f"verbose{suffix}",
                   help="more detail on stderr (-v: debug, e.g. every epoch under a progress bar)")
    p.add_argument("-q", "--quiet", action="store_true", dest=f"quiet{suffix}",
                   help="only warnings and errors on stderr (results still go to stdout)")


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for user mistakes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    args.argv = argv
    from towerrec.progress import configure_logging

    quiet = args.quiet or args.quiet_top
    configure_logging(-1 if quiet else min(1, args.verbose + args.verbose_top))
    try:
        return int(args.func(args) or 0)
    except TowerrecError as exc:
        print(f"towerrec: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("towerrec: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
