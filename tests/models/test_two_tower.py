"""TwoTower: what is special to it (presets, cold start, add_items, features, artifacts)."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.data.sequences import Sequences
from towerrec.errors import NotFittedError, TowerrecError
from towerrec.evaluation import evaluate
from towerrec.models import MODELS
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import PRESETS, TwoTower, TwoTowerConfig
from towerrec.models.two_tower.batches import PairBatches, histories
from towerrec.splits import cold_item_split, random_split

N_GENRES, ITEMS_PER_GENRE, N_USERS = 5, 20, 80
WORDS = ["space laser robot", "love wedding kiss", "ghost blood scream", "horse sheriff desert", "cartoon puppy song"]
FAST = dict(epochs=8, batch_size=256, embedding_dim=16, id_dim=16, feature_dim=8, text_dim=8, learning_rate=1e-2,
            patience=8, temperature=0.1, hidden=(), dropout=0.0)
OPTIONS = FitOptions(seed=0, threads=1, progress=False)


def _genre_data(seed: int = 0) -> tuple[Interactions, pd.DataFrame, pd.DataFrame]:
    """Users like one genre; items carry their genre as a category, a tag bag and words in a title."""
    rng = np.random.default_rng(seed)
    n_items = N_GENRES * ITEMS_PER_GENRE
    rows = []
    for u in range(N_USERS):
        g = u % N_GENRES
        own = g * ITEMS_PER_GENRE + rng.choice(ITEMS_PER_GENRE, 12, replace=False)
        rows += [(f"u{u}", f"i{i}") for i in own]
        rows.append((f"u{u}", f"i{rng.integers(n_items)}"))
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).drop_duplicates()
    items = pd.DataFrame({
        "item_id": [f"i{i}" for i in range(n_items)],
        "genre": [f"g{i // ITEMS_PER_GENRE}" for i in range(n_items)],
        "tags": [f"t{i // ITEMS_PER_GENRE}|x{i % 3}" for i in range(n_items)],
        "title": [f"{WORDS[i // ITEMS_PER_GENRE]} number {i}" for i in range(n_items)],
    })
    users = pd.DataFrame({"user_id": [f"u{u}" for u in range(N_USERS)],
                          "age": rng.integers(18, 60, N_USERS).astype(float),
                          "region": [f"r{u % 3}" for u in range(N_USERS)]})
    # the item map is the whole catalogue (items nobody interacted with included)
    inter = Interactions.from_frame(frame, item_map=IdMap(items["item_id"].to_numpy(), name="item"))
    return inter, users, items


def _tables(inter: Interactions, users: pd.DataFrame, items: pd.DataFrame) -> tuple[FeatureTable, FeatureTable]:
    return (FeatureTable.from_frame(users, inter.user_map, id_col="user_id"),
            FeatureTable.from_frame(items, inter.item_map, id_col="item_id", kinds={"title": "text"}))


@pytest.fixture(autouse=True)
def fake_text(monkeypatch, tmp_path):
    """A deterministic bag-of-words 'sentence model' instead of MiniLM (the real one is tested in
    tests/towers/test_text.py and in the slow ml-100k test)."""
    import towerrec.towers.content as tt
    from towerrec.towers.text import embed_texts

    vocab = sorted({w for ws in WORDS for w in ws.split()})

    def encode(texts):
        out = np.zeros((len(texts), len(vocab)), dtype=np.float32)
        for r, t in enumerate(texts):
            for w in t.split():
                if w in vocab:
                    out[r, vocab.index(w)] = 1.0
        return out

    monkeypatch.setenv("TOWERREC_CACHE", str(tmp_path))
    monkeypatch.setattr(tt, "embed_texts", lambda texts, model="": embed_texts(texts, "fake-bow", encode_fn=encode))


def _fit(preset: str, inter, uf, itf, valid=None, **kw) -> TwoTower:
    return TwoTower(TwoTowerConfig.for_preset(preset, **{**FAST, **kw})).fit(
        inter, user_features=uf, item_features=itf, valid=valid, options=OPTIONS)


def test_registry_and_presets():
    assert isinstance(MODELS["two-tower"](), TwoTower)
    for name in ("cf", "content", "hybrid"):
        model = MODELS[name](epochs=2)
        assert model.config.preset == name and model.config.train.epochs == 2
    defaults = TwoTowerConfig()
    assert all(getattr(defaults, k) == v for k, v in PRESETS["hybrid"].items())   # two-tower == hybrid
    with pytest.raises(TowerrecError):
        TwoTowerConfig.for_preset("deep")
    assert TwoTowerConfig.for_preset("cf").history == "none"
    assert not TwoTowerConfig.for_preset("content").item_ids


def test_not_fitted_and_misaligned_features(data):
    inter, users, items, uf, itf = data
    with pytest.raises(NotFittedError):
        TwoTower().recommend(["u1"])
    other = FeatureTable.from_frame(items.iloc[:10], inter.item_map.extend(["zz"]), id_col="item_id")
    with pytest.raises(TowerrecError, match="aligned"):
        _fit("hybrid", inter, uf, other)
    with pytest.raises(TowerrecError, match="item tower has no input"):
        _fit("content", inter, None, None)


@pytest.mark.parametrize("preset,kw", [("cf", {}), ("hybrid", {"text": "cnn"}),
                                       ("hybrid", {"loss": "full_softmax", "history": "attention"}),
                                       ("content", {"loss": "bpr", "negatives": 32, "scorer": "dot"}),
                                       ("hybrid", {"loss": "bce", "negatives": 16, "negative_sampler": "popularity",
                                                   "hidden": (32,), "norm": "layer", "learn_temperature": True}),
                                       ("hybrid", {"scorer": "mlp", "batch_size": 64, "epochs": 2}),
                                       ("hybrid", {"sampling": "users", "users_per_batch": 16, "holdout": 0.3,
                                                   "loss": "full_softmax", "epochs": 15}),
                                       ("content", {"sampling": "users", "users_per_batch": 16, "negatives": 16,
                                                    "epochs": 15}),
                                       ("cf", {"embedding_optimizer": "dense"}),
                                       ("hybrid", {"embedding_optimizer": "rowwise_adagrad",
                                                   "embedding_learning_rate": 0.1, "text": "none"})])
def test_learns_the_genres(data, preset, kw):
    """Every preset and loss beats popularity-free chance by far on a block-structured log."""
    inter, users, items, uf, itf = data
    split = random_split(inter, seed=0)
    model = _fit(preset, split.train, uf, itf, valid=split.valid, **kw)
    assert len(model.history_) >= 1 and {"loss", "seconds"} <= set(model.history_[0])
    recs = model.recommend(["u0", "u7"], k=5)
    genre = lambda i: int(str(i)[1:]) // ITEMS_PER_GENRE                       # noqa: E731
    share = np.mean([genre(i) == 0 for i in recs.item_ids[0]] + [genre(i) == 2 for i in recs.item_ids[1]])
    assert share >= 0.8, (preset, kw, recs.item_ids)
    ndcg = evaluate(model, split).summary["NDCG@10"]
    assert ndcg > 0.25, (preset, kw, ndcg)


def test_user_sampling_needs_a_history_and_a_softmax(data):
    inter, users, items, uf, itf = data
    for kw in ({"history": "none"}, {"loss": "bpr"}, {"holdout": 1.0}, {"sampling": "rows"}):
        with pytest.raises(TowerrecError, match="sampling"):
            _fit("hybrid", inter, uf, itf, **{"sampling": "users", **kw})


def test_same_seed_same_scores_and_save_load(data, tmp_path):
    inter, users, items, uf, itf = data
    a = _fit("hybrid", inter, uf, itf, epochs=2)
    b = _fit("hybrid", inter, uf, itf, epochs=2)
    assert torch.allclose(a.score_users(np.arange(5)), b.score_users(np.arange(5)))
    a.save(tmp_path / "m")
    loaded = TwoTower.load(tmp_path / "m")
    assert torch.allclose(a.score_users(np.arange(10)), loaded.score_users(np.arange(10)), atol=1e-6)
    hist = ["i0", "i1", "i2"]
    assert np.array_equal(a.recommend(history=hist).item_idx, loaded.recommend(history=hist).item_idx)
    assert loaded.history_ == a.history_
    assert not list((tmp_path / "m").glob("*.pkl")) and not list((tmp_path / "m").glob("*.pt"))
    # a loaded model can still embed new items (text comes from the cache, features from the saved vocab)
    loaded.add_items(pd.DataFrame({"item_id": ["new"], "genre": ["g1"], "tags": ["t1"], "title": [WORDS[1]]}))
    assert loaded.n_items == a.n_items + 1


def test_cold_items_content_and_hybrid_far_above_random(data):
    """Items held out of training entirely are ranked by content far above chance."""
    inter, users, items, uf, itf = data
    split = cold_item_split(inter, 0.2, seed=0)
    train_items = np.flatnonzero(split.train.item_counts())
    cold = np.flatnonzero(split.test.item_counts())
    assert not np.isin(cold, train_items).any()
    k = 10
    # chance: k random picks among the items a user can still be shown
    n_candidates = inter.n_items - np.diff((split.train.to_csr() + split.valid.to_csr()).indptr)
    users = split.test.active_users()
    n_rel = np.diff(split.test.to_csr().indptr)[users]
    random_recall = np.mean(np.minimum(k / n_candidates[users], 1.0))
    for preset in ("content", "hybrid"):
        model = _fit(preset, split.train, uf, itf, epochs=10)
        recall = evaluate(model, split, k=(k,)).summary[f"Recall@{k}"]
        assert recall > 3 * random_recall, (preset, recall, random_recall)
        assert n_rel.min() >= 1


def test_new_users_from_history_and_features(data):
    inter, users, items, uf, itf = data
    model = _fit("hybrid", inter, uf, itf)
    history = [f"i{i}" for i in range(3 * ITEMS_PER_GENRE, 3 * ITEMS_PER_GENRE + 6)]   # genre 3
    recs = model.recommend(history=history, k=5)
    assert recs.fallback == ["history"]
    assert all(int(i[1:]) // ITEMS_PER_GENRE == 3 for i in recs.item_ids[0])
    assert not set(recs.item_ids[0]) & set(history)                                # seen excluded
    frame = pd.DataFrame({"user_id": ["new1", "new2"], "age": [30.0, None], "region": ["r1", "unknown"]})
    by_features = model.recommend_features(frame, k=5, histories=[history, []])
    assert by_features.item_idx.shape == (2, 5) and by_features.fallback == ["features", "features"]
    assert all(int(i[1:]) // ITEMS_PER_GENRE == 3 for i in by_features.item_ids[0])
    # cf has no history encoder: documented NotImplementedError, recommend falls back to popularity
    cf = _fit("cf", inter, uf, itf, epochs=1)
    with pytest.raises(NotImplementedError):
        cf.score_histories(Sequences.from_lists([[0, 1], [2]]))
    assert cf.recommend(history=history).fallback == ["popularity"]
    with pytest.raises(NotImplementedError):
        cf.add_items(items.iloc[:1].assign(item_id="x"))


def test_add_items_embeds_from_content(data):
    inter, users, items, uf, itf = data
    model = _fit("content", inter, uf, itf)
    before = model.recommend(["u4"], k=3).item_ids.copy()
    new = pd.DataFrame({"item_id": ["n1", "n2"], "genre": ["g4", "g0"], "tags": ["t4", "t0|x1"],
                        "title": [f"{WORDS[4]} new", f"{WORDS[0]} new"]})
    model.add_items(new)
    assert model.n_items == inter.n_items + 2 and model.item_embeddings_.shape[0] == model.n_items
    twins = model.similar_items(["n1"], k=5).item_ids[0]
    assert all(int(i[1:]) // ITEMS_PER_GENRE == 4 for i in twins)               # a genre-4 item's neighbours
    ranks = model.recommend(["u4"], k=model.n_items).item_ids[0].tolist()        # u4 likes genre 4
    assert ranks.index("n1") < ranks.index("n2")
    with pytest.raises(TowerrecError, match="already"):
        model.add_items(new)
    assert before.shape == (1, 3)


@pytest.mark.parametrize("mode", ["mean", "norm"])
def test_history_map_after_pooling_equals_mapping_every_history_item(data, mode):
    """The history tower's affine map runs on the pooled rows (pool(W r + b) = W pool(r) + mass b):
    the same pooled vectors and gradients as mapping each history item and pooling after, for
    training batches (the target left out; a one-item user pools nothing) and explicit histories."""
    inter, users, items, uf, itf = data
    model = TwoTower(TwoTowerConfig.for_preset("hybrid", text="none", history=mode,
                                               sampling="pairs" if mode == "mean" else "users", **FAST))
    model.fit(inter, user_features=uf, item_features=itf, options=OPTIONS)
    module = model.module_.eval()
    tower = module.history_tower
    linear = tower.affine()
    assert linear is not None and linear.bias is not None      # the fast path is the one tested
    explicit = histories(model.seen_, inter.user_idx.astype(np.int64), exclude=inter.item_idx)
    explicit["weights"][::3] = 0.0                                  # dropped entries, some rows emptied
    cases = [explicit]
    if mode == "mean":
        cases.append(PairBatches(inter, model.seen_, model.config)(np.arange(len(inter)),
                                                                   np.random.default_rng(0))["history"])
    for h in cases:
        def reference() -> torch.Tensor:
            reps = tower(module._item_input(tower, h["items"]))
            if "row_user" in h:
                return module.pool.mean_leaving_out(reps, h["inverse"], h["offsets"], h["row_user"], h["left_out"])
            return module.pool(reps, h["inverse"], h["offsets"], h["weights"])
        want, got = reference(), module._pooled_history(h)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-4)
        params = [linear.weight, linear.bias, tower.inputs["id"].embedding.weight]
        g_want = torch.autograd.grad(want.square().sum(), params)
        g_got = torch.autograd.grad(got.square().sum(), params)
        for a, b in zip(g_got, g_want):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4)


def test_training_history_target_is_left_out(data):
    """The leak guard: in a training batch a row's history never holds its own target item.

    Batches pool each distinct user's history once and subtract the row's target; the user
    vectors must equal those from per-row histories with the target excluded explicitly."""
    inter, users, items, uf, itf = data
    model = TwoTower(TwoTowerConfig.for_preset("hybrid", **FAST))
    model.fit(inter, user_features=uf, item_features=itf, options=OPTIONS)
    batch = PairBatches(inter, model.seen_, model.config)(np.arange(len(inter)), np.random.default_rng(0))
    h = batch["history"]
    assert len(h["offsets"]) == len(np.unique(inter.user_idx)) < len(inter)       # one history per user
    assert np.array_equal(h["items"][h["left_out"]].numpy(), inter.item_idx)      # the row's own target
    explicit = histories(model.seen_, inter.user_idx.astype(np.int64), exclude=inter.item_idx)
    flat = explicit["items"][explicit["inverse"]].numpy()
    row = np.repeat(np.arange(len(inter)), np.diff(np.append(explicit["offsets"].numpy(), len(flat))))
    kept = explicit["weights"].numpy() > 0
    assert not np.any(kept & (flat == inter.item_idx[row]))
    module = model.module_.eval()
    with torch.no_grad():
        shared = module.user_vectors(batch["user_idx"], h)
        per_row = module.user_vectors(batch["user_idx"], explicit)
    torch.testing.assert_close(shared, per_row, atol=1e-5, rtol=1e-4)


def test_distinct_candidate_loss_equals_scoring_every_occurrence(data):
    """The in-batch sampled softmax embeds each distinct (item, id dropped) candidate once. With
    the same per-occurrence id-dropout draw, loss and gradients equal those of embedding every
    occurrence and masking the row's other copies of its item (the textbook form)."""
    inter, users, items, uf, itf = data
    model = TwoTower(TwoTowerConfig.for_preset("hybrid", **{**FAST, "id_dropout": 0.5, "negatives": 16}))
    model.fit(inter, user_features=uf, item_features=itf, options=OPTIONS)
    module = model.module_.train()
    g = torch.Generator().manual_seed(0)
    pos = torch.from_numpy(inter.item_idx[:40].astype(np.int64))
    cands = torch.cat([pos, torch.randint(0, inter.n_items, (16,), generator=g)])
    u = torch.randn(40, model.config.embedding_dim, generator=g)

    def textbook() -> torch.Tensor:
        torch.manual_seed(7)
        dropped = torch.rand(len(cands)) < 0.5
        logits = module.scorer(u, module.item_vectors(cands, id_dropped=dropped)) - module.log_q[cands][None, :]
        other = (cands[None, :] == pos[:, None]) & ~torch.eye(40, len(cands), dtype=torch.bool)
        return torch.nn.functional.cross_entropy(logits.masked_fill(other, -torch.inf), torch.arange(40))

    def distinct() -> torch.Tensor:
        torch.manual_seed(7)
        return module._distinct_sampled_softmax(u, pos, cands)

    grads = []
    for loss_fn in (textbook, distinct):
        module.zero_grad()
        loss = loss_fn()
        loss.backward()
        grads.append((loss.detach(), {k: p.grad.clone() for k, p in module.named_parameters() if p.grad is not None}))
    (want, g_want), (got, g_got) = grads
    torch.testing.assert_close(got, want)
    assert g_got.keys() == g_want.keys()
    for k in g_want:
        torch.testing.assert_close(g_got[k], g_want[k], atol=1e-6, rtol=1e-4)


def _ml100k():
    from shared_data import shared_dataset
    from towerrec.data.load import load_interactions

    folder = shared_dataset("ml-100k")
    items = pd.read_csv(folder / "items.csv", dtype={"item_id": str})
    users = pd.read_csv(folder / "users.csv", dtype={"user_id": str})
    inter, _ = load_interactions(folder / "interactions.csv", item_ids=items["item_id"].to_numpy())
    kinds = {"title": "text", "imdb_url": "ignore", "release_date": "ignore"}
    return (inter, FeatureTable.from_frame(users, inter.user_map, id_col="user_id"),
            FeatureTable.from_frame(items, inter.item_map, id_col="item_id", kinds=kinds))


@pytest.mark.slow
def test_ml100k_quality_bands(monkeypatch):
    """Real data, real MiniLM, two epochs: hybrid well above popularity (test NDCG@10 0.14) on the
    random split; content ranks never-seen items far above chance on the cold-item split."""
    import towerrec.towers.content as tt
    from towerrec.towers.text import embed_texts

    monkeypatch.setattr(tt, "embed_texts", embed_texts)           # undo the fake of this module
    monkeypatch.delenv("TOWERREC_CACHE", raising=False)
    inter, uf, itf = _ml100k()
    split = random_split(inter, seed=0)
    model = TwoTower(TwoTowerConfig.for_preset("hybrid", epochs=2)).fit(
        split.train, user_features=uf, item_features=itf, valid=split.valid, options=OPTIONS)
    ndcg = evaluate(model, split).summary["NDCG@10"]
    assert ndcg > 0.20, ndcg                                        # 2 epochs: about 0.235
    cold = cold_item_split(inter, 0.1, seed=0)
    model = TwoTower(TwoTowerConfig.for_preset("content", epochs=2)).fit(
        cold.train, user_features=uf, item_features=itf, options=OPTIONS)
    recall = evaluate(model, cold, k=(20,)).summary["Recall@20"]
    assert recall > 3 * 20 / inter.n_items, recall                 # chance is about 0.013


# ---- the shared contract, for each preset ------------------------------------------------------
from contract import BlockData, RecommenderContract  # noqa: E402

TINY = dict(epochs=40, patience=40, batch_size=64, embedding_dim=16, id_dim=16, feature_dim=8, hidden=(),
            dropout=0.0, learning_rate=2e-2, temperature=0.1, text="none")


class _TwoTowerContract(RecommenderContract):
    untouched_top1_share = 0.9   # an update fine-tunes shared weights: a borderline user may move
    preset = "hybrid"

    def make_model(self) -> TwoTower:
        return TwoTower(TwoTowerConfig.for_preset(self.preset, **TINY))

    def fit_options(self, seed: int = 0) -> FitOptions:
        return FitOptions(seed=seed, device="cpu", progress=False, threads=1)

    def fit_model(self, model, train, options):
        """Items carry their block as a categorical feature (the content preset needs one)."""
        from contract import block_data

        blocks = block_data(*self.block_shape).item_block
        items = pd.DataFrame({"item_id": train.item_map.ids, "block": [f"b{blocks[i]}" for i in train.item_map.ids]})
        table = FeatureTable.from_frame(items, train.item_map, id_col="item_id", kinds={"block": "categorical"})
        return model.fit(train, item_features=table, options=options)

    def update_model(self, model, frame, options):
        """The new item "inew" belongs to block 1: its content says so."""
        items = pd.DataFrame({"item_id": ["inew"], "block": ["b1"]})
        return model.update(frame, items=items, options=options)

    def test_history(self, data: BlockData, fitted) -> None:
        # the contract's check, without its exact-reproduction part (history and id differ here)
        user = self._users(data)[0]
        history = sorted(data.seen[user])
        recs = fitted.recommend(history=history, k=fitted.n_items)
        assert not {i for i in recs.item_ids[0] if i is not None} & set(history)
        if not fitted.capabilities.histories:
            assert recs.fallback == ["popularity"]
            return
        assert recs.fallback == ["history"]
        assert recs.item_ids[0][0] == data.missing[user]


class TestCFContract(_TwoTowerContract):
    preset = "cf"


class TestContentContract(_TwoTowerContract):
    preset = "content"


class TestHybridContract(_TwoTowerContract):
    preset = "hybrid"


# ---- update -----------------------------------------------------------------------------------------
def _genre_split(inter, users, items):
    """The log without the rows of 3 held-out items of genre 0 (the "new" items) and of 6 users."""
    held_items = [f"i{i}" for i in (0, 1, 2)]
    held_users = [f"u{u}" for u in range(0, 30, 5)]
    frame = inter.to_frame()
    old = frame[~frame.item_id.isin(held_items) & ~frame.user_id.isin(held_users)]
    new = frame.drop(old.index)
    return old, new, held_items, held_users


def test_update_makes_a_new_item_recommendable_at_once(data):
    """A brand-new item with content (genre 0) ranks high for genre-0 users right after one update,
    and low for the others; before the update it was not in the catalogue at all."""
    inter, users, items, _, _ = data
    old, new, held_items, held_users = _genre_split(inter, users, items)
    base = Interactions.from_frame(old)
    uf = FeatureTable.from_frame(users, base.user_map, id_col="user_id")
    itf = FeatureTable.from_frame(items, base.item_map, id_col="item_id", kinds={"title": "text"})
    model = _fit("hybrid", base, uf, itf)
    assert "i0" not in model.item_map_
    model.update(new, items=items, users=users, options=OPTIONS)
    assert set(held_items) <= set(model.item_map_.ids) and set(held_users) <= set(model.user_map_.ids)
    genre0 = [f"u{u}" for u in range(N_USERS) if u % N_GENRES == 0 and f"u{u}" not in held_users][:8]
    others = [f"u{u}" for u in range(N_USERS) if u % N_GENRES == 2][:8]
    def mean_rank(who):
        recs = model.recommend(who, k=model.n_items, exclude_seen=False)
        return np.mean([list(row).index(i) for row in recs.item_ids for i in held_items])
    assert mean_rank(genre0) < 25 < mean_rank(others)
    assert model.lineage_[-1]["new_items"] == 3 and model.version == 2


def test_update_without_training_embeds_new_items_like_add_items(data):
    """passes=0: growth only. A catalogue item given only in `items` gets exactly the vector
    `add_items` gives it, and nobody's old vectors move."""
    inter, users, items, uf, itf = data
    model = _fit("hybrid", inter, uf, itf, **{"update.passes": 0})
    twin = model.snapshot()
    fresh = items.iloc[:2].assign(item_id=["fresh-a", "fresh-b"])
    before_users = model.user_embeddings_.clone()
    model.update(None, items=fresh, options=OPTIONS)
    twin.add_items(fresh)
    assert model.item_map_ == twin.item_map_
    torch.testing.assert_close(model.item_embeddings_, twin.item_embeddings_)
    torch.testing.assert_close(model.user_embeddings_, before_users)


def test_fine_tune_sample_holds_the_replay_share(data):
    from towerrec.data.delta import admit
    from towerrec.models.two_tower.update import fine_tune_sample
    from towerrec.models.update import UpdateConfig

    inter, *_ = data
    delta = admit(inter.user_map, inter.item_map, pd.DataFrame({"user_id": ["u1"] * 4, "item_id": list("wxyz")}))
    n = UpdateConfig(replay=0.75).n_replay(len(delta.rows), inter.to_csr().nnz)
    sample = fine_tune_sample(delta, inter.to_csr(), n, seed=0)
    assert n == 12 and len(sample) == 16
    old = set(zip(inter.user_idx.tolist(), inter.item_idx.tolist()))
    assert all(pair in old for pair in zip(sample.user_idx[4:].tolist(), sample.item_idx[4:].tolist()))


def test_update_settings_are_checked(data):
    inter, _, _, uf, itf = data
    with pytest.raises(TowerrecError, match="replay"):
        _fit("cf", inter, uf, itf, **{"update.replay": 1.0}).update(pd.DataFrame({"user_id": ["z"], "item_id": ["i1"]}))
    assert TwoTower(replay=0.3).config.update.replay == 0.3              # a plain name reaches update.*
