"""Beyond-accuracy metrics: diversity, novelty, serendipity, exposure, popularity bias, calibration
and user-group fairness (docs/evaluation.md has every formula, with its source).

Like `towerrec.metrics`, each metric is a pure function of the top-K lists and the catalogue facts
it needs, vectorised over users (a loop over list positions at most, never over users):

    lists [n_users, K] item indices (-1 pads a short list)  ->  per-user values [n_users]

Per-user values (ILD, EmbILD, Novelty, Serendipity, ARP, LongTail, Miscalibration) are averaged
over users and go through the significance tests like the accuracy metrics; a user for whom a value
is undefined (a list with fewer than two items for ILD, no categorised history for calibration) is
NaN and left out of the mean. Catalogue figures (Coverage, Gini) are one number per list set.

`BeyondContext` gathers what the metrics need about one evaluation: training popularity, item
categories (genres), the model's own item space, the user's known items, the exclusions that build
the popularity "primitive" lists of serendipity, and user attributes for the fairness gaps.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import scipy.sparse as sp
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.interactions import Interactions
from towerrec.ranking import TieOrder

#: per-user metrics, in display order (K appended: "ILD@10")
PER_USER = ("ILD", "EmbILD", "Novelty", "Serendipity", "ARP", "LongTail", "Miscalibration")
#: one number per list set
CATALOGUE = ("Gini",)
#: column names that hold item categories, in order of preference (else the smallest-vocabulary one)
CATEGORY_NAMES = ("genres", "genre", "categories", "category")
#: the short head is this share of the catalogue, most popular first (the rest is the long tail)
HEAD_SHARE = 0.2
#: Steck 2018's mixing weight: q~ = (1 - a) q + a p keeps the KL finite when the list misses a genre
CALIBRATION_ALPHA = 0.01
#: a numeric user attribute is cut into this many quantile groups for the fairness gaps
NUMERIC_GROUPS = 4
#: a categorical user attribute with more values than this is not used by default (zip codes, ids)
MAX_GROUPS = 10
# pairwise similarities are computed for this many (pair x dimension) floats at a time (64 MiB)
_BLOCK = 1 << 24


# ---- item spaces ------------------------------------------------------------------------------------
class ItemSpace:
    """Item vectors [n_items, d] (dense or sparse) compared by cosine similarity.

    The vectors are kept as given (no normalised copy of, say, EASE's n_items x n_items weights);
    rows are scaled by their inverse norms when read. A zero vector (an item with no category, or no
    weight) has similarity 0 with everything.
    """

    def __init__(self, vectors: np.ndarray | torch.Tensor | sp.spmatrix, name: str = "") -> None:
        self.name = name
        if sp.issparse(vectors):
            self.vectors = sp.csr_matrix(vectors, dtype=np.float32)
            squares = np.asarray(self.vectors.multiply(self.vectors).sum(axis=1)).ravel()
        else:
            if isinstance(vectors, torch.Tensor):
                vectors = vectors.detach().cpu().float().numpy()   # shares memory with a CPU float32 tensor
            self.vectors = np.asarray(vectors, dtype=np.float32)
            squares = np.einsum("ij,ij->i", self.vectors, self.vectors, dtype=np.float64)
        norms = np.sqrt(squares)
        self.scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)

    @property
    def n_items(self) -> int:
        return int(self.vectors.shape[0])

    @property
    def dim(self) -> int:
        return int(self.vectors.shape[1])

    def rows(self, idx: np.ndarray) -> np.ndarray:
        """Unit vectors [len(idx), d] (dense)."""
        idx = np.asarray(idx, dtype=np.int64)
        r = self.vectors[idx]
        r = r.toarray() if sp.issparse(r) else r
        return r * self.scale[idx, None].astype(np.float32)

    def pairs(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """cos(a[j], b[j]) for index arrays of equal length, in blocks of bounded memory."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        out = np.empty(len(a), dtype=np.float64)
        step = max(1, _BLOCK // max(self.dim, 1))
        for s in range(0, len(a), step):
            x, y = self.vectors[a[s:s + step]], self.vectors[b[s:s + step]]
            if sp.issparse(x):
                out[s:s + step] = np.asarray(x.multiply(y).sum(axis=1)).ravel()
            else:
                out[s:s + step] = np.einsum("ij,ij->i", x, y, dtype=np.float64)
        return out * self.scale[a] * self.scale[b]

    def cross(self, a: np.ndarray, b: np.ndarray) -> np.ndarray:
        """cos of every (a[i], b[j]) pair [len(a), len(b)] (float64): one product of the raw rows,
        scaled afterwards (no normalised copy of the rows)."""
        a, b = np.asarray(a, dtype=np.int64), np.asarray(b, dtype=np.int64)
        x, y = self.vectors[a], self.vectors[b]
        # torch, not numpy, for the dense product: it follows the process's torch threads (one when
        # serving), where a multi-threaded BLAS call on a busy machine waits for a second core
        g = (x @ y.T).toarray() if sp.issparse(x) else (torch.from_numpy(x) @ torch.from_numpy(y).T).numpy()
        return np.asarray(g, dtype=np.float64) * self.scale[a][:, None] * self.scale[b][None, :]

    def gram(self, idx: np.ndarray) -> np.ndarray:
        """cos of every pair of `idx` items [len(idx), len(idx)] (float64)."""
        idx = np.asarray(idx, dtype=np.int64)
        r = self.vectors[idx]
        g = (r @ r.T).toarray() if sp.issparse(r) else r.astype(np.float64) @ r.T.astype(np.float64)
        scale = self.scale[idx]
        return g * scale[:, None] * scale[None, :]

    def block(self, cands: np.ndarray) -> np.ndarray:
        """Similarity among each row's candidates: cands [n, C] -> [n, C, C] (float64)."""
        n, c = cands.shape
        v = torch.from_numpy(self.rows(cands.reshape(-1)).reshape(n, c, -1).astype(np.float64))
        return torch.bmm(v, v.transpose(1, 2)).numpy()   # a batched BLAS product, not an einsum loop


def category_matrix(table: FeatureTable | None, column: str | None = None) -> tuple[sp.csr_matrix | None, str | None,
                                                                                    list[str]]:
    """(binary [n_items, n_categories], column name, category names) from an item feature table.

    `column` names it; by default the first of `CATEGORY_NAMES` the table has, else its multi-valued
    or categorical column with the fewest values. (None, None, []) when there is none.
    """
    if table is None:
        return None, None, []
    usable = {c.name: c for c in table.columns.values() if c.kind in ("multi", "categorical")}
    if column is None:
        lower = {name.lower(): name for name in usable}
        column = next((lower[n] for n in CATEGORY_NAMES if n in lower), None)
        if column is None and usable:
            column = min(usable, key=lambda name: (len(usable[name].vocab), name))
    if column is None:
        return None, None, []
    if column not in usable:
        from towerrec.errors import TowerrecError

        raise TowerrecError(f"item feature {column!r} cannot serve as categories: the item table's multi-valued "
                            f"or categorical columns are {sorted(usable) or 'none'}")
    col = usable[column]
    n = len(table)
    if col.kind == "multi":
        rows = np.repeat(np.arange(n), np.diff(col.offsets))
        codes = col.codes
    else:
        rows, codes = np.arange(n), col.codes
        keep = codes > 0
        rows, codes = rows[keep], codes[keep]
    m = sp.csr_matrix((np.ones(len(rows), dtype=np.float32), (rows, codes - 1)), shape=(n, len(col.vocab)))
    m.data[:] = 1.0   # a category listed twice counts once
    return m, column, list(col.vocab)


# ---- per-user metrics ---------------------------------------------------------------------------------
def _cut(lists: np.ndarray, k: int) -> np.ndarray:
    if k <= 0:
        raise ValueError(f"k must be positive, got {k}")
    return np.asarray(lists, dtype=np.int64)[:, :k]


def _mean_over_list(values: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Row mean of `values` [n, K] over `valid` entries; NaN for a row with none."""
    count = valid.sum(1)
    total = np.where(valid, values, 0.0).sum(1)
    return np.divide(total, count, out=np.full(len(count), np.nan), where=count > 0)


def list_pair_similarity(lists: np.ndarray, space: ItemSpace) -> tuple[np.ndarray, np.ndarray]:
    """(cos [n, P], valid [n, P]) for the P = K(K-1)/2 position pairs (a < b, `np.triu_indices(K, 1)`
    order) of each list [n, K]. The recommended items' Gram matrix is computed once when it is small
    (a few hundred distinct items, as top-K lists usually hold), else each pair is a dot product."""
    top = np.asarray(lists, dtype=np.int64)
    a_pos, b_pos = np.triu_indices(top.shape[1], 1)
    a, b = top[:, a_pos], top[:, b_pos]
    valid = (a >= 0) & (b >= 0)
    sim = np.zeros(a.shape)
    uniq = np.unique(top[top >= 0])
    if len(uniq) ** 2 <= _BLOCK and len(uniq) * space.dim <= 4 * _BLOCK:
        pos = np.full(space.n_items, -1, dtype=np.int64)
        pos[uniq] = np.arange(len(uniq))
        gram = space.gram(uniq)
        sim[valid] = gram[pos[a[valid]], pos[b[valid]]]
    elif not sp.issparse(space.vectors):
        sim[:] = _per_list_gram(top, space, a_pos, b_pos)
        sim[~valid] = 0.0
    else:
        sim[valid] = space.pairs(a[valid], b[valid])
    return sim, valid


def _per_list_gram(top: np.ndarray, space: ItemSpace, a_pos: np.ndarray, b_pos: np.ndarray) -> np.ndarray:
    """cos of the position pairs of each list [n, P], from each list's own K x K Gram matrix
    (`ItemSpace.block`), lists in blocks of bounded memory. For wide dense spaces (EASE's rows are
    n_items wide): gathering both rows of every pair copies each row K - 1 times, and on
    amazon-beauty (12K-wide rows, 22K lists of 20) one evaluation spent over 50 minutes there
    (stopped); each row is read once here."""
    n, k = top.shape
    out = np.empty((n, len(a_pos)))
    step = max(1, _BLOCK // max(k * space.dim, 1))
    safe = np.where(top >= 0, top, 0)
    for s in range(0, n, step):
        out[s:s + step] = space.block(safe[s:s + step])[:, a_pos, b_pos]
    return out


def diversity_from_pairs(sim: np.ndarray, valid: np.ndarray, k: int) -> np.ndarray:
    """ILD@k from `list_pair_similarity` of longer lists: the pairs whose both positions are < k."""
    width = int(round((1 + np.sqrt(1 + 8 * sim.shape[1])) / 2)) if sim.shape[1] else 1
    _, b_pos = np.triu_indices(width, 1)
    return _mean_over_list(1.0 - sim, valid & (b_pos < k)[None, :])


def intra_list_diversity(lists: np.ndarray, space: ItemSpace, k: int) -> np.ndarray:
    """Mean over the list's item pairs of 1 - cos(v_i, v_j) (Ziegler et al. 2005; Smyth & McClave
    2001). NaN for a list with fewer than two items."""
    top = _cut(lists, k)
    if top.shape[1] < 2:
        return np.full(len(top), np.nan)
    return diversity_from_pairs(*list_pair_similarity(top, space), k)


def novelty(lists: np.ndarray, item_users: np.ndarray, n_users: int, k: int) -> np.ndarray:
    """Mean self-information of the list's items, -log2 p(i) with p(i) = |train users with i| / |train
    users| (Zhou et al. 2010; Vargas & Castells 2011); an item no training user has gets p = 1 / |users|."""
    top = _cut(lists, k)
    p = np.maximum(np.asarray(item_users, dtype=np.float64), 1.0) / max(int(n_users), 1)
    info = -np.log2(p)
    return _mean_over_list(info[np.maximum(top, 0)], top >= 0)


def serendipity(lists: np.ndarray, hits: np.ndarray, primitive: np.ndarray, k: int) -> np.ndarray:
    """|{i in L@k : i relevant and i not in PM@k}| / k (Ge, Delgado-Battenfeld & Jannach 2010): hits that
    the primitive popularity list PM (same exclusions) would not have shown. 0 for popularity itself."""
    top = _cut(lists, k)
    pm = _cut(primitive, k)
    in_pm = (top[:, :, None] == pm[:, None, :]).any(2) & (top >= 0)
    return (np.asarray(hits, dtype=bool)[:, :top.shape[1]] & ~in_pm).sum(1) / k


def average_popularity(lists: np.ndarray, item_counts: np.ndarray, k: int) -> np.ndarray:
    """ARP: mean training interaction count of the list's items (Abdollahpouri, Burke & Mobasher 2019)."""
    top = _cut(lists, k)
    return _mean_over_list(np.asarray(item_counts, dtype=np.float64)[np.maximum(top, 0)], top >= 0)


def long_tail_share(lists: np.ndarray, tail: np.ndarray, k: int) -> np.ndarray:
    """Share of the list's items in the long tail (outside the short head of `head_items`)."""
    top = _cut(lists, k)
    return _mean_over_list(np.asarray(tail, dtype=np.float64)[np.maximum(top, 0)], top >= 0)


def head_items(item_counts: np.ndarray, share: float = HEAD_SHARE) -> np.ndarray:
    """[n_items] bool: the round(share * n_items) most-interacted items (ties by lower index)."""
    counts = np.asarray(item_counts)
    n_head = int(round(share * len(counts)))
    head = np.zeros(len(counts), dtype=bool)
    head[np.argsort(-counts, kind="stable")[:n_head]] = True
    return head


def category_distribution(rows: sp.csr_matrix, categories: sp.csr_matrix) -> np.ndarray:
    """p(g | u) [n, G] from item rows [n, n_items] (weights): each item spreads weight 1 uniformly over
    its categories (Steck 2018); rows with no categorised item are all 0."""
    per_item = categories.multiply(1.0 / np.maximum(np.asarray(categories.sum(1)), 1.0)).tocsr()
    mass = np.asarray((rows @ per_item).todense(), dtype=np.float64)
    total = mass.sum(1, keepdims=True)
    return np.divide(mass, total, out=np.zeros_like(mass), where=total > 0)


def kl_calibration(p: np.ndarray, q: np.ndarray, alpha: float = CALIBRATION_ALPHA) -> np.ndarray:
    """KL(p || q~) = sum_g p(g) log(p(g) / q~(g)), q~ = (1 - alpha) q + alpha p; NaN where p is all 0."""
    q_mix = (1 - alpha) * q + alpha * p
    ratio = np.divide(p, q_mix, out=np.ones_like(p), where=p > 0)
    kl = (p * np.log(ratio)).sum(1)
    return np.where(p.sum(1) > 0, kl, np.nan)


def miscalibration(lists: np.ndarray, history: sp.csr_matrix, categories: sp.csr_matrix, k: int,
                   alpha: float = CALIBRATION_ALPHA) -> np.ndarray:
    """Steck 2018's C_KL: KL between the category mix of the user's history (`history` [n, n_items],
    row u for lists[u]) and of the top-k list (items weighted equally). Lower is better."""
    top = _cut(lists, k)
    n = len(top)
    valid = top >= 0
    rows = sp.csr_matrix((np.ones(int(valid.sum()), dtype=np.float32),
                          (np.repeat(np.arange(n), valid.sum(1)), top[valid])), shape=(n, categories.shape[0]))
    p = category_distribution(history, categories)
    q = category_distribution(rows, categories)
    return kl_calibration(p, q, alpha)


# ---- catalogue-level figures ----------------------------------------------------------------------------
def exposure(lists: np.ndarray, n_items: int, k: int) -> np.ndarray:
    """[n_items] number of top-k lists each item appears in."""
    top = _cut(lists, k)
    return np.bincount(top[top >= 0], minlength=n_items).astype(np.float64)


def gini(lists: np.ndarray, n_items: int, k: int) -> float:
    """Gini index of exposure over the whole catalogue: sum_j (2j - n - 1) e_(j) / ((n - 1) sum e), e
    sorted ascending (Kaminskas & Bridge 2016). 0: every item recommended equally often; 1: one item
    takes every slot."""
    e = np.sort(exposure(lists, n_items, k))
    n, total = len(e), e.sum()
    if n < 2 or total == 0:
        return 0.0
    j = np.arange(1, n + 1)
    return float(((2 * j - n - 1) * e).sum() / ((n - 1) * total))


# ---- user-group fairness ----------------------------------------------------------------------------------
def user_groups(table: FeatureTable | None, attributes: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """{attribute: group label per user index (object, None = unknown)} from a user feature table.

    Categorical attributes are their values; numeric ones are cut into `NUMERIC_GROUPS` quantile groups
    of the users' raw values ("25-30"). By default every categorical attribute with 2..`MAX_GROUPS`
    values and every numeric one (ml-100k: gender and age; not occupation's 21 values or zip codes).
    """
    if table is None:
        return {}
    out = {}
    names = list(attributes) if attributes is not None else list(table.columns)
    for name in names:
        if name not in table.columns:
            from towerrec.errors import TowerrecError

            raise TowerrecError(f"fairness: no user attribute {name!r}; the user table has "
                                f"{', '.join(table.columns) or 'no usable column'}")
        col = table.columns[name]
        if col.kind == "categorical" and (attributes is not None or 2 <= len(col.vocab) <= MAX_GROUPS):
            labels = np.asarray([None] + list(col.vocab), dtype=object)[col.codes]
        elif col.kind == "numeric":
            raw = pd.Series(col.values.astype(np.float64) * col.std + col.mean)
            raw[table_missing(table, len(raw))] = np.nan
            labels = _quantile_labels(raw)
        elif attributes is not None:
            from towerrec.errors import TowerrecError

            raise TowerrecError(f"fairness: user attribute {name!r} is {col.kind}; groups need a categorical or "
                                "numeric attribute")
        else:
            continue
        if len({x for x in labels if x is not None}) >= 2:
            out[name] = labels
    return out


def table_missing(table: FeatureTable, n: int) -> np.ndarray:
    """[n] bool: ids without a feature row (their numeric values are defaults, not data)."""
    # a FeatureTable keeps no per-row flag; a row with every column at its default is taken for a
    # missing one (numeric defaults are the mean, so a user at the mean of every numeric column with
    # no category would be misread: an edge case on real tables)
    missing = np.ones(n, dtype=bool)
    for c in table.columns.values():
        if c.kind == "categorical":
            missing &= c.codes == 0
        elif c.kind == "multi":
            missing &= np.diff(c.offsets) == 0
        elif c.kind == "numeric":
            missing &= c.values == 0
        elif c.kind == "text":
            missing &= pd.Series(c.texts).fillna("").eq("").to_numpy()
    return missing


def _quantile_labels(raw: pd.Series) -> np.ndarray:
    bins = pd.qcut(raw, NUMERIC_GROUPS, duplicates="drop")
    labels = np.full(len(raw), None, dtype=object)
    for interval in bins.cat.categories:
        lo = raw[bins == interval].min()
        hi = raw[bins == interval].max()
        labels[(bins == interval).to_numpy()] = f"{lo:g}-{hi:g}"
    return labels


def group_gaps(values: Mapping[str, np.ndarray], labels: np.ndarray) -> dict:
    """{"groups": {label: {"users": n, metric: mean}}, "gap": {metric: max - min group mean}} over the
    users with a label (NaN values left out of each mean)."""
    labels = np.asarray(labels, dtype=object)
    known = np.asarray([x is not None for x in labels])
    groups: dict[str, dict] = {}
    for label in sorted({x for x in labels[known]}, key=str):
        mask = labels == label
        groups[str(label)] = {"users": int(mask.sum()),
                              **{m: _nanmean(v[mask]) for m, v in values.items()}}
    gap = {}
    for m in values:
        means = [g[m] for g in groups.values() if g[m] is not None]
        gap[m] = float(max(means) - min(means)) if len(means) >= 2 else None
    return {"groups": groups, "gap": gap}


def _nanmean(v: np.ndarray) -> float | None:
    v = np.asarray(v, dtype=np.float64)
    v = v[~np.isnan(v)]
    return float(v.mean()) if len(v) else None


# ---- one evaluation's context -------------------------------------------------------------------------------
@dataclass(frozen=True)
class BeyondOptions:
    """Which beyond-accuracy figures an evaluation computes (`evaluate_split(beyond=...)`)."""

    k: tuple[int, ...] | None = None          # list lengths (default: every evaluated K)
    categories: str | None = None             # the item feature holding categories (default: genres, ...)
    fairness: tuple[str, ...] | None = None   # user attributes for group gaps (default: see `user_groups`)


@dataclass
class ItemStats:
    """Catalogue facts from the training part: popularity, long tail, categories."""

    item_users: np.ndarray           # [n_items] training users who have the item
    item_counts: np.ndarray          # [n_items] training interactions (rows) per item
    n_users: int                     # training users with at least one interaction
    tail: np.ndarray                 # [n_items] bool: outside the short head
    categories: sp.csr_matrix | None = None   # [n_items, G] binary
    category_column: str | None = None
    category_names: list[str] = field(default_factory=list)

    @classmethod
    def from_train(cls, train: Interactions, item_features: FeatureTable | None = None,
                   category_column: str | None = None) -> "ItemStats":
        return cls.from_seen(train.to_csr(), train.item_counts(), item_features, category_column)

    @classmethod
    def from_seen(cls, seen: sp.csr_matrix, item_counts: np.ndarray | None = None,
                  item_features: FeatureTable | None = None, category_column: str | None = None) -> "ItemStats":
        """From a binary users x items matrix of training pairs (and the row counts per item, when
        duplicates were kept; default: the pairs)."""
        seen = sp.csr_matrix(seen)
        item_users = np.bincount(seen.indices, minlength=seen.shape[1]).astype(np.int64)
        counts = np.asarray(item_counts if item_counts is not None else item_users, dtype=np.int64)
        cats, column, names = category_matrix(item_features, category_column)
        return cls(item_users, counts, int((np.diff(seen.indptr) > 0).sum()), ~head_items(counts), cats, column,
                   names)

    def feature_space(self) -> ItemSpace | None:
        return ItemSpace(self.categories, self.category_column or "") if self.categories is not None else None


@dataclass
class BeyondContext:
    """What the beyond-accuracy metrics of one evaluation need (user rows index the truth's user map).

    `history` [n_users, n_items]: the items the model knew for each user (train, plus valid for the
    test part): the calibration profile. `exclude` and `ties`: the evaluation's own exclusions and tie
    order, which build the primitive popularity lists of serendipity. `space`: the model's own item
    space (None: EmbILD not reported). `groups`: user attribute -> label per user index.
    """

    stats: ItemStats
    history: sp.csr_matrix | None = None
    exclude: sp.csr_matrix | None = None
    ties: TieOrder | None = None
    space: ItemSpace | None = None
    groups: dict[str, np.ndarray] = field(default_factory=dict)
    ks: tuple[int, ...] | None = None      # K of the beyond metrics (default: every evaluated K)

    def primitive(self, users: np.ndarray, k: int) -> np.ndarray:
        """[n, k] the popularity ranking of each user with the evaluation's exclusions (PM of serendipity):
        training counts descending, ties by the evaluation's tie order (what `Popularity` would list)."""
        counts = self.stats.item_counts
        n_items = len(counts)
        keys = (self.ties or TieOrder.seeded(n_items, 0)).keys
        order = np.lexsort((keys, -counts))
        users = np.asarray(users, dtype=np.int64)
        blocked = None
        width = min(k, n_items)
        if self.exclude is not None:
            rows = self.exclude[users]
            width = min(k + int(np.diff(rows.indptr).max(initial=0)), n_items)   # k free items are in this prefix
            blocked = rows[:, order[:width]].toarray() > 0
        prefix = order[:width]
        free = ~blocked if blocked is not None else np.ones((len(users), width), dtype=bool)
        position = np.cumsum(free, axis=1)
        r, c = np.nonzero(free & (position <= k))
        out = np.full((len(users), k), -1, dtype=np.int64)
        out[r, position[r, c] - 1] = prefix[c]
        return out


def beyond_metrics(users: np.ndarray, lists: np.ndarray, hits: np.ndarray, ks: Sequence[int],
                   ctx: BeyondContext) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """(per-user values {"ILD@10": [n]}, catalogue figures {"Gini@10": x}) of `lists` [n, K] for `users`."""
    per_user: dict[str, np.ndarray] = {}
    catalogue: dict[str, float] = {}
    stats, n_items = ctx.stats, len(ctx.stats.item_counts)
    feature_space = stats.feature_space()
    k_max = max(ks)
    primitive = ctx.primitive(users, k_max)
    history = ctx.history[users] if ctx.history is not None else None
    top = lists[:, :k_max]
    pairs = {name: list_pair_similarity(top, space) for name, space in (("ILD", feature_space), ("EmbILD", ctx.space))
             if space is not None and top.shape[1] >= 2}
    for k in ks:
        for name, (sim, valid) in pairs.items():
            per_user[f"{name}@{k}"] = diversity_from_pairs(sim, valid, k)
        per_user[f"Novelty@{k}"] = novelty(lists, stats.item_users, stats.n_users, k)
        per_user[f"Serendipity@{k}"] = serendipity(lists, hits, primitive, k)
        per_user[f"ARP@{k}"] = average_popularity(lists, stats.item_counts, k)
        per_user[f"LongTail@{k}"] = long_tail_share(lists, stats.tail, k)
        if stats.categories is not None and history is not None:
            per_user[f"Miscalibration@{k}"] = miscalibration(lists, history, stats.categories, k)
        catalogue[f"Gini@{k}"] = gini(lists, n_items, k)
    return per_user, catalogue


__all__ = ["BeyondContext", "BeyondOptions", "ItemSpace", "ItemStats", "average_popularity", "beyond_metrics",
           "category_matrix", "gini", "group_gaps", "intra_list_diversity", "kl_calibration", "long_tail_share",
           "miscalibration", "novelty", "serendipity", "user_groups"]
