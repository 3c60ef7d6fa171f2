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
* `update_model(model, frame, options)`: how to update (default `model.update(frame, options=...)`);
  override it to pass item content.
* `untouched_top1_share`: the share of untouched users that must keep their top-1 through an
  update (1.0; torch models, which fine-tune shared weights, 0.9).
* `update_equals_refit = True` when `update` must give exactly the scores of a refit on all rows
  (popularity, EASE, ItemKNN); `update_sensible = False` for a model without taste blocks (pop).

What is checked: fit returns self; queries before fit raise `NotFittedError`; the config survives
`dataclasses.asdict` and the JSON round trip of `save`; the model is in `MODELS`; exact top-1 on
the block ("checkerboard") data; `exclude_seen` on and off; batch equals one-by-one; `score`
agrees with `recommend`; unknown users get the popularity fallback; k above the catalogue pads
with -1; save/load gives identical scores; the same seed gives the same scores; `history` works
when `capabilities.histories` and falls back to popularity otherwise; `similar_items` when
declared, NotImplementedError otherwise; declared vectors reproduce the scores; a single id is one id;
`update` admits new users and items (maps grow, old indices never move, lineage and version),
leaves untouched users sensible, survives save/load exactly, takes a DataFrame like Interactions;
`retire_items` keeps retired items out of every list, also after save/load.

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


# ---- continual learning ------------------------------------------------------------------------
def update_frame(data: BlockData) -> pd.DataFrame:
    """New rows for the block data: a new user of block 0 (all but one of its items), a changed user
    of block 1 who gets its missing item, and a new item of block 1 taken by that user and by a new
    user of block 1. Blocks 2 and 3 are untouched."""
    users = sorted(data.user_block)
    block0 = sorted(i for i, b in data.item_block.items() if b == 0)
    block1 = sorted(i for i, b in data.item_block.items() if b == 1)
    changed = next(u for u in users if data.user_block[u] == 1)
    rows = [("unew0", i) for i in block0[:-1]]
    rows += [(changed, data.missing[changed]), (changed, "inew")]
    rows += [("unew1", i) for i in [*block1[:3], "inew"]]
    return pd.DataFrame(rows, columns=["user_id", "item_id"])


class UpdateContract:
    """Mixed into `RecommenderContract`: the `update` / `retire_items` part of the contract."""

    @pytest.fixture(scope="class")
    @classmethod
    def updated(cls, data: BlockData) -> tuple[Recommender, Recommender]:
        """(fitted, fitted then updated with `update_frame`): two fits, so the shared one stays intact."""
        suite = cls()
        before = suite.fit_model(suite.make_model(), data.train, suite.fit_options(0))
        after = suite.fit_model(suite.make_model(), data.train, suite.fit_options(0))
        return before, suite.update_model(after, update_frame(data), suite.fit_options(0))

    def update_model(self, model: Recommender, frame: pd.DataFrame, options: FitOptions) -> Recommender:
        """How to update (default `model.update(frame, options=options)`); override to pass content."""
        return model.update(frame, options=options)

    def test_update_admits_new_ids(self, data: BlockData, updated) -> None:
        before, after = updated
        n_users, n_items = len(before.user_map_), before.n_items
        assert after.user_map_.to_list() == [*before.user_map_.to_list(), "unew0", "unew1"]
        assert after.item_map_.to_list() == [*before.item_map_.to_list(), "inew"]   # nothing moved
        assert after.seen_.shape == (n_users + 2, n_items + 1) and len(after.ties_) == n_items + 1
        np.testing.assert_array_equal(after.ties_.keys[:n_items], before.ties_.keys)   # prefix-stable
        assert after.version == before.version + 1 == 2
        last = after.lineage_[-1]
        assert (last["kind"], last["rows"], last["new_users"], last["new_items"], last["changed_users"]) == \
            ("update", len(update_frame(data)), 2, 1, 1)
        assert after.known_users(after.user_map_.index(["unew0", "unew1"])).all()
        recs = after.recommend(["unew0", "unew1"], k=3)
        assert recs.fallback == [None, None]
        assert after.item_popularity_[after.item_map_.index(["inew"])[0]] > 0

    def test_update_excludes_the_new_rows(self, data: BlockData, updated) -> None:
        _, after = updated
        frame = update_frame(data)
        for user, rows in frame.groupby("user_id"):
            listed = set(after.recommend(user, k=after.n_items).item_ids[0]) - {None}
            assert not listed & set(rows["item_id"]), f"{user}: an item of the update was recommended"

    def test_untouched_users_stay_sensible(self, data: BlockData, updated) -> None:
        before, after = updated
        untouched = [u for u in sorted(data.user_block) if data.user_block[u] in (2, 3)]
        a, b = before.recommend(untouched, k=1), after.recommend(untouched, k=1)
        if not self.update_sensible:
            return
        expected = self.expected_top1(data, after)
        kept = np.mean([expected[u] == got for u, got in zip(untouched, b.item_ids[:, 0])])
        assert kept >= self.untouched_top1_share, f"only {kept:.0%} of the untouched users kept their top-1"
        block1 = [u for u in sorted(data.user_block) if data.user_block[u] == 1]
        own = after.score(block1, ["inew"] * len(block1)).mean()
        other = after.score(untouched, ["inew"] * len(untouched)).mean()
        assert own > other, f"the new item of block 1 scores {own:.4g} in its block, {other:.4g} elsewhere"
        assert np.mean(a.item_ids[:, 0] == b.item_ids[:, 0]) >= self.untouched_top1_share

    def test_update_survives_save_load(self, data: BlockData, updated, tmp_path) -> None:
        _, after = updated
        after.save(tmp_path / "updated")
        loaded = load_model(str(tmp_path / "updated"))
        assert loaded.user_map_ == after.user_map_ and loaded.item_map_ == after.item_map_
        assert loaded.lineage_ == after.lineage_ and loaded.version == 2
        idx = np.arange(len(after.user_map_))
        assert torch.equal(loaded.score_users(idx), after.score_users(idx))
        users = ["unew0", "unew1", *sorted(data.user_block)[:4]]
        np.testing.assert_array_equal(loaded.recommend(users, k=5).item_idx, after.recommend(users, k=5).item_idx)
        again = self.update_model(loaded, pd.DataFrame({"user_id": ["unew0"], "item_id": ["inew"]}), self.fit_options(0))
        assert again.version == 3 and again.seen_[again.user_map_.index(["unew0"])[0]].nnz == \
            after.seen_[after.user_map_.index(["unew0"])[0]].nnz + 1

    def test_update_takes_interactions_like_a_frame(self, data: BlockData, updated) -> None:
        _, by_frame = updated
        frame = update_frame(data)
        by_inter = self.update_model(self.fit_model(self.make_model(), data.train, self.fit_options(0)),
                                     Interactions.from_frame(frame), self.fit_options(0))
        assert by_inter.user_map_ == by_frame.user_map_ and by_inter.item_map_ == by_frame.item_map_
        assert (by_inter.seen_ != by_frame.seen_).nnz == 0
        idx = np.arange(len(by_frame.user_map_))
        torch.testing.assert_close(by_inter.score_users(idx), by_frame.score_users(idx))

    def test_update_equals_refit(self, data: BlockData, updated) -> None:
        if not self.update_equals_refit:
            return
        _, after = updated
        frame = pd.concat([data.train.to_frame(), update_frame(data)], ignore_index=True)
        everything = Interactions.from_frame(frame, user_map=after.user_map_, item_map=after.item_map_)
        refit = self.fit_model(self.make_model(), everything, self.fit_options(0))
        idx = np.arange(len(after.user_map_))
        torch.testing.assert_close(after.score_users(idx), refit.score_users(idx), rtol=1e-5, atol=1e-5)

    def test_retired_items_are_never_listed(self, data: BlockData, tmp_path) -> None:
        model = self.fit_model(self.make_model(), data.train, self.fit_options(0))
        users = sorted(data.user_block)
        top = model.recommend(users, k=1).item_ids[:, 0]
        retired = sorted(set(top))[:2]
        model.retire_items(retired)
        assert model.version == 2 and model.lineage_[-1]["kind"] == "retire_items"
        model.save(tmp_path / "retired")
        for m in (model, load_model(str(tmp_path / "retired"))):
            listed = set(m.recommend(users, k=m.n_items).item_ids.ravel())
            listed |= set(m.recommend(["nobody"], k=m.n_items).item_ids.ravel())
            listed |= set(m.recommend(history=sorted(data.seen[users[0]])[:2], k=m.n_items).item_ids.ravel())
            if m.capabilities.similar_items:
                listed |= set(m.similar_items(sorted(data.item_block)[:3], k=m.n_items).item_ids.ravel())
            assert not listed & set(retired)


class RecommenderContract(UpdateContract):
    """Subclass me and define `make_model()`; see the module docstring (the `update` part of the
    contract is inherited from `UpdateContract`, above)."""

    block_shape: tuple[int, int, int] = (4, 6, 10)
    history_reproduces_users: bool = False
    history_atol: float = 1e-4
    update_equals_refit: bool = False
    update_sensible: bool = True
    untouched_top1_share: float = 1.0

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
