"""The `towerrec` command line: the only module that reads argv.

User mistakes (bad data, unknown names, bad options) print one line on stderr and exit 2;
tracebacks are kept for bugs.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from towerrec.errors import TowerrecError

LEADERBOARD_METRICS = ("NDCG", "Recall", "Precision", "MAP", "MRR", "HitRate", "F1")


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
    from towerrec.data.datasets import load_dataset
    from towerrec.data.load import LoadOptions

    user_k = item_k = 0
    if args.kcore:
        ks = _int_list(args.kcore, "--kcore")
        user_k, item_k = ks[0], ks[-1]
    options = LoadOptions(user_col=args.user_col, item_col=args.item_col, rating_col=args.rating_col,
                          time_col=args.time_col, min_rating=args.min_rating, duplicates=args.duplicates,
                          user_kcore=user_k, item_kcore=item_k)
    data_dir = args.data_dir or os.environ.get("TOWERREC_DATA")
    dataset = load_dataset(args.data, options, data_dir=data_dir, download=args.download,
                           verify=not args.no_verify)
    for line in dataset.report.lines():
        _info(line)
    inter = dataset.interactions
    _info(f"{dataset.name}: {len(inter):,} interactions, {inter.n_users:,} users, {inter.n_items:,} items")
    return dataset


def _info(message: str) -> None:
    print(message, file=sys.stderr)


def _read_toml(path: str) -> dict:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib

    try:
        with open(path, "rb") as fh:
            return tomllib.load(fh)
    except FileNotFoundError:
        raise TowerrecError(f"{path}: config file not found") from None
    except tomllib.TOMLDecodeError as exc:
        raise TowerrecError(f"{path}: invalid TOML: {exc}") from None


def build_model(name: str, overrides: dict | None = None, source: str = "config"):
    """A model from the registry with config overrides; unknown fields are errors."""
    from towerrec.models import MODELS

    if name not in MODELS:
        raise TowerrecError(f"unknown model {name!r}; known models: {', '.join(sorted(MODELS))}")
    model = MODELS[name]()
    if overrides:
        fields = {f.name for f in dataclasses.fields(model.config)}
        unknown = sorted(set(overrides) - fields)
        if unknown:
            raise TowerrecError(f"{source}: unknown field(s) {unknown} for model {name!r}; "
                                f"known: {', '.join(sorted(fields))}")
        model = type(model)(dataclasses.replace(model.config, **{
            k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}))
    return model


def _model_overrides(config: dict, name: str) -> dict:
    """`[models.<name>]` tables, or top-level keys when the file configures one model."""
    if "models" in config:
        return dict(config["models"].get(name, {}))
    return dict(config)


def _format_table(rows: list[dict], columns: list[str]) -> str:
    def fmt(v: object) -> str:
        if isinstance(v, float):
            return f"{v:.4f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    cells = [[fmt(r.get(c, "")) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) if cells else len(c) for i, c in enumerate(columns)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths)),
             "  ".join("-" * w for w in widths)]
    def numeric(v: str) -> bool:
        return v.replace(",", "").replace(".", "", 1).lstrip("-").isdigit() or v == "n/a"

    lines += ["  ".join(v.rjust(w) if i and numeric(v) else v.ljust(w) for i, (v, w) in enumerate(zip(row, widths)))
              for row in cells]
    return "\n".join(lines)


def leaderboard(runs, ks: Sequence[int], part: str = "test") -> str:
    """Models x metrics (at the smallest k, NDCG/Recall at the others), plus coverage and seconds."""
    k0 = min(ks)
    columns = ["model"] + [f"{m}@{k0}" for m in LEADERBOARD_METRICS]
    columns += [f"{m}@{k}" for k in sorted(ks) if k != k0 for m in ("NDCG", "Recall")]
    columns += [f"Coverage@{k0}", "fit_s", "eval_s"]
    rows, notes = [], []
    for run in runs:
        row = run.row(part)
        if "note" in row:
            notes.append(f"{run.name}: {row['note']}")
            row = {"model": run.name, **{c: "n/a" for c in columns[1:]}}
        rows.append(row)
    text = _format_table(rows, columns)
    return text + ("\n" + "\n".join(notes) if notes else "")


# ---- commands ------------------------------------------------------------------------------------
def cmd_datasets(args: argparse.Namespace) -> int:
    from towerrec.data.datasets import download_dataset, list_datasets

    if args.download:
        path = download_dataset(args.download, verify=not args.no_verify)
        print(f"{args.download}: ready at {path}")
        return 0
    rows = list_datasets(args.data_dir or os.environ.get("TOWERREC_DATA"))
    for row in rows:
        for key in ("rows", "users", "items"):
            row[key] = "" if row.get(key) is None else f"{row[key]:,}"
    print(_format_table(rows, ["name", "rows", "users", "items", "location"]))
    return 0


def _evaluate(dataset, model_names: Sequence[str], *, split_method: str, ks: tuple[int, ...], seed: int,
              ratios: tuple[float, ...], exclude_seen: bool, config: dict, out: str | None,
              batch_size: int, command: Sequence[str] | None) -> list:
    from towerrec.audit import write_evaluation
    from towerrec.models import FitOptions
    from towerrec.runner import run_model
    from towerrec.split import make_split

    split = make_split(dataset.interactions, split_method, seed=seed, ratios=ratios)
    _info(f"split {split_method} (seed {seed}): " + ", ".join(f"{k}={v:,}" for k, v in split.info["rows"].items())
          + f"; users evaluated: test {split.info['users_evaluated']['test']:,}")
    models = [(name, build_model(name, _model_overrides(config, name))) for name in model_names]
    runs = []
    options = FitOptions(seed=seed)
    for name, model in models:
        _info(f"fitting {name} ...")
        runs.append(run_model(name, model, split, user_features=dataset.user_features,
                              item_features=dataset.item_features, k=ks, options=options,
                              exclude_seen=exclude_seen, batch_size=batch_size))
    protocol = "full ranking, " + ("train (+valid) items excluded" if exclude_seen else "nothing excluded")
    print(f"\n{dataset.name} | split {split_method} seed {seed} | {protocol} | test set\n")
    print(leaderboard(runs, ks))
    if out:
        path = write_evaluation(out, runs, dataset={"name": dataset.name, "path": str(dataset.path),
                                                    "report": dataset.report.lines()},
                                split=split, k=ks, exclude_seen=exclude_seen, command=command)
        print(f"\nwrote {path}/results.json, split/, recs/, per_user/")
    return runs


def cmd_evaluate(args: argparse.Namespace) -> int:
    ks = _int_list(args.k, "--k")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if not names:
        raise TowerrecError("--models needs at least one model name")
    config = _read_toml(args.config) if args.config else {}
    dataset = _load(args)
    _evaluate(dataset, names, split_method=args.split, ks=ks, seed=args.seed,
              ratios=_float_list(args.ratios, "--ratios"), exclude_seen=not args.no_exclude_seen,
              config=config, out=args.out, batch_size=args.batch_size, command=["towerrec", *args.argv])
    return 0


def cmd_quickstart(args: argparse.Namespace) -> int:
    from towerrec.data.datasets import load_dataset
    from towerrec.models import MODELS

    data_dir = args.data_dir or os.environ.get("TOWERREC_DATA")
    try:
        dataset = load_dataset("ml-100k", data_dir=data_dir, download=False)
    except TowerrecError as exc:
        _info(f"ml-100k not found ({exc}); using the built-in synthetic dataset instead")
        dataset = load_dataset("synthetic")
    inter = dataset.interactions
    _info(f"{dataset.name}: {len(inter):,} interactions, {inter.n_users:,} users, {inter.n_items:,} items")
    names = [m for m in ("pop", "itemknn", "ease", "als", "hybrid") if m in MODELS]
    start = time.perf_counter()
    _evaluate(dataset, names, split_method="random", ks=(10, 20), seed=0, ratios=(0.8, 0.1, 0.1),
              exclude_seen=True, config={}, out=args.out, batch_size=1024, command=["towerrec", *args.argv])
    print(f"\nquickstart finished in {time.perf_counter() - start:.1f} s. Next: "
          "towerrec evaluate --data <folder|file> --models ease,als --split loo --out results/")
    return 0


def cmd_train(args: argparse.Namespace) -> int:
    from towerrec.models import FitOptions
    from towerrec.split import make_split

    name = args.model if not args.preset else args.preset
    if args.model == "two-tower" and args.preset:
        name = args.preset
    config = _read_toml(args.config) if args.config else {}
    model = build_model(name, _model_overrides(config, name), source=args.config or "config")
    dataset = _load(args)
    options = FitOptions(seed=args.seed)
    if args.split == "none":
        model.fit(dataset.interactions, user_features=dataset.user_features,
                  item_features=dataset.item_features, options=options)
    else:
        from towerrec.runner import evaluate_on_split

        split = make_split(dataset.interactions, args.split, seed=args.seed)
        model.fit(split.train, user_features=dataset.user_features, item_features=dataset.item_features,
                  valid=split.valid, options=options)
        valid, test = evaluate_on_split(model, split, k=(10,))
        if os.environ.get("RANK", "0") == "0":
            print(f"{name}: valid NDCG@10 {valid.summary['NDCG@10']:.4f}, "
                  f"test NDCG@10 {test.summary['NDCG@10']:.4f} (split {args.split}, seed {args.seed}, full ranking)")
    if os.environ.get("RANK", "0") != "0":  # under torchrun only rank 0 writes the artifact
        return 0
    from towerrec.artifact import save_recommender

    # one call writes the whole folder, model.json last: titles and the attribute table (for serving
    # filters) come from the dataset's items table when it has one
    n = dataset.interactions
    items = dataset.items
    path = save_recommender(model, args.out,
                            titles=dataset.titles(range(n.n_items)) if items is not None else None,
                            item_table=items,
                            dataset={"name": dataset.name, "users": n.n_users, "items": n.n_items,
                                     "interactions": len(n)})
    print(f"saved {name} to {path}")
    return 0


def cmd_recommend(args: argparse.Namespace) -> int:
    from towerrec.artifact import read_titles
    from towerrec.models import load_model

    model = load_model(args.artifact)
    titles = read_titles(args.artifact, model.n_items)
    if args.users:
        return _batch_recommend(model, args)
    if args.history:
        recs = model.recommend(history=[h.strip() for h in args.history.split(",") if h.strip()], k=args.k)
    elif args.user:
        recs = model.recommend([args.user], k=args.k)
    else:
        raise TowerrecError("recommend needs --user, --history or --users")
    frame = recs.to_frame()
    if titles is not None:
        idx = model.item_map_.index(frame["item_id"].to_numpy())
        frame["title"] = [titles[i] for i in idx]
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
        from towerrec.data.load import read_table

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
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("datasets", help="list known datasets and where they were found")
    p.add_argument("--data-dir", default=None, help="folder holding named datasets (default: $TOWERREC_DATA)")
    p.add_argument("--download", metavar="NAME", default=None,
                   help="download NAME into the cache ($TOWERREC_CACHE or ~/.cache/towerrec), verify, convert")
    p.add_argument("--no-verify", action="store_true", help="with --download: accept an archive without a checksum")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("evaluate", help="fit models on a split and print a full-ranking leaderboard")
    _add_data_args(p)
    p.add_argument("--models", default="pop,itemknn,ease,als", help="comma-separated model names")
    p.add_argument("--split", default="random",
                   choices=("random", "user-temporal", "temporal", "loo", "cold-item", "cold-user"))
    p.add_argument("--ratios", default="0.8,0.1,0.1", help="train,valid,test ratios")
    p.add_argument("--k", default="10,20", help="list lengths, e.g. 10,20")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--config", default=None, help="TOML with [models.<name>] tables of config overrides")
    p.add_argument("--no-exclude-seen", action="store_true",
                   help="do not mask already-seen items (RecBole's sequential protocol)")
    p.add_argument("--batch-size", type=int, default=1024, help="users scored per batch")
    p.add_argument("--out", default=None, help="write split/, recs/, per_user/ and results.json here")
    p.set_defaults(func=cmd_evaluate)

    p = sub.add_parser("quickstart", help="evaluate the baselines on ml-100k (or synthetic data)")
    p.add_argument("--data-dir", default=None, help="folder holding ml-100k/ (default: $TOWERREC_DATA)")
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_quickstart)

    p = sub.add_parser("train", help="fit one model and save it as an artifact folder")
    _add_data_args(p)
    p.add_argument("--model", required=True)
    p.add_argument("--preset", default=None, help="two-tower preset: cf, content or hybrid")
    p.add_argument("--config", default=None, help="TOML file overriding config fields")
    p.add_argument("--split", default="random",
                   help="hold-out split for early stopping and a test figure, or 'none' to fit on everything")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("recommend", help="top-k from a saved model")
    p.add_argument("artifact")
    p.add_argument("--user", default=None)
    p.add_argument("--history", default=None, help="comma-separated item ids (new user)")
    p.add_argument("--users", default=None, help="FILE with a user_id column, or 'all' (batch mode)")
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--out", default=None)
    p.set_defaults(func=cmd_recommend)

    # commands that live with their feature (each module's import is light: heavy deps load lazily)
    from towerrec.experiments.commands import register as register_experiments
    from towerrec.serve.commands import register as register_serve

    register_serve(sub)
    register_experiments(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point; returns the exit code (2 for user mistakes)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0)
    args.argv = argv
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
