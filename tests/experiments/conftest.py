"""A small dataset folder (clustered tastes, timestamps, titles) and an experiment file over it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

EXPERIMENT = """
name = "tiny"
seeds = [0, 1]

[data]
source = "data"            # relative to this file
duplicates = "first"

[split]
method = "random"
ratios = [0.7, 0.2, 0.1]   # valid and test differ in size, so a test can tell them apart

[evaluation]
metrics = ["NDCG", "Recall", "HitRate"]
k = [5, 10]
curve_k = [1, 5, 10, 20]
primary = "NDCG@10"

[models.pop]
model = "pop"

[models.knn]
model = "itemknn"
neighbours = 20

[models.ease]
model = "ease"
l2 = 50.0

[models.als]
model = "als"
factors = 8
iterations = 3

[tune.ease]
l2 = {low = 1.0, high = 500.0, log = true}
"""


def write_dataset(folder: Path, n_users: int = 150, n_items: int = 80, per_user: int = 14, seed: int = 0) -> None:
    """Users in 4 taste clusters pick mostly from their cluster's items, plus a popular head."""
    rng = np.random.default_rng(seed)
    cluster = rng.integers(0, 4, n_users)
    item_cluster = np.arange(n_items) % 4
    rows = []
    for u in range(n_users):
        own = np.flatnonzero(item_cluster == cluster[u])
        pool = np.concatenate([own, own, np.arange(10)])
        items = rng.permutation(np.unique(rng.choice(pool, per_user)))
        rows += [(f"u{u}", f"i{i}", int(rng.integers(1, 6)), 1_000_000 + 60 * t + u) for t, i in enumerate(items)]
    folder.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"]).to_csv(folder / "interactions.csv",
                                                                                     index=False)
    pd.DataFrame({"item_id": [f"i{i}" for i in range(n_items)],
                  "title": [f"Film {i} (cluster {i % 4})" for i in range(n_items)]}).to_csv(folder / "items.csv",
                                                                                             index=False)


@pytest.fixture(scope="session")
def experiment_file(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("experiment")
    write_dataset(root / "data")
    path = root / "tiny.toml"
    path.write_text(EXPERIMENT)
    return path
