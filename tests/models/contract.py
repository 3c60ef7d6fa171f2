"""The contract every towerrec recommender must pass, as one reusable test class.

How to use it, in `tests/models/test_<name>.py` (this folder is on `sys.path` under pytest's
default import mode, as for `sequence_checks.py`):

    from contract import RecommenderContract
    from towerrec.models.my_model import MyModel

    class TestMyModelContract(RecommenderContract):
        def make_model(self):
            return MyModel(embedding_dim=8, epochs=20)   # tiny: the whole class should take seconds

pytest then runs every `test_*` method below against that model. Only `make_model` is required.
Override, when the model needs it:

* `fit_model(model, train, options)`: how to fit (default `model.fit(train, options=options)`);
  override it to pass features or a `valid` split.
* `fit_options(seed)`: the `FitOptions` used (default: that seed, CPU, no progress bar).
* `block_shape = (n_blocks, items_per_block, users_per_block)`: size of the synthetic data.
* `expected_top1(data, model)`: the known right first item per user (default: the one item of the
  user's own block they have not seen; `test_pop.py` overrides it with the most popular item).
* `history_reproduces_users = True` when scoring a training user's own train items as a `history`
  must give that user's scores (item-based models, ALS's fold-in); `history_atol` its tolerance.

What is checked: fit returns self; queries before fit raise `NotFittedError`; the config survives
`dataclasses.asdict` and the JSON round trip of `save`; the model is in `MODELS`; exact top-1 on
the block ("checkerboard") data; `exclude_seen` on and off; batch equals one-by-one; `score`
agrees with `recommend`; unknown users get the popularity fallback; k above the catalogue pads
with -1; save/load gives identical scores; the same seed gives the same scores; `history` works
when `capabilities.histories` and falls back to popularity otherwise; `similar_items` when
declared, NotImplementedError otherwise; declared vectors reproduce the scores; a single id is one id.

The data: users are split into `n_blocks` taste blocks, each with its own `items_per_block`
items; every user has seen all items of their block except one, and nothing else. Any sensible
collaborative model must put that missing item first, and items of the same block first in
`similar_items`. External ids are shuffled so that block order never equals index order.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest
import torch

from towerrec.data.idmap import IdMap
from towerrec.data.interactions import Interactions
from towerrec.errors import NotFittedError
from towerrec.models import MODELS, load_model
from towerrec.config import apply_overrides
from towerrec.models.base import FitOptions, Recommender


@dataclass(frozen=True)
class BlockData:
    """The synthetic block data set and its known answers (all in external ids)."""

    train: Interactions
    user_block: dict[str, int]       # user id -> block
    item_block: dict[str, int]       # item id -> block
    missing: dict[str, str]          # user id -> the one item of its block it has not seen
    seen: dict[str, set[str]]        # user id -> its train items


def block_data(n_blocks: int = 4, items_per_block: int = 6, users_per_block: int = 10,
               seed: int = 0) -> BlockData:
    """Users in block b have seen every item of block b except one (it rotates over users)."""
    rng = np.random.default_rng(seed)
    n_users, n_items = n_blocks * users_per_block, n_blocks * items_per_block
    user_names = rng.permutation(n_users)    # shuffled external ids: u17 need not be index 17
    item_names = rng.permutation(n_items)
    rows, user_block, item_block, missing, seen = [], {}, {}, {}, {}
    for i in range(n_items):
        item_block[f"i{item_names[i]}"] = i // items_per_block
    for u in range(n_users):
        b, m = u % n_blocks, (u // n_blocks) % items_per_block
        uid = f"u{user_names[u]}"
        user_block[uid] = b
        items = [f"i{item_names[b * items_per_block + j]}" for j in range(items_per_block)]
        missing[uid] = items[m]
        seen[uid] = {it for j, it in enumerate(items) if j != m}
        rows += [(uid, it) for it in sorted(seen[uid])]
    frame = pd.DataFrame(rows, columns=["user_id", "item_id"]).sample(frac=1.0, random_state=seed)
    # an item every user of its block misses (items_per_block > users_per_block) stays in the catalogue
    catalogue = IdMap(np.array([f"i{x}" for x in item_names], dtype=object), name="item")
    train = Interactions.from_frame(frame, item_map=catalogue)
    return BlockData(train, user_block, item_block, missing, seen)


class RecommenderContract:
    """Subclass me and define `make_model()`; see the module docstring."""

    block_shape: tuple[int, int, int] = (4, 6, 10)
    history_reproduces_users: bool = False
    history_atol: float = 1e-4

    # ---- hooks ---------------------------------------------------------------------------------
    def make_model(self) -> Recommender:
        raise NotImplementedError("a RecommenderContract subclass must define make_model()")

    def fit_options(self, seed: int = 0) -> FitOptions:
        return FitOptions(seed=seed, device="cpu", progress=False)

    def fit_model(self, model: Recommender, train: Interactions, options: FitOptions) -> Recommender:
        return model.fit(train, options=options)

    def expected_top1(self, data: BlockData, model: Recommender) -> dict[str, str]:
        return data.missing

    # ---- fixtures (one fit per test class) -----------------------------------------------------
    @pytest.fixture(scope="class")
    @classmethod
    def data(cls) -> BlockData:
        return block_data(*cls.block_shape)

    @pytest.fixture(scope="class")
    @classmethod
    def fitted(cls, data: BlockData) -> Recommender:
        suite = cls()  # hooks are instance methods; the fit is shared by the whole class
        return suite.fit_model(suite.make_model(), data.train, suite.fit_options(0))

    @staticmethod
    def _users(data: BlockData) -> list[str]:
        return sorted(data.user_block)

    # ---- lifecycle -----------------------------------------------------------------------------
    def test_fit_returns_self(self, data: BlockData) -> None:
        model = self.make_model()
        assert self.fit_model(model, data.train, self.fit_options(0)) is model

    def test_query_before_fit_raises(self, data: BlockData) -> None:
        model = self.make_model()
        user, item = self._users(data)[0], sorted(data.item_block)[0]
        with pytest.raises(NotFittedError):
            model.recommend([user], k=3)
        with pytest.raises(NotFittedError):
            model.recommend(history=[item], k=3)
        with pytest.raises(NotFittedError):
            model.score([user], [item])
        if model.capabilities.similar_items:
            with pytest.raises(NotFittedError):
                model.similar_items([item], k=3)

    def test_config_round_trip(self) -> None:
        model = self.make_model()
        config = model.config
        assert dataclasses.is_dataclass(config) and type(config) is type(model).Config
        as_json = json.loads(json.dumps(dataclasses.asdict(config)))   # what save() writes
        assert apply_overrides(type(config)(), as_json) == config
        with pytest.raises(dataclasses.FrozenInstanceError):
            setattr(config, dataclasses.fields(config)[0].name, None)

    def test_registered(self) -> None:
        model = self.make_model()
        assert MODELS[model.name] is type(model)

    # ---- ranking -------------------------------------------------------------------------------
    def test_checkerboard_top1(self, data: BlockData, fitted: Recommender) -> None:
        users = self._users(data)
        recs = fitted.recommend(users, k=3)
        expected = self.expected_top1(data, fitted)
        got = dict(zip(users, recs.item_ids[:, 0]))
        wrong = {u: (got[u], expected[u]) for u in users if got[u] != expected[u]}
        assert not wrong, f"{len(wrong)}/{len(users)} users with a wrong top-1 (got, expected): {wrong}"

    def test_exclude_seen(self, data: BlockData, fitted: Recommender) -> None:
        users, n = self._users(data), fitted.n_items
        on = fitted.recommend(users, k=n)
        off = fitted.recommend(users, k=n, exclude_seen=False)
        for row, user in enumerate(users):
            listed_on = {i for i in on.item_ids[row] if i is not None}
            assert not listed_on & data.seen[user], "a train item was recommended with exclude_seen=True"
            assert len(listed_on) == n - len(data.seen[user])
            listed_off = list(off.item_ids[row])
            assert None not in listed_off and len(set(listed_off)) == n  # everything, seen items included
            assert data.seen[user] <= set(listed_off)

    def test_batch_equals_one_by_one(self, data: BlockData, fitted: Recommender) -> None:
        users = self._users(data)
        batch = fitted.recommend(users, k=5)
        small = fitted.recommend(users, k=5, batch_size=3)   # several batches, one of them short
        np.testing.assert_array_equal(batch.item_idx, small.item_idx)
        for row, user in enumerate(users[:8]):
            one = fitted.recommend(user, k=5)
            np.testing.assert_array_equal(one.item_idx[0], batch.item_idx[row])
            np.testing.assert_allclose(one.scores[0], batch.scores[row], rtol=1e-5, atol=1e-6)

    def test_score_agrees_with_recommend(self, data: BlockData, fitted: Recommender) -> None:
        users = self._users(data)[:6]
        recs = fitted.recommend(users, k=4)
        pairs_u = np.repeat(users, 4)
        pairs_i = recs.item_ids.reshape(-1)
        np.testing.assert_allclose(fitted.score(list(pairs_u), list(pairs_i)), recs.scores.reshape(-1),
                                   rtol=1e-5, atol=1e-6)

    def test_unknown_users_fall_back_to_popularity(self, data: BlockData, fitted: Recommender) -> None:
        known = self._users(data)[0]
        recs = fitted.recommend(["nobody", known, "nobody-else"], k=5)
        assert recs.fallback == ["popularity", None, "popularity"]
        counts = data.train.item_counts()
        order = np.lexsort([fitted.ties_.keys, -counts])[:5]   # count desc, then the seeded tie order
        np.testing.assert_array_equal(recs.item_idx[0], order)
        np.testing.assert_array_equal(recs.item_idx[2], order)

    def test_k_larger_than_catalogue(self, data: BlockData, fitted: Recommender) -> None:
        users, n = self._users(data)[:5], fitted.n_items
        for recs in (fitted.recommend(users, k=n + 7), fitted.recommend(["nobody"], k=n + 7)):
            assert recs.item_idx.shape == (len(recs.user_ids), n)
            for row, user in enumerate(recs.user_ids):
                real = recs.item_idx[row][recs.item_idx[row] >= 0]
                assert len(np.unique(real)) == len(real) and real.max() < n
                n_seen = len(data.seen.get(user, ()))
                assert len(real) == n - n_seen
                assert (recs.item_idx[row][len(real):] == -1).all()       # padding only at the end
                assert np.isnan(recs.scores[row][len(real):]).all()
                assert np.isfinite(recs.scores[row][: len(real)]).all()

    # ---- artifacts and determinism -------------------------------------------------------------
    def test_save_load_identical(self, data: BlockData, fitted: Recommender, tmp_path) -> None:
        users = self._users(data)
        fitted.save(tmp_path / "model")
        for loaded in (type(fitted).load(tmp_path / "model"), load_model(str(tmp_path / "model"))):
            assert type(loaded) is type(fitted) and loaded.config == fitted.config
            idx = np.arange(len(users))
            assert torch.equal(loaded.score_users(idx), fitted.score_users(idx))
            a, b = loaded.recommend(users, k=5), fitted.recommend(users, k=5)
            np.testing.assert_array_equal(a.item_idx, b.item_idx)
            np.testing.assert_array_equal(a.scores, b.scores)
            history = sorted(data.seen[users[0]])
            a, b = loaded.recommend(history=history, k=5), fitted.recommend(history=history, k=5)
            np.testing.assert_array_equal(a.item_idx, b.item_idx)
            np.testing.assert_array_equal(a.scores, b.scores)
            if fitted.capabilities.similar_items:
                items = sorted(data.item_block)[:4]
                a, b = loaded.similar_items(items, k=3), fitted.similar_items(items, k=3)
                np.testing.assert_array_equal(a.item_idx, b.item_idx)

    def test_same_seed_same_scores(self, data: BlockData, fitted: Recommender) -> None:
        again = self.fit_model(self.make_model(), data.train, self.fit_options(0))
        idx = np.arange(len(data.user_block))
        assert torch.equal(again.score_users(idx), fitted.score_users(idx))

    # ---- new users and items -------------------------------------------------------------------
    def test_history(self, data: BlockData, fitted: Recommender) -> None:
        user = self._users(data)[0]
        history = sorted(data.seen[user])
        recs = fitted.recommend(history=history, k=fitted.n_items)
        listed = [i for i in recs.item_ids[0] if i is not None]
        assert not set(listed) & set(history), "history items must be excluded"
        if not fitted.capabilities.histories:
            assert recs.fallback == ["popularity"]
            return
        assert recs.fallback == ["history"]
        assert listed[0] == self.expected_top1(data, fitted)[user]
        if self.history_reproduces_users:
            row = fitted.user_map_.index([user])
            own = fitted.score_users(row)[0].numpy()
            real = recs.item_idx[0] >= 0
            np.testing.assert_allclose(recs.scores[0][real], own[recs.item_idx[0][real]],
                                       rtol=1e-4, atol=self.history_atol)

    def test_similar_items(self, data: BlockData, fitted: Recommender) -> None:
        items = sorted(data.item_block)
        if not fitted.capabilities.similar_items:
            with pytest.raises(NotImplementedError):
                fitted.similar_items(items[:1], k=3)
            return
        sims = fitted.similar_items(items, k=3)
        assert sims.item_idx.shape == (len(items), 3)
        for row, item in enumerate(items):
            assert item not in set(sims.item_ids[row]), "an item is not similar to itself"
            top = sims.item_ids[row][0]
            assert data.item_block[top] == data.item_block[item], f"{item}: top similar item {top} is off-block"

    # ---- the declared protocol ---------------------------------------------------------------------
    def test_a_single_id_is_one_id(self, data: BlockData, fitted: Recommender) -> None:
        user, item = self._users(data)[0], sorted(data.item_block)[0]
        assert len(fitted.recommend(user, k=3)) == 1
        if fitted.capabilities.similar_items:
            assert len(fitted.similar_items(item, k=3)) == 1      # not one query per character

    def test_declared_vectors_reproduce_the_scores(self, data: BlockData, fitted: Recommender) -> None:
        caps = fitted.capabilities
        if caps.vectors != "ip":
            with pytest.raises(NotImplementedError):
                fitted.user_vectors(np.arange(2))
            return
        items = fitted.item_vectors()
        idx = np.arange(len(data.user_block))
        torch.testing.assert_close(fitted.user_vectors(idx) @ items.T, fitted.score_users(idx), rtol=1e-4, atol=1e-4)
        if caps.histories:
            from towerrec.data.sequences import Sequences

            histories = Sequences.from_lists([fitted.item_map_.index(sorted(data.seen[u])) for u in self._users(data)[:5]])
            torch.testing.assert_close(fitted.history_vectors(histories) @ items.T, fitted.score_histories(histories),
                                       rtol=1e-4, atol=1e-4)

    def test_undeclared_histories_are_refused(self, data: BlockData, fitted: Recommender) -> None:
        from towerrec.data.sequences import Sequences

        histories = Sequences.from_lists([[0, 1]])
        if fitted.capabilities.histories:
            assert fitted.score_histories(histories).shape == (1, fitted.n_items)
        else:
            with pytest.raises(NotImplementedError):
                fitted.score_histories(histories)
