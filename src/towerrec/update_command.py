"""`towerrec update`: fold new rows into a saved model and save (or publish) the next version.

    towerrec update artifacts/store --data new_rows.csv --items new_items.csv --publish artifacts/store
    towerrec serve artifacts/store --watch 2        # picks each published version up, no failed requests

The model's own `update` does the work (`Recommender.update`: new ids admitted, ALS fold-in,
EASE/ItemKNN statistics, torch fine-tune with replay); the catalogue files (titles, item table) are
carried over and extended with the new items' rows, and the lineage records the new data.
"""
from __future__ import annotations

import argparse
import logging
from pathlib import Path

log = logging.getLogger(__name__)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("update", help="fold new interactions into a saved model (continual learning)")
    p.add_argument("artifact", help="model folder, or a model store (its LATEST version is updated)")
    p.add_argument("--data", required=True, help="the new rows: a CSV/TSV/Parquet log or a dataset folder "
                                                 "(its items.*/users.* give content for new ids)")
    p.add_argument("--items", default=None, help="CSV/Parquet item table (item_id + features/text) for new items")
    p.add_argument("--users", default=None, help="CSV/Parquet user table (user_id + features) for new users")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--out", default=None, help="write the updated model to this folder")
    target.add_argument("--publish", default=None, metavar="STORE",
                        help="save it as the next version of this model store and make it LATEST")
    p.add_argument("--seed", type=int, default=0, help="seed of the fine-tune and its replay sample")
    p.add_argument("--threads", type=int, default=None, help="torch threads")
    p.set_defaults(func=cmd_update)


def _table(path: str | None):
    if path is None:
        return None
    from towerrec.serve.catalogue import read_item_table

    return read_item_table(path)


def cmd_update(args: argparse.Namespace) -> int:
    import pandas as pd

    from towerrec.artifact import (
        publish,
        read_dataset_info,
        read_item_table,
        read_titles,
        resolve_artifact,
        save_recommender,
    )
    from towerrec.data.registry import load_dataset
    from towerrec.models import FitOptions, load_model

    source = resolve_artifact(args.artifact)
    model = load_model(str(source))
    new = load_dataset(args.data)
    items = _table(args.items) if args.items else new.items
    users = _table(args.users) if args.users else new.users
    if users is not None and "user_id" not in users.columns:
        users = users.rename(columns={users.columns[0]: "user_id"})
    n_items_before = model.n_items
    model.update(new.interactions, items=items, users=users,
                 options=FitOptions(seed=args.seed, threads=args.threads, progress=False))
    entry = model.lineage_[-1]
    log.info("update: %s", {k: v for k, v in entry.items() if k != "data_sha256"})
    new_ids = model.item_map_.to_list()[n_items_before:]
    rows = pd.DataFrame()
    if items is not None:
        rows = items.drop_duplicates("item_id")
        rows = rows.set_index(rows["item_id"].astype(str).rename("id"))
    titles = read_titles(source, n_items_before)
    if titles is not None:
        col = next((c for c in rows.columns if c.lower() in ("title", "name")), None)
        found = rows[col].reindex(new_ids) if col is not None else pd.Series([None] * len(new_ids))
        titles = titles + [str(t) if isinstance(t, str) and t else i for t, i in zip(found, new_ids)]
    table = read_item_table(source)
    if table is not None and items is not None:
        extra = items[items["item_id"].astype(str).isin(set(new_ids))]
        table = pd.concat([table, extra.reindex(columns=table.columns)], ignore_index=True)
    dataset = read_dataset_info(source)
    if dataset is not None:
        dataset = {**dataset, "users": len(model.user_map_), "items": model.n_items,
                   "interactions": int(dataset.get("interactions", 0)) + len(new.interactions)}
    kwargs = {"titles": titles, "item_table": table, "dataset": dataset}
    path = publish(model, args.publish, **kwargs) if args.publish else save_recommender(model, Path(args.out), **kwargs)
    print(f"{model.name}: version {model.version} ({entry.get('rows', 0):,} new rows, {entry.get('new_users', 0):,} "
          f"new users, {entry.get('new_items', 0):,} new items, {entry['seconds']:.2f} s) saved to {path}")
    return 0
