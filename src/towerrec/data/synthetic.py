"""A seeded synthetic interaction log with the structure real logs have, at any scale.

Why each ingredient is there:
* Zipf item popularity (`zipf`, the exponent of the item weights): popularity baselines and
  negative sampling behave as on real data (the top 1% of items take a large share of rows).
* Latent taste clusters: each user has a home cluster and each item one cluster, so collaborative
  models have a signal to find; `category`, `tags`, `title` words and the user's `country` are
  correlated with the clusters, so feature towers have one too.
* Time order with sequential structure: a user's log is a walk. The current cluster persists for a
  while and drifts (Markov switching, home cluster favoured), and half of the steps move to the
  *next* item of the current one within its cluster (a fixed successor), so the next item depends
  on the recent ones and sequence models can beat popularity.
* (user, item) pairs are unique, as after the default duplicate policy of `load_dataset`; repeats
  drawn by the walk are redrawn within the same cluster with ever flatter weights.

Everything is vectorised over events and generated in user blocks of about a million events, so
20M interactions take seconds and well under 2 GB (no Python loop per user or per interaction).

>>> ds = synthetic(200, 100, 2_000, seed=1)
>>> len(ds.interactions), ds.interactions.n_users, ds.interactions.n_items
(2000, 200, 100)
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from towerrec.data.columns import Columns
from towerrec.data.dataset import Dataset
from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.load import DUPLICATE_POLICIES, LoadOptions, LoadReport, clean
from towerrec.errors import DataError

DEFAULT_SIZE = {"n_users": 2_000, "n_items": 1_000, "n_interactions": 100_000}
PARQUET_ABOVE = 1_000_000  # rows; larger logs are written as Parquet (a CSV of 20M rows is ~0.5 GB)
BLOCK = 1 << 20            # events per generation block: bounds the temporaries
T0 = 1_420_070_400         # 2015-01-01 UTC
SPAN = 3 * 365 * 86_400    # logs cover three years
P_SWITCH = 0.15            # per step: leave the current cluster
P_HOME = 0.6               # a new cluster segment is the user's home cluster
P_FOLLOW = 0.5             # per step within a segment: take the successor of the previous item
P_NOISE = 0.05             # a step drawn from global popularity, ignoring clusters
COUNTRIES = np.array(["US", "GB", "DE", "FR", "BR", "IN", "JP", "KR", "ES", "IT", "MX", "CA"], dtype=object)
_SYLLABLES = np.array(["ka", "lo", "mi", "ra", "ten", "vo", "su", "ne", "pa", "dor", "li", "qu", "sha",
                       "bel", "ti", "gan", "ro", "fe", "zu", "mor"], dtype=object)


@dataclass
class _Catalogue:
    """Item structure shared by all blocks. `order` lists items by (cluster, popularity rank)."""

    cluster: np.ndarray      # [n_items] int32
    rank: np.ndarray         # [n_items] popularity rank, 0 = most popular
    order: np.ndarray        # [n_items] int32 item ids sorted by cluster then rank
    start: np.ndarray        # [n_clusters] offset of each cluster in `order`
    size: np.ndarray         # [n_clusters]
    pos: np.ndarray          # [n_items] position of the item inside its cluster's run of `order`

    def cdf(self, exponent: float) -> tuple[np.ndarray, np.ndarray]:
        """Within-cluster CDF over `order`, offset by cluster (values in (c, c+1]), and a global CDF."""
        w = (self.rank + 1.0) ** -exponent
        ws = w[self.order]
        c = self.cluster[self.order]
        cum = np.cumsum(ws)
        before = np.concatenate([[0.0], cum[self.start[1:] - 1]])
        totals = np.add.reduceat(ws, self.start)
        return c + (cum - before[c]) / totals[c], np.cumsum(w) / w.sum()

    def draw(self, rng: np.random.Generator, clusters: np.ndarray, cdf: np.ndarray) -> np.ndarray:
        """One item per entry of `clusters`, by within-cluster weight."""
        u = rng.random(len(clusters))
        k = np.searchsorted(cdf, clusters + u, side="right")
        return self.order[np.minimum(k, self.start[clusters] + self.size[clusters] - 1)]


def _catalogue(rng: np.random.Generator, n_items: int, n_clusters: int) -> _Catalogue:
    cluster = (rng.permutation(n_items) % n_clusters).astype(np.int32)  # balanced clusters
    rank = rng.permutation(n_items)
    order = np.lexsort([rank, cluster]).astype(np.int32)
    size = np.bincount(cluster, minlength=n_clusters)
    start = np.concatenate([[0], np.cumsum(size)[:-1]])
    pos = np.empty(n_items, dtype=np.int64)
    pos[order] = np.arange(n_items) - start[cluster[order]]
    return _Catalogue(cluster, rank, order, start, size, pos)


def _last_true(flags: np.ndarray) -> np.ndarray:
    """Index of the last True at or before each position (flags[0] is True)."""
    return np.maximum.accumulate(np.where(flags, np.arange(len(flags)), 0))


def _block(rng: np.random.Generator, cat: _Catalogue, cdfs: list[tuple[np.ndarray, np.ndarray]],
           users: np.ndarray, counts: np.ndarray, home: np.ndarray, n_items: int, n_clusters: int
           ) -> tuple[np.ndarray, ...]:
    """Events of whole users `users` (counts[j] each): (user, item, time, rating), unique pairs."""
    user = np.repeat(users, counts)
    n = len(user)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    user_home = np.repeat(home, counts)
    # cluster segments: stay for a while, then switch; home favoured
    jump = first | (rng.random(n, dtype=np.float32) < P_SWITCH)
    seg = np.cumsum(jump) - 1
    seg_home = user_home[jump]
    other = (seg_home + rng.integers(1, max(n_clusters, 2), len(seg_home), dtype=np.int32)) % n_clusters
    cl = np.where(rng.random(len(seg_home), dtype=np.float32) < P_HOME, seg_home, other)[seg].astype(np.int32)
    del seg, seg_home, other
    # item walk: a fresh draw starts a run; following steps take successors in the cluster order
    cdf, global_cdf = cdfs[0]
    draw = cat.draw(rng, cl, cdf)
    noise = rng.random(n, dtype=np.float32) < P_NOISE
    draw[noise] = np.minimum(np.searchsorted(global_cdf, rng.random(int(noise.sum()))), n_items - 1)
    fresh = jump | (rng.random(n, dtype=np.float32) >= P_FOLLOW)
    run = _last_true(fresh)
    base = draw[run]
    bc = cat.cluster[base]
    item = cat.order[cat.start[bc] + (cat.pos[base] + (np.arange(n) - run)) % cat.size[bc]]
    del draw, noise, fresh, run, base, bc
    item = _redraw_repeats(rng, cat, cdfs, user, item, cl, n_items)
    # time: per-user start and exponential gaps, strictly increasing within a user
    t_start = T0 + (rng.random(len(users)) * 0.7 * SPAN).astype(np.int64)
    mean_gap = (SPAN - (t_start - T0)) * rng.uniform(0.1, 1.0, len(users)) / counts
    gaps = 1 + (rng.exponential(1.0, n) * np.repeat(mean_gap, counts)).astype(np.int64)
    csum = np.cumsum(gaps)
    time = np.repeat(t_start - (csum[starts] - gaps[starts]), counts) + csum
    # rating: liked when the item is from the user's home cluster
    mean = np.where(cat.cluster[item] == user_home, 3.9, 2.7)
    rating = np.clip(np.rint(mean + rng.normal(0.0, 0.9, n)), 1, 5).astype(np.int8)
    keep = item >= 0
    return user[keep], item[keep], time[keep], rating[keep]


def _redraw_repeats(rng: np.random.Generator, cat: _Catalogue, cdfs: list[tuple[np.ndarray, np.ndarray]],
                    user: np.ndarray, item: np.ndarray, cl: np.ndarray, n_items: int) -> np.ndarray:
    """Replace repeated (user, item) pairs in place, keeping the earliest; -1 where none was found.

    Rounds redraw in the same cluster with flatter weights (exponent halves, then uniform), then
    from the whole catalogue; whatever still collides (a user wanting most of the catalogue) is -1.
    """
    key = user.astype(np.int64) * n_items + item
    order = np.argsort(key, kind="stable")  # stable: the earliest row of a pair comes first
    sk = key[order]
    dup = np.zeros(len(key), dtype=bool)
    dup[order[1:][sk[1:] == sk[:-1]]] = True
    kept = np.unique(sk)
    del order, sk
    rounds = [(cdf, False) for cdf, _ in cdfs] + [(None, True)] * 16  # uniform: >= 1/2 success each
    for cdf, anywhere in rounds:
        idx = np.flatnonzero(dup)
        if len(idx) == 0:
            break
        new = (rng.integers(0, n_items, len(idx)).astype(np.int32) if anywhere else cat.draw(rng, cl[idx], cdf))
        new_key = user[idx].astype(np.int64) * n_items + new
        pos = np.minimum(np.searchsorted(kept, new_key), len(kept) - 1)
        ok = kept[pos] != new_key
        _, first = np.unique(new_key, return_index=True)
        unique_new = np.zeros(len(idx), dtype=bool)
        unique_new[first] = True
        ok &= unique_new
        item[idx[ok]] = new[ok]
        dup[idx[ok]] = False
        kept = np.sort(np.concatenate([kept, new_key[ok]]), kind="stable")  # merges two sorted runs
    item[dup] = -1
    return item


def _item_table(rng: np.random.Generator, cat: _Catalogue, n_clusters: int) -> pd.DataFrame:
    """title (cluster words), category (cluster-correlated), tags (multi-valued, cluster pools)."""
    n = len(cat.cluster)
    syll = len(_SYLLABLES)
    words_per_cluster = 24
    n_words = n_clusters * words_per_cluster + 40  # the last 40 words are shared by all clusters
    w = np.arange(n_words)
    vocab = _SYLLABLES[w % syll] + _SYLLABLES[(w // syll) % syll] + _SYLLABLES[(w * 7 + 3) % syll]
    vocab = pd.Series(vocab).str.capitalize().to_numpy(dtype=object)
    own = cat.cluster[:, None] * words_per_cluster + rng.integers(0, words_per_cluster, (n, 2))
    shared = n_clusters * words_per_cluster + rng.integers(0, 40, n)
    title = pd.Series(vocab[own[:, 0]]).str.cat([pd.Series(vocab[shared]), pd.Series(vocab[own[:, 1]])], sep=" ")
    n_categories = max(n_clusters // 2, 2)
    category = np.where(rng.random(n) < 0.8, cat.cluster // 2 % n_categories, rng.integers(0, n_categories, n))
    pool = 6  # tags per cluster; an item takes 1-3 distinct ones
    pick = np.argsort(rng.random((n, pool)), axis=1)[:, :3] + cat.cluster[:, None] * pool
    tag_names = pd.Series(np.char.add("t", pick.astype(str)).tolist())
    n_tags = rng.integers(1, 4, n)
    tags = tag_names.str[0]
    for j in (1, 2):  # three columns, not a loop over items
        tags = tags.where(n_tags <= j, tags + "|" + tag_names.str[j])
    return pd.DataFrame({"item_id": _ids("i", n), "title": title, "category": np.char.add("c", category.astype(str)),
                         "tags": tags})


def _user_table(rng: np.random.Generator, home: np.ndarray) -> pd.DataFrame:
    """age (numeric, shifted by cluster) and country (70% the cluster's country)."""
    n = len(home)
    age = np.clip(np.rint(22 + 3 * (home % 10) + rng.normal(0, 8, n)), 16, 80).astype(np.int64)
    country = np.where(rng.random(n) < 0.7, home % len(COUNTRIES), rng.integers(0, len(COUNTRIES), n))
    return pd.DataFrame({"user_id": _ids("u", n), "age": age, "country": COUNTRIES[country]})


def _ids(prefix: str, n: int) -> np.ndarray:
    return np.char.add(prefix, np.arange(n).astype(str)).astype(object)


def _user_counts(rng: np.random.Generator, n_users: int, n_interactions: int, cap: int) -> np.ndarray:
    """Heavy-tailed (lognormal) interactions per user, each in [1, cap], summing to n_interactions."""
    if n_interactions > n_users * cap:
        raise ValueError(f"n_interactions ({n_interactions}) exceeds n_users x n_items / 2 ({n_users * cap}): "
                         f"a user takes at most half the catalogue")
    activity = rng.lognormal(0.0, 1.0, n_users)
    counts = np.ones(n_users, dtype=np.int64)
    while (left := n_interactions - int(counts.sum())) > 0:  # a few rounds: what the cap cuts goes to the rest
        room = activity * (counts < cap)
        counts = np.minimum(counts + rng.multinomial(left, room / room.sum()), cap)
    return counts


def _setup(n_users: int, n_items: int, n_interactions: int, n_clusters: int, zipf: float, seed: int) -> dict:
    """The seeded state every block is drawn from (catalogue, home clusters, per-user counts)."""
    if n_users < 1 or n_items < 2 or n_clusters < 1:
        raise ValueError("need n_users >= 1, n_items >= 2 and n_clusters >= 1")
    n_clusters = min(n_clusters, n_items)  # a tiny catalogue cannot fill more clusters than items
    if n_interactions < n_users:
        raise ValueError(f"n_interactions ({n_interactions}) must be >= n_users ({n_users}): every user "
                         f"has at least one interaction")
    rng = np.random.default_rng(seed)
    cat = _catalogue(rng, n_items, n_clusters)
    cdfs = [cat.cdf(zipf * f) for f in (1.0, 0.5, 0.25, 0.0)]
    home = rng.integers(0, n_clusters, n_users).astype(np.int32)
    counts = _user_counts(rng, n_users, n_interactions, cap=n_items // 2)
    return {"rng": rng, "cat": cat, "cdfs": cdfs, "home": home, "counts": counts, "n_clusters": n_clusters,
            "params": {"n_users": n_users, "n_items": n_items, "n_interactions": n_interactions,
                       "n_clusters": n_clusters, "zipf": zipf, "seed": seed}}


def _blocks(state: dict, n_users: int, n_items: int):
    """(user, item, time, rating) arrays of consecutive user blocks of about `BLOCK` events each."""
    counts = state["counts"]
    cuts = np.searchsorted(np.cumsum(counts), np.arange(BLOCK, counts.sum(), BLOCK), side="right")
    for lo, hi in zip(np.concatenate([[0], cuts]), np.concatenate([cuts, [n_users]])):
        if hi <= lo:
            continue
        users = np.arange(lo, hi, dtype=np.int32)
        yield _block(state["rng"], state["cat"], state["cdfs"], users, counts[lo:hi], state["home"][lo:hi],
                     n_items, state["n_clusters"])


def generate(n_users: int, n_items: int, n_interactions: int, *, n_clusters: int = 20, zipf: float = 1.1,
             seed: int = 0, with_features: bool = True) -> dict:
    """The raw log as arrays (user [n] int32, item [n] int32, time [n] int64, rating [n] int8) + tables.

    Every user gets at least one interaction and at most half the catalogue. `n_unfilled` counts
    requested rows that found no unused item for their user (0 in practice: the last redraws are
    uniform, and a user holds at most half the items).
    """
    state = _setup(n_users, n_items, n_interactions, n_clusters, zipf, seed)
    counts = state["counts"]
    out = {k: np.empty(int(counts.sum()), dtype=d) for k, d in
           (("user", np.int32), ("item", np.int32), ("time", np.int64), ("rating", np.int8))}
    at = 0
    for parts in _blocks(state, n_users, n_items):
        for key, part in zip(("user", "item", "time", "rating"), parts):
            out[key][at:at + len(part)] = part
        at += len(parts[0])
    result = {k: v[:at] for k, v in out.items()}
    result.update(n_unfilled=int(n_interactions - at), item_cluster=state["cat"].cluster, user_cluster=state["home"],
                  params=state["params"])
    if with_features:
        result["items"] = _item_table(state["rng"], state["cat"], state["n_clusters"])
        result["users"] = _user_table(state["rng"], state["home"])
    return result


def synthetic(n_users: int, n_items: int, n_interactions: int, *, n_clusters: int = 20, zipf: float = 1.1,
              seed: int = 0, with_features: bool = True, options: LoadOptions = LoadOptions()) -> Dataset:
    """A synthetic `Dataset` (same type as `load_dataset`), cleaned with `options` like a file would be.

    Ids are `u0..` and `i0..`; every item is in the catalogue even if the walk never reached it.
    """
    if options.duplicates not in DUPLICATE_POLICIES:
        raise DataError(f"unknown duplicate policy {options.duplicates!r}", expected=f"one of {DUPLICATE_POLICIES}")
    log = generate(n_users, n_items, n_interactions, n_clusters=n_clusters, zipf=zipf, seed=seed,
                   with_features=with_features)
    digest = hashlib.sha256()
    for key in ("user", "item", "time", "rating"):
        digest.update(log[key].tobytes())
    user_map, item_map = IdMap(_ids("u", n_users), name="user"), IdMap(_ids("i", n_items), name="item")
    rating = log.pop("rating").astype(np.float32)
    inter = Interactions(user_idx=log.pop("user").astype(np.int64), item_idx=log.pop("item").astype(np.int64),
                         weight=rating, user_map=user_map, item_map=item_map,
                         time=log.pop("time").astype(np.float64), time_kind="timestamp", rating=rating)
    report = LoadReport(source=f"synthetic({n_users}, {n_items}, {n_interactions}, seed={seed})",
                        rows_read=len(inter))
    report.use_columns(Columns(user="user_id", item="item_id", rating="rating", time="timestamp"))  # as written
    if log["n_unfilled"]:
        report.notes.append(f"synthetic: {log['n_unfilled']:,} requested interactions could not be filled "
                            f"with unique (user, item) pairs")
    # pairs are unique by construction, so every duplicate policy is a no-op: skip its 20M-row sort
    inter = clean(inter, replace(options, duplicates="keep"), report, catalogue_items=np.arange(n_items))
    for step in report.steps:
        if step["step"] == "duplicates":
            step["policy"] = options.duplicates
    items, users = log.get("items"), log.get("users")
    item_features = user_features = None
    if with_features:
        item_features = FeatureTable.from_frame(items, inter.item_map, id_col="item_id", source="synthetic items",
                                                kinds={"title": "text", "category": "categorical", "tags": "multi"})
        user_features = FeatureTable.from_frame(users, inter.user_map, id_col="user_id", source="synthetic users",
                                                kinds={"age": "numeric", "country": "categorical"})
    return Dataset("synthetic", None, inter, item_features, user_features, items, users, report,
                   data_sha256=digest.hexdigest())


def _ids_column(codes: np.ndarray, ids: pa.Array, compact: bool) -> pa.DictionaryArray:
    """Codes into `ids` as a dictionary column. `compact`: the dictionary holds only the ids these rows
    use, so each Parquet row group carries its own small dictionary (with the whole id list, a row
    group of 131,072 rows over 2.5M users would store, and a reader decode, a 2.5M-entry dictionary)."""
    if not compact:
        return pa.DictionaryArray.from_arrays(pa.array(codes), ids)
    used, inverse = np.unique(codes, return_inverse=True)
    return pa.DictionaryArray.from_arrays(pa.array(inverse.astype(np.int32)), ids.take(pa.array(used)))


def write_synthetic(path: str | Path, n_users: int = DEFAULT_SIZE["n_users"],
                    n_items: int = DEFAULT_SIZE["n_items"], n_interactions: int = DEFAULT_SIZE["n_interactions"],
                    *, n_clusters: int = 20, zipf: float = 1.1, seed: int = 0, with_features: bool = True,
                    parquet: bool | None = None, row_group_size: int = 1 << 20) -> Path:
    """Write a dataset folder (interactions, items.csv, users.csv, PROVENANCE.md); returns `path`.

    Interactions go to Parquet above `PARQUET_ABOVE` rows unless `parquet` says otherwise. Parquet
    is written one generation block at a time (memory bounded by a block, not by the log: 100M
    rows fit on a small machine) in row groups of `row_group_size` rows, the unit a streaming
    reader shards (`towerrec.data.stream`); the rows are those of `generate` with the same arguments.
    """
    n_rows = None
    if parquet is None:
        parquet = n_interactions > PARQUET_ABOVE
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    for stale in ("interactions.csv", "interactions.parquet"):
        (out / stale).unlink(missing_ok=True)
    users, items = pa.array(_ids("u", n_users), pa.string()), pa.array(_ids("i", n_items), pa.string())

    def table_of(user: np.ndarray, item: np.ndarray, time: np.ndarray, rating: np.ndarray,
                 compact: bool = False) -> pa.Table:
        return pa.table({"user_id": _ids_column(user, users, compact), "item_id": _ids_column(item, items, compact),
                         "rating": rating, "timestamp": time})

    if parquet:
        state = _setup(n_users, n_items, n_interactions, n_clusters, zipf, seed)
        n_rows = 0
        schema = table_of(*(np.zeros(0, d) for d in (np.int32, np.int32, np.int64, np.int8))).schema
        partial = out / "interactions.parquet.partial"     # renamed when complete: an interrupted
        with pq.ParquetWriter(partial, schema) as writer:  # run never leaves a truncated log behind
            for user, item, time, rating in _blocks(state, n_users, n_items):
                for at in range(0, len(user), row_group_size):   # one row group, its own dictionaries
                    part = slice(at, at + row_group_size)
                    writer.write_table(table_of(user[part], item[part], time[part], rating[part], compact=True),
                                       row_group_size=row_group_size)
                n_rows += len(user)
        partial.replace(out / "interactions.parquet")
        log = {"params": state["params"]}
        if with_features:
            log["items"] = _item_table(state["rng"], state["cat"], state["n_clusters"])
            log["users"] = _user_table(state["rng"], state["home"])
    else:
        log = generate(n_users, n_items, n_interactions, n_clusters=n_clusters, zipf=zipf, seed=seed,
                       with_features=with_features)
        n_rows = len(log["user"])
        table = table_of(log["user"], log["item"], log["time"], log["rating"])
        table = table.set_column(0, "user_id", table.column(0).cast(pa.string()))
        table = table.set_column(1, "item_id", table.column(1).cast(pa.string()))
        pacsv.write_csv(table, out / "interactions.csv",
                        write_options=pacsv.WriteOptions(quoting_style="none"))
    if with_features:
        log["items"].to_csv(out / "items.csv", index=False)
        log["users"].to_csv(out / "users.csv", index=False)
    params = ", ".join(f"{k}={v}" for k, v in log["params"].items())
    (out / "PROVENANCE.md").write_text(
        f"# synthetic\n\nGenerated by towerrec.data.synthetic.write_synthetic({params}).\n"
        f"{n_rows:,} interactions (unique user-item pairs, timestamps in unix seconds); "
        f"no license needed.\n")
    return out
