"""Training from a streamed Parquet log: the model learns, saves, loads and serves like any other;
models that need per-user histories refuse in one line; ranks with uneven shards never hang."""
from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_ddp import _run
from towerrec.data.stream import StreamOptions
from towerrec.data.stream_log import scan_log
from towerrec.errors import TowerrecError
from towerrec.evaluation import evaluate_holdout
from towerrec.models import MODELS, load_model
from towerrec.models.base import FitOptions
from towerrec.models.pop import Popularity
from towerrec.models.two_tower import TwoTower

OPTIONS = FitOptions(seed=0, threads=1, progress=False, device="cpu")


def planted_log(folder: Path, n_users: int = 600, n_items: int = 120, per_user: int = 12,
                row_group: int = 500, seed: int = 0) -> Path:
    """Users of 4 taste blocks, each reading items of its block; Parquet in row groups."""
    rng = np.random.default_rng(seed)
    block = np.arange(n_users) % 4
    items = np.concatenate([rng.choice(n_items // 4, per_user, replace=False) + b * (n_items // 4) for b in block])
    frame = pd.DataFrame({"user_id": np.char.add("u", np.repeat(np.arange(n_users), per_user).astype(str)),
                          "item_id": np.char.add("i", items.astype(str)),
                          "timestamp": np.tile(np.arange(per_user), n_users)})
    folder.mkdir(parents=True, exist_ok=True)
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), folder / "log.parquet", row_group_size=row_group)
    return folder


@pytest.fixture(scope="module")
def planted(tmp_path_factory) -> Path:
    return planted_log(tmp_path_factory.mktemp("planted"))


def cf(**overrides) -> TwoTower:
    return TwoTower(preset="cf", **{"epochs": 4, "batch_size": 256, "embedding_dim": 16, "id_dim": 16,
                                    "learning_rate": 2e-2, **overrides})


def test_streamed_cf_learns_saves_loads_and_serves(planted, tmp_path):
    log = scan_log(str(planted), StreamOptions(holdout_users=100, shuffle_buffer=1_000, read_rows=200))
    model = cf().fit_stream(log, options=OPTIONS)
    assert [h["steps"] for h in model.history_] == [log.n_train_rows // 256] * 4
    # the first step (reader start + buffer fill) is timed apart, for steady-state throughput
    assert all(h["first_step_samples"] == 256 and 0 < h["first_step_seconds"] < h["seconds"] for h in model.history_)
    results = evaluate_holdout(model, log.holdout, k=(10,))
    popular = Popularity().fit_stream(log, options=OPTIONS)
    assert np.array_equal(popular.counts_, log.item_counts)
    baseline = evaluate_holdout(popular, log.holdout, k=(10,))["test"].summary["NDCG@10"]
    assert results["test"].summary["NDCG@10"] > 2 * baseline, (results["test"].summary, baseline)
    # every training row is remembered (keep_seen) and masked when serving
    assert model.seen_.nnz == log.n_train_rows
    recs = model.recommend(["u7", "u8"], k=20)
    assert recs.fallback == [None, None]
    for user, items in zip(["u7", "u8"], recs.item_ids):
        seen = set(model.item_map_.ids[model.seen_items(model.user_map_.index([user])[0])])
        assert seen and not seen & set(items)
    path = model.save(tmp_path / "cf")
    loaded = load_model(path)
    again = loaded.recommend(["u7", "u8"], k=20)
    assert np.array_equal(again.item_ids, recs.item_ids) and np.allclose(again.scores, recs.scores)
    assert np.allclose(loaded.score(["u7"], ["i3"]), model.score(["u7"], ["i3"]))


def test_without_keep_seen_users_are_still_known_after_loading(planted, tmp_path):
    log = scan_log(str(planted), StreamOptions(holdout_users=50, keep_seen=False))
    model = cf(epochs=1).fit_stream(log, options=OPTIONS)
    assert model.seen_.nnz < log.n_train_rows / 2                   # only the sampled users' items
    loaded = load_model(model.save(tmp_path / "cf"))
    assert loaded.recommend(["u1", "u599"], k=5).fallback == [None, None]     # scored by the model, not popularity
    assert loaded.n_interactions == log.n_train_rows
    assert loaded.recommend(["nobody"], k=5).fallback == ["popularity"]


@pytest.mark.parametrize("name", ["hybrid", "content", "sasrec", "als", "ease"])
def test_models_needing_histories_or_the_whole_matrix_refuse_in_one_line(planted, name):
    model = MODELS[name]()
    with pytest.raises(TowerrecError) as err:
        model.fit_stream(str(planted), options=OPTIONS)
    assert "\n" not in str(err.value) and "cannot train from a stream" in str(err.value)
    why = "whole interaction matrix" if name in ("als", "ease") else "history"
    assert why in str(err.value)


def test_history_free_hybrid_streams(planted):
    model = TwoTower(preset="hybrid", history="none", text="none", epochs=1, batch_size=256).fit_stream(
        str(planted), options=OPTIONS, stream=StreamOptions(holdout_users=20))
    assert len(model.history_) == 1 and model.recommend(["u3"], k=3).fallback == [None]


WORKER = textwrap.dedent('''
    import datetime, json, os, sys
    import torch.distributed as dist
    from towerrec.data.stream import StreamOptions
    from towerrec.data.stream_log import scan_log
    from towerrec.models.base import FitOptions
    from towerrec.models.two_tower import TwoTower

    # a hang fails the test in 30 s instead of blocking CI
    dist.init_process_group("gloo", timeout=datetime.timedelta(seconds=30))
    rank = dist.get_rank()
    log = scan_log(sys.argv[1], StreamOptions(holdout_users=30, workers=int(sys.argv[3]), shuffle_buffer=300))
    model = TwoTower(preset="cf", epochs=2, batch_size=64, embedding_dim=8, id_dim=8).fit_stream(
        log, options=FitOptions(seed=0, threads=1, progress=False, device="cpu"))
    reader = log.reader(32, rank=rank, world=2)
    local = []
    for epoch in range(2):
        reader.set_epoch(epoch)
        local.append(reader.steps())
    with open(os.path.join(sys.argv[2], f"rank{rank}.json"), "w") as f:
        json.dump({"steps": [h["steps"] for h in model.history_], "local": local}, f)
    dist.destroy_process_group()
''')


@pytest.mark.parametrize("workers", [0, 2])
def test_ranks_with_uneven_shards_take_equal_steps_and_finish(tmp_path, workers):
    # 4 row groups of 3,000 / 300 / 300 / 300 rows: whichever rank draws the big one holds ~5x the other's rows
    data = tmp_path / "log"
    data.mkdir()
    rng = np.random.default_rng(0)
    for f, rows in enumerate([3_000, 300, 300, 300] if workers == 0 else [3_000, 300, 300, 300, 200, 200, 200, 200]):
        frame = pd.DataFrame({"user_id": np.char.add("u", rng.integers(0, 300, rows).astype(str)),
                              "item_id": np.char.add("i", rng.integers(0, 80, rows).astype(str))})
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), data / f"part-{f}.parquet")
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    _run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nnodes", "1", "--nproc_per_node", "2",
          str(script), str(data), str(tmp_path), str(workers)], tmp_path)
    r0, r1 = (json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1))
    assert r0["steps"] == r1["steps"]                                   # the same number of steps on both ranks ...
    assert r0["local"] != r1["local"]                                   # ... though their shards differ
    assert r0["steps"] == [min(a, b) for a, b in zip(r0["local"], r1["local"])]
