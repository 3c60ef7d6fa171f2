"""The CLI through main([...]): leaderboard, audit files recomputed independently, one-line errors."""
from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest

from towerrec.cli import main


def recompute(out, model: str, k: int) -> dict[str, float]:
    """Metrics from split/test.csv and recs/<model>.csv alone, written from EVALUATION.md's text."""
    test = pd.read_csv(out / "split" / "test.csv", dtype={"user_id": str, "item_id": str})
    recs = pd.read_csv(out / "recs" / f"{model}.csv", dtype={"user_id": str, "item_id": str})
    targets = test.groupby("user_id")["item_id"].apply(set)
    lists = recs.sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(list)
    sums = {"NDCG": 0.0, "Recall": 0.0, "Precision": 0.0, "MRR": 0.0, "HitRate": 0.0, "MAP": 0.0}
    for user, relevant in targets.items():
        ranked = lists.get(user, [])[:k]
        rel = [1 if item in relevant else 0 for item in ranked]
        dcg = sum(r / math.log2(i + 2) for i, r in enumerate(rel))
        idcg = sum(1 / math.log2(i + 2) for i in range(min(len(relevant), k)))
        sums["NDCG"] += dcg / idcg
        sums["Recall"] += sum(rel) / len(relevant)
        sums["Precision"] += sum(rel) / k
        sums["HitRate"] += 1.0 if any(rel) else 0.0
        sums["MRR"] += next((1 / (i + 1) for i, r in enumerate(rel) if r), 0.0)
        hits, ap = 0, 0.0
        for i, r in enumerate(rel):
            if r:
                hits += 1
                ap += hits / (i + 1)
        sums["MAP"] += ap / min(len(relevant), k)
    return {f"{m}@{k}": v / len(targets) for m, v in sums.items()}


def test_evaluate_writes_files_that_reproduce_every_figure(ml100k_dir, tmp_path, capsys):
    out = tmp_path / "run"
    code = main(["evaluate", "--data", str(ml100k_dir), "--models", "pop,ease", "--split", "random",
                 "--k", "5,10", "--seed", "0", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "NDCG@5" in printed and "ease" in printed and "pop" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["split"]["rows"] == {"train": 80808, "valid": 9596, "test": 9596}
    assert results["protocol"]["exclude_seen"] is True
    for model in ("pop", "ease"):
        entry = results["models"][model]
        assert entry["users_evaluated"]["test"] == 943
        for k in (5, 10):
            mine = recompute(out, model, k)
            for name, value in mine.items():
                assert entry["test"][name] == pytest.approx(value, abs=1e-9), (model, name)
    train = pd.read_csv(out / "split" / "train.csv", dtype=str)
    test = pd.read_csv(out / "split" / "test.csv", dtype=str)
    recs = pd.read_csv(out / "recs" / "ease.csv", dtype={"user_id": str, "item_id": str})
    assert not set(zip(train.user_id, train.item_id)) & set(zip(test.user_id, test.item_id))
    assert not set(zip(recs.user_id, recs.item_id)) & set(zip(train.user_id, train.item_id))
    assert results["models"]["ease"]["test"]["NDCG@10"] > 2 * results["models"]["pop"]["test"]["NDCG@10"]


def one_line_error(capsys, argv: list[str]) -> str:
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err and err[-1].startswith("towerrec: error:")
    return err[-1]


def test_missing_file_is_one_line_exit_2(tmp_path, capsys):
    line = one_line_error(capsys, ["evaluate", "--data", str(tmp_path / "nope.csv"), "--models", "pop"])
    assert "nope.csv" in line


def test_non_numeric_rating_names_file_column_and_line(tmp_path, capsys):
    path = tmp_path / "log.csv"
    path.write_text("user_id,item_id,rating\nu1,i1,5\nu2,i2,five\nu3,i1,4\n")
    line = one_line_error(capsys, ["evaluate", "--data", str(path), "--models", "pop"])
    assert "log.csv" in line and "'rating'" in line and "3" in line and "five" in line


def test_no_evaluable_users_is_one_line_exit_2(tmp_path, capsys):
    path = tmp_path / "short.csv"     # two rows per user: every user stays in train, nobody is evaluated
    path.write_text("user_id,item_id\n" + "".join(f"u{u},i{u % 5}\nu{u},i{(u + 1) % 5}\n" for u in range(20)))
    assert "nothing to evaluate" in one_line_error(capsys, ["evaluate", "--data", str(path), "--models", "pop"])


def test_results_json_is_strict_json(tmp_path):
    from towerrec.audit import json_text

    text = json_text({"a": float("nan"), "b": [np.float32("inf"), 1.5], "c": np.arange(2)})
    assert json.loads(text) == {"a": None, "b": [None, 1.5], "c": [0, 1]}
    assert "NaN" not in text and "Infinity" not in text


def test_usage_mistakes_are_one_line(capsys, ml100k_dir):
    assert "unknown model" in one_line_error(capsys, ["evaluate", "--data", str(ml100k_dir), "--models", "nope"])
    assert "--k" in one_line_error(capsys, ["evaluate", "--data", str(ml100k_dir), "--k", "ten"])
    assert "invalid choice" in one_line_error(capsys, ["evaluate", "--data", str(ml100k_dir), "--split", "x"])


def test_train_then_recommend_known_and_new_user(ml100k_dir, tmp_path, capsys):
    art = tmp_path / "ease"
    assert main(["train", "--data", str(ml100k_dir), "--model", "ease", "--out", str(art)]) == 0
    capsys.readouterr()
    assert main(["recommend", str(art), "--user", "196", "--k", "3"]) == 0
    out = capsys.readouterr().out
    assert "title" in out and len(out.strip().splitlines()) == 4
    assert main(["recommend", str(art), "--history", "50,172,181", "--k", "3"]) == 0
    assert "Star Wars" not in capsys.readouterr().out  # item 50 is in the history: excluded
    assert main(["recommend", str(art), "--users", "all", "--k", "5", "--out", str(tmp_path / "r.csv")]) == 0
    assert len(pd.read_csv(tmp_path / "r.csv")) == 943 * 5
    assert main(["recommend", str(art), "--users", "all", "--k", "2", "--out", str(tmp_path / "r.parquet")]) == 0
    recs = pd.read_parquet(tmp_path / "r.parquet")
    assert len(recs) == 943 * 2 and recs.user_id.nunique() == 943


def test_datasets_lists_where_each_was_found(ml100k_dir, capsys):
    assert main(["datasets", "--data-dir", str(ml100k_dir.parent)]) == 0
    out = capsys.readouterr().out
    line = next(l for l in out.splitlines() if l.startswith("ml-100k "))
    assert str(ml100k_dir) in line and "100,000" in line
    assert "not found (download: https://files.grouplens.org" in out


def test_quickstart_falls_back_to_synthetic_in_one_line(tmp_path, monkeypatch, capsys):
    from towerrec import models

    # the fallback path is what is under test; two quick models keep it to seconds
    monkeypatch.setattr(models, "MODELS", {n: models.MODELS[n] for n in ("pop", "ease")})
    monkeypatch.delenv("TOWERREC_DATA", raising=False)
    monkeypatch.setenv("TOWERREC_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["quickstart", "--data-dir", str(tmp_path / "empty"), "--out", str(tmp_path / "q")]) == 0
    captured = capsys.readouterr()
    notes = [l for l in captured.err.splitlines() if "ml-100k not found" in l]
    assert len(notes) == 1 and "synthetic" in notes[0]
    assert "synthetic" in captured.out and "ease" in captured.out
    assert (tmp_path / "q" / "results.json").exists()
