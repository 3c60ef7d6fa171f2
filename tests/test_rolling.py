"""Rolling evaluation: time-quantile windows, the per-window protocol computed by hand, both tracks,
the CLI (`evaluate --split rolling`) and experiment files ([split] method = "rolling")."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

import towerrec as tr
from towerrec.cli import main
from towerrec.data.interactions import Interactions
from towerrec.errors import TowerrecError
from towerrec.models import build_model
from towerrec.models.base import FitOptions
from towerrec.models.pop import Popularity
from towerrec.rolling import evaluate_window, new_item_ranks, rolling_split, run_rolling

OPTIONS = FitOptions(seed=0, progress=False, threads=1)


def drifting_log(n_users: int = 60, n_items: int = 40, per_user: int = 12, seed: int = 0) -> pd.DataFrame:
    """Users arrive over time and take items of one of 4 taste blocks; later users also meet items
    that appear later (so windows have new users and new items)."""
    rng = np.random.default_rng(seed)
    rows = []
    for u in range(n_users):
        block, arrival = u % 4, u * 100
        reachable = [i for i in range(n_items) if i % 4 == block and i <= 10 + u * n_items // n_users]
        for j, i in enumerate(rng.choice(reachable, min(per_user, len(reachable)), replace=False)):
            rows.append((f"u{u}", f"i{i}", arrival + 10 * j + rng.integers(0, 5)))
    return pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"])


@pytest.fixture(scope="module")
def log() -> Interactions:
    return Interactions.from_frame(drifting_log(), time_col="timestamp")


# ---- windows ----------------------------------------------------------------------------------------
def test_windows_are_time_quantiles_that_never_split_a_timestamp(log):
    split = rolling_split(log, windows=4, start=0.5)
    assert split.windows == 4 and len(split.cuts) == 5
    n = len(log)
    sizes = np.bincount(split.slice_of + 1)
    assert sizes[0] == pytest.approx(n / 2, abs=n * 0.03)                     # the first half before c_0
    assert sizes[1:] == pytest.approx(np.full(5, n / 2 / 5), abs=n * 0.03)    # 5 equal slices after
    for j in range(5):                                                          # times never straddle a cut
        inside = log.time[split.slice_of == j]
        assert inside.min() >= split.cuts[j] and (j == 4 or inside.max() < split.cuts[j + 1])
    assert (log.time[split.slice_of < 0] < split.cuts[0]).all()
    before = split.before(2)
    assert len(before) == int((split.slice_of < 2).sum()) and before.n_users == len(np.unique(before.user_idx))


def test_window_facts_count_new_users_and_items(log):
    split = rolling_split(log, windows=3)
    for w in split.info["windows"]:
        t = w["window"]
        seen = split.slice_of < t
        rows = split.slice_of == t
        old_users, old_items = set(log.user_idx[seen]), set(log.item_idx[seen])
        users, items = log.user_idx[rows], log.item_idx[rows]
        assert w["new_users"] == len(set(users) - old_users) and w["new_items"] == len(set(items) - old_items)
        assert w["cold_item_share"] == pytest.approx(np.mean([i not in old_items for i in items]))
    assert any(w["new_items"] for w in split.info["windows"])


@pytest.mark.parametrize("kw, message", [(dict(windows=0), "positive"), (dict(start=1.0), r"\(0, 1\)"),
                                         (dict(windows=500), "empty")])
def test_bad_windows_are_one_clear_error(log, kw, message):
    with pytest.raises(TowerrecError, match=message):
        rolling_split(log, **kw)


def test_rolling_needs_timestamps():
    frame = drifting_log().drop(columns="timestamp")
    with pytest.raises(TowerrecError, match="timestamps"):
        rolling_split(Interactions.from_frame(frame))
    with pytest.raises(TowerrecError, match="not a train/valid/test split"):
        tr.splits.make_split(Interactions.from_frame(frame), "rolling")


# ---- one window, by hand ------------------------------------------------------------------------------
def test_window_metrics_by_hand():
    """Popularity on a 3-user log: a seen pair is dropped, a cold item counts in |R| and is never hit,
    an unknown user gets the popularity list."""
    train = Interactions.from_frame(pd.DataFrame({
        "user_id": ["a", "a", "b", "b", "c"], "item_id": ["x", "y", "x", "z", "x"]}))
    model = Popularity().fit(train, options=OPTIONS)              # counts x 3, y 1, z 1
    test = Interactions.from_frame(pd.DataFrame({
        "user_id": ["a", "a", "a", "b", "new"], "item_id": ["x", "z", "cold", "y", "x"]}))
    out = evaluate_window(model, test, k=(1, 2), metrics=("NDCG", "Recall", "HitRate"))
    # a: x already seen (dropped); targets z, cold -> |R| = 2; list [y or z by ties, ...] (x excluded)
    # b: target y, list [y] (x, z seen) -> hit at 1; new: target x, popularity list [x, ...] -> hit at 1
    a_list = model.recommend("a", k=2).item_ids[0].tolist()
    a_hits = [1 if i == "z" else 0 for i in a_list]
    ndcg_a = sum(h / math.log2(r + 2) for r, h in enumerate(a_hits)) / (1 + 1 / math.log2(3))
    assert out["users"] == 3 and out["warm_users"] == 2 and out["repeated_pairs"] == 1 and out["cold_item_rows"] == 1
    assert out["Recall@2"] == pytest.approx((sum(a_hits) / 2 + 1 + 1) / 3)
    assert out["NDCG@2"] == pytest.approx((ndcg_a + 1 + 1) / 3)
    assert out["HitRate@1"] == pytest.approx((a_hits[0] + 1 + 1) / 3)
    assert out["NDCG@2 (warm)"] == pytest.approx((ndcg_a + 1) / 2)


def test_new_item_rank_is_the_position_in_the_list(log):
    model = build_model("als", {"factors": 8, "iterations": 5, "regularization": 1.0}).fit(log, options=OPTIONS)
    users = model.user_map_.ids[:5]
    recs = model.recommend(list(users), k=model.n_items)
    pairs = pd.DataFrame({"user_id": users, "item_id": recs.item_ids[:, 7]})          # each user's 8th item
    test = Interactions.from_frame(pairs, user_map=model.user_map_, item_map=model.item_map_)
    ranks = new_item_ranks(model, test, np.unique(test.item_idx))
    assert ranks.tolist() == [8] * 5


# ---- both tracks ----------------------------------------------------------------------------------------
def test_both_tracks_see_the_same_rows(log):
    split = rolling_split(log, windows=3)
    result = run_rolling(split, [("ease", lambda: build_model("ease", {"l2": 10.0})),
                                 ("als", lambda: build_model("als", {"factors": 8, "regularization": 1.0}))],
                         options=OPTIONS)
    frame = result.frame()
    assert len(frame) == 2 * 3 * 2
    update, refit = (frame[frame.track == t].set_index(["model", "window"]) for t in ("update", "refit"))
    assert (update.users == refit.users).all() and (update.catalogue == refit.catalogue).all()
    assert update.loc["als", "version"].tolist() == [2, 3, 4] and (refit.version == 1).all()
    # EASE's update is a refit from incrementally updated co-occurrences: the same metrics
    np.testing.assert_allclose(update.loc["ease", "NDCG@10"], refit.loc["ease", "NDCG@10"], atol=1e-9)
    assert (frame.seconds > 0).all()
    summary = result.summary()
    assert set(summary.model) == {"ease", "als"} and summary["NDCG@10 ratio"].notna().all()


def test_python_split_name(log):
    assert isinstance(tr.split(log, "rolling", windows=2), tr.RollingSplit)


# ---- the command line and experiment files --------------------------------------------------------------
@pytest.fixture
def log_file(tmp_path):
    path = tmp_path / "log.csv"
    drifting_log().to_csv(path, index=False)
    return path


def test_cli_rolling_writes_rows_and_figure(log_file, tmp_path, capsys):
    out = tmp_path / "rolling"
    assert main(["evaluate", "--data", str(log_file), "--split", "rolling", "--windows", "2", "--models", "pop,ease",
                 "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "refit vs update" in printed and "NDCG@10 update/refit" in printed
    payload = json.loads((out / "rolling.json").read_text())
    assert payload["protocol"]["windows"] == 2 and len(payload["rows"]) == 2 * 2 * 2
    assert {r["model"] for r in payload["summary"]} == {"pop", "ease"}
    assert len(pd.read_csv(out / "rolling.csv")) == 8 and (out / "COMPLETE").exists()
    if pytest.importorskip("matplotlib"):
        assert (out / "rolling.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_rolling_options_are_checked(log_file, capsys):
    for argv, message in ((["--windows", "3"], "go with --split rolling"),
                          (["--split", "rolling", "--start", "1.5"], "(0, 1)")):
        assert main(["evaluate", "--data", str(log_file), "--models", "pop", *argv]) == 2
        assert message in capsys.readouterr().err


def test_experiment_file_runs_rolling(log_file, tmp_path, capsys):
    pytest.importorskip("matplotlib")
    exp = tmp_path / "exp.toml"
    exp.write_text(f'seeds = [0]\n[data]\nsource = "{log_file}"\n[split]\nmethod = "rolling"\nwindows = 2\n'
                   '[models.pop]\n[models.als]\nfactors = 8\nregularization = 1.0\n')
    out = tmp_path / "run"
    assert main(["run", str(exp), "--out", str(out)]) == 0
    assert "refit vs update" in capsys.readouterr().out
    html = (out / "report.html").read_text()
    assert "data:image/png;base64," in html and "Summary" in html
    assert json.loads((out / "rolling.json").read_text())["protocol"]["split"] == "rolling"
    bad = tmp_path / "bad.toml"
    bad.write_text(exp.read_text().replace('method = "rolling"', 'method = "random"'))
    assert main(["run", str(bad), "--out", str(tmp_path / "bad")]) == 2
    assert "go with method" in capsys.readouterr().err
