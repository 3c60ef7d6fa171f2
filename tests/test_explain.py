"""Explanations: exact contributions add up to the score (EASE, ItemKNN, ALS), leave-one-out equals the
deletion it describes (sequence and two-tower models), feature attributions are score differences,
and the deletion test runs for every kind of model."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from towerrec.data.features import FeatureTable
from towerrec.data.sequences import Sequences
from towerrec.errors import TowerrecError
from towerrec.explain import Explanation, deletion_test, leave_one_out
from towerrec.models import ALS, EASE, GRU4Rec, ItemKNN, Popularity, SASRec
from towerrec.models.base import FitOptions
from towerrec.models.two_tower import TwoTower, TwoTowerConfig

OPTS = FitOptions(seed=0, progress=False, threads=1)


def contributions(model, user: str, item: str) -> dict[str, float]:
    e = model.explain(user, item, k=100)
    return {c.item_id: c.weight for c in e.because}


@pytest.mark.parametrize("make", [lambda: EASE(l2=5.0), lambda: ItemKNN(neighbours=5, shrink=0.0)])
def test_item_row_models_explain_exactly(tiny_interactions, make):
    model = make().fit(tiny_interactions, options=OPTS)
    user = "u0"
    for item in model.recommend([user], k=3).item_ids[0]:
        e = model.explain(user, item, k=100)
        weights = model.item_weights()
        w = weights.toarray() if hasattr(weights, "toarray") else weights.numpy()
        i = model.item_map_.index([item])[0]
        seen = model.seen_items(model.user_map_.index([user])[0])
        expected = {str(model.item_map_.ids[h]): float(w[h, i]) for h in seen if w[h, i] > 0}
        assert {c.item_id: c.weight for c in e.because} == pytest.approx(expected)
        assert sum(float(w[h, i]) for h in seen) == pytest.approx(e.score, rel=1e-5)   # the score is their sum
        assert e.method.startswith("exact")


def test_als_decomposition_adds_up_to_the_folded_in_score(tiny_interactions):
    model = ALS(factors=4, iterations=5, regularization=1.0, alpha=2.0).fit(tiny_interactions, options=OPTS)
    u = model.user_map_.index(["u3"])[0]
    history = model.history_of(u)
    items = np.arange(model.n_items)
    effects = model.history_effects(u, history, items)
    folded = model.score_histories(history)[0].double().numpy()
    assert effects.sum(0) == pytest.approx(folded, abs=1e-4)
    assert folded == pytest.approx(model.score_users(np.array([u]))[0].double().numpy(), abs=1e-3)
    assert model.explain("u3", model.item_map_.ids[0]).method.startswith("ALS decomposition")


def test_sequence_leave_one_out_is_the_deletion_it_describes(tiny_interactions):
    model = SASRec(embedding_dim=8, max_len=4, blocks=1, heads=1, inner_dim=8, epochs=2).fit(
        tiny_interactions, options=OPTS)
    u = model.user_map_.index(["u5"])[0]
    history = model.history_of(u)
    items = np.arange(model.n_items)
    effects = model.history_effects(u, history, items)
    tokens = history.tokens
    full = model.score_histories(history)[0].numpy()
    assert np.all(effects[: len(tokens) - 4] == 0)        # outside the window of 4: no effect
    for p in range(len(tokens) - 4, len(tokens)):
        without = Sequences(np.delete(tokens, p), np.array([0, len(tokens) - 1]))
        expected = full - model.score_histories(without)[0].numpy()
        assert effects[p] == pytest.approx(expected, abs=1e-5)


@pytest.mark.parametrize("make", [
    lambda: SASRec(embedding_dim=8, max_len=4, blocks=2, heads=2, inner_dim=8, epochs=2),
    lambda: SASRec(embedding_dim=8, max_len=8, blocks=1, heads=1, inner_dim=8, epochs=2, norm_first=True),
    lambda: GRU4Rec(embedding_dim=8, hidden_dim=6, max_len=4, epochs=2),
    lambda: GRU4Rec(embedding_dim=8, hidden_dim=6, max_len=8, epochs=2),
])
def test_sequence_shared_prefix_leave_one_out_equals_scoring_each_variant(tiny_interactions, make):
    """`history_effects` shares what the variants have in common (the encoder's states before the
    removed position); scoring every variant whole must give the same numbers, for histories longer
    than the window (an older item moves in), as long, and shorter (left padding)."""
    model = make().fit(tiny_interactions, options=OPTS)
    items = np.arange(model.n_items)
    for limit in (None, 3, 1):          # every position of the window, or only the newest 3 / 1
        model.explain_positions = limit
        for tokens in ([3, 1, 4, 1 + 4, 9, 2], [5, 3, 8, 1], [7, 2], [6, 9, 4]):
            history = Sequences(np.array(tokens), np.array([0, len(tokens)]))
            n = len(tokens)
            window = np.arange(max(0, n - min(model.config.max_len, limit or n)), n)
            expected = leave_one_out(model, -1, history, items, positions=window)
            got = model.history_effects(-1, history, items)
            assert got == pytest.approx(expected, abs=1e-5)
            assert np.all(got[: window[0]] == 0) and np.any(got[window] != 0)
            assert model._leave_one_out_shared(history, items) is not None        # the shared path ran


def hybrid(inter, users: bool):
    items = pd.DataFrame({"item_id": inter.item_map.to_list(),
                          "genres": [("A|B", "B", "C")[i % 3] for i in range(inter.n_items)],
                          "year": np.arange(inter.n_items) + 1990})
    table = FeatureTable.from_frame(items, inter.item_map, id_col="item_id")
    user_table = None
    if users:
        frame = pd.DataFrame({"user_id": inter.user_map.to_list(), "age": np.arange(inter.n_users) * 3 + 20,
                              "gender": ["M", "F"] * (inter.n_users // 2)})
        user_table = FeatureTable.from_frame(frame, inter.user_map, id_col="user_id")
    config = TwoTowerConfig.for_preset("hybrid", text="none", epochs=3, embedding_dim=8, id_dim=8, feature_dim=4,
                                       hidden=(), dropout=0.0, batch_size=16)
    return TwoTower(config).fit(inter, user_features=user_table, item_features=table, options=OPTS)


def test_two_tower_history_and_feature_effects_are_score_differences(tiny_interactions):
    model = hybrid(tiny_interactions, users=True)
    u = model.user_map_.index(["u2"])[0]
    history = model.history_of(u)
    items = np.arange(3)
    effects = model.history_effects(u, history, items)
    score = model.score_users(np.array([u]))[0, :3].double().numpy()
    assert model.score_history_variants(u, history, items)[0].double().numpy() == pytest.approx(score, abs=1e-5)
    hist = history.tokens - 1
    seen = model.seen_
    for p in range(len(hist)):   # the user vector with one item left out, by hand
        row = seen[u].copy()
        row[0, hist[p]] = 0
        row.eliminate_zeros()
        vec = model._user_vectors(np.array([u]), row, np.array([0]))
        manual = model.module_.scorer(vec, model.item_embeddings_[:3])[0].double().numpy()
        assert effects[p] == pytest.approx(score - manual, abs=1e-5)
    # a new user (and a known one with another history): the user vector as `_user_vectors` computes it
    from towerrec.models.two_tower.explain import _full_user

    other = Sequences(np.array([3, 1, 5]), np.array([0, 3]))
    for user_idx in (-1, u):
        expected = model._user_vectors(np.array([user_idx]), other.to_csr(model.n_items), np.array([0]))
        with torch.no_grad():
            assert _full_user(model, user_idx, other).numpy() == pytest.approx(expected.numpy(), abs=1e-5)
    e = model.explain("u2", model.item_map_.ids[0], k=3)
    names = {(f.side, f.feature) for f in e.features}
    assert {("user", "age"), ("user", "gender"), ("user", "user id"), ("item", "genres"), ("item", "year"),
            ("item", "item id")} <= names
    # the item's genres blanked by hand: an empty bag
    m = model.module_
    feats = m.item_rows.take(torch.tensor([1]))
    flat, _ = feats["bags"][0]
    feats["bags"][0] = (flat[:0], torch.zeros(1, dtype=torch.int64))
    with torch.no_grad():
        z = m.scorer.prepare(m.item_tower({"id": m.item_code[:1], "features": feats}))
        user = model.user_embeddings_[u:u + 1]
        blanked = float(m.scorer(user, z)[0, 0])
    genres = next(f.weight for f in e.features if f.feature == "genres")
    assert genres == pytest.approx(e.score - blanked, abs=1e-5)
    # the user's age and id blanked by hand, through the module's own `user_vectors` (the explanation
    # encodes what its variants share once, this encodes every variant whole)
    from towerrec.models.two_tower.batches import histories

    def user_score(user_idx: int, row: dict) -> float:
        with torch.no_grad():
            vec = m.user_vectors(torch.tensor([user_idx]), histories(seen, np.array([u])), row)
            return float(m.scorer(vec, model.item_embeddings_[:1])[0, 0])

    row = m.user_rows.take(torch.tensor([u + 1]))
    assert user_score(u, row) == pytest.approx(e.score, abs=1e-5)
    age = next(f.weight for f in e.features if f.feature == "age")
    no_age = {**row, "num": row["num"].clone().fill_(0.0)}                # age: the user side's only numeric
    assert age == pytest.approx(e.score - user_score(u, no_age), abs=1e-5)
    no_id = next(f.weight for f in e.features if f.feature == "user id")
    assert no_id == pytest.approx(e.score - user_score(-1, row), abs=1e-5)


def test_models_that_ignore_the_history_say_so(tiny_interactions):
    pop = Popularity().fit(tiny_interactions, options=OPTS)
    e = pop.explain("u0", pop.item_map_.ids[1])
    assert e.because == [] and e.nearest == [] and "popularity" in e.method
    cf = TwoTower(TwoTowerConfig.for_preset("cf", epochs=1, embedding_dim=4, batch_size=16)).fit(
        tiny_interactions, options=OPTS)
    e = cf.explain("u0", cf.item_map_.ids[1])
    assert e.because == [] and len(e.nearest) == 3 and "id-only" in e.method


def test_the_api_shapes_and_errors(tiny_interactions):
    model = EASE(l2=5.0).fit(tiny_interactions, options=OPTS)
    top = model.explain("u1", n=3)          # u1 has 6 of the 9 items: 3 left to recommend
    assert len(top) == 3 and all(isinstance(e, Explanation) for e in top)
    assert [e.item_id for e in top] == model.recommend("u1", k=3).item_ids[0].tolist()
    new = model.explain(history=["i0", "i1"], n=2)
    assert [e.user_id for e in new] == [None, None] and all(c.item_id in ("i0", "i1") for c in new[0].because)
    assert new[0].score > 0 and new[0].sentence().startswith("because you liked")
    negative = model.explain(item_ids="i3", history=["i0", "i1"])     # both history items lower its score
    assert negative.score < 0 and negative.because == [] and negative.sentence().startswith("close to")
    with pytest.raises(TowerrecError):
        model.explain("u1", "no-such-item")
    with pytest.raises(TowerrecError):
        model.explain()
    json = top[0].to_dict()
    assert set(json) == {"user_id", "item_id", "score", "method", "because", "nearest", "features"}


@pytest.mark.parametrize("make", [lambda: EASE(l2=5.0), lambda: ItemKNN(neighbours=5),
                                  lambda: ALS(factors=4, iterations=5, regularization=1.0)])
def test_deletion_test_on_exact_models(tiny_interactions, make):
    model = make().fit(tiny_interactions, options=OPTS)
    rng = np.random.default_rng(0)
    wins = []
    for user in ("u0", "u4", "u7"):
        u = model.user_map_.index([user])[0]
        items = model.recommend([user], k=2).item_idx[0]
        drops = deletion_test(model, u, model.history_of(u), items, rng)
        wins += list(drops["top"] >= drops["random_top"])
        assert set(drops) == {"top", "random_top", "nearest", "random_nearest"}
    assert np.mean(wins) >= 0.8
