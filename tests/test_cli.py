"""The CLI through main([...]): leaderboard, audit files recomputed independently, one-line errors."""
from __future__ import annotations

import json
import math
from pathlib import Path

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


def recompute_beyond(out, model: str, k: int, items_csv) -> dict[str, float]:
    """Novelty, ARP, long-tail share and genre ILD from the audit files and items.csv alone."""
    train = pd.read_csv(out / "split" / "train.csv", dtype={"user_id": str, "item_id": str})
    recs = pd.read_csv(out / "recs" / f"{model}.csv", dtype={"user_id": str, "item_id": str})
    items = pd.read_csv(items_csv, dtype={"item_id": str})
    genres = {i: set(str(g).split("|")) for i, g in zip(items.item_id, items.genres)}
    users_of = train.groupby("item_id")["user_id"].nunique()
    n_users = train.user_id.nunique()
    counts = train.groupby("item_id").size()
    catalogue = pd.concat([train.item_id, pd.read_csv(out / "split" / "test.csv", dtype=str).item_id,
                           pd.read_csv(out / "split" / "valid.csv", dtype=str).item_id]).unique()
    ranked = sorted(catalogue, key=lambda i: -counts.get(i, 0))      # stable: ties keep their order
    head = set(ranked[:round(0.2 * len(catalogue))])
    sums = {"Novelty": 0.0, "ARP": 0.0, "LongTail": 0.0, "ILD": 0.0}
    lists = recs[recs["rank"] <= k].sort_values(["user_id", "rank"]).groupby("user_id")["item_id"].apply(list)
    for items_u in lists:
        sums["Novelty"] += sum(-math.log2(max(users_of.get(i, 0), 1) / n_users) for i in items_u) / len(items_u)
        sums["ARP"] += sum(counts.get(i, 0) for i in items_u) / len(items_u)
        sums["LongTail"] += sum(i not in head for i in items_u) / len(items_u)
        dists = [1 - len(genres[a] & genres[b]) / math.sqrt(len(genres[a]) * len(genres[b]))
                 for n, a in enumerate(items_u) for b in items_u[n + 1:]]
        sums["ILD"] += sum(dists) / len(dists)
    return {f"{m}@{k}": v / len(lists) for m, v in sums.items()}


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
        for name, value in recompute_beyond(out, model, 10, ml100k_dir / "items.csv").items():
            # the long tail's cut depends on how equal counts are ordered at the 20% boundary
            assert entry["test"][name] == pytest.approx(value, rel=1e-6, abs=0.02 if name.startswith("Long") else 1e-9), \
                (model, name)
        assert set(entry["test_fairness"]) == {"gender", "age"}
        assert entry["cost"]["parameters"] == (1682 if model == "pop" else 1682 ** 2)
        assert entry["cost"]["latency_p99_ms"] >= entry["cost"]["latency_p50_ms"] > 0
    per_user = pd.read_parquet(out / "per_user" / "ease.parquet")
    assert {"ILD@10", "Novelty@10", "Serendipity@10", "Miscalibration@10"} <= set(per_user.columns)
    assert "ILD@5" in printed and "p99 ms" in printed and "NDCG@5 gap (gender)" in printed
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
    assert main(["recommend", str(art), "--history", "50,172,181", "--k", "3", "--explain"]) == 0
    out = capsys.readouterr().out
    assert out.count("because you liked") == 3 and "Star Wars (1977)" in out     # titles, not ids
    assert main(["recommend", str(art), "--user", "196", "--k", "2", "--explain"]) == 0
    assert capsys.readouterr().out.count("because you liked") == 2
    assert "--explain" in one_line_error(capsys, ["recommend", str(art), "--users", "all", "--explain"])
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


# ---- one config format, names checked before the data is read ----------------------------------
def tiny_log(folder) -> str:
    """60 users x 30 items in three taste blocks: enough for pop/ease/itemknn in well under a second."""
    import numpy as np

    rng = np.random.default_rng(0)
    rows = [(f"u{u}", f"i{(u % 3) * 10 + j}", 1_000 + t) for u in range(60)
            for t, j in enumerate(rng.choice(10, 6, replace=False))]
    path = folder / "log.csv"
    pd.DataFrame(rows, columns=["user_id", "item_id", "timestamp"]).to_csv(path, index=False)
    return str(path)


def test_misspelt_model_table_in_evaluate_config_is_an_error(tmp_path, capsys):
    config = tmp_path / "c.toml"
    config.write_text('[models.ease]\nl2 = 5.0\n\n[models.hybird]\nepochs = 1\n')
    line = one_line_error(capsys, ["evaluate", "--data", str(tmp_path / "missing.csv"), "--config", str(config)])
    assert f"{config}:4:" in line and "did you mean 'hybrid'" in line     # found before the data is looked for


def test_model_names_are_checked_before_the_data_is_read(tmp_path, capsys):
    missing = str(tmp_path / "missing.csv")
    line = one_line_error(capsys, ["evaluate", "--data", missing, "--models", "pop,eas"])
    assert "'eas'" in line and "did you mean 'ease'" in line
    line = one_line_error(capsys, ["train", "--data", missing, "--model", "sasrek", "--out", str(tmp_path / "a")])
    assert "did you mean 'sasrec'" in line


def test_preset_with_another_model_is_an_error(tmp_path, capsys):
    missing = str(tmp_path / "missing.csv")
    line = one_line_error(capsys, ["train", "--data", missing, "--model", "ease", "--preset", "hybrid",
                                   "--out", str(tmp_path / "a")])
    assert "--preset 'hybrid'" in line and "two-tower" in line
    line = one_line_error(capsys, ["train", "--data", missing, "--model", "hybrid", "--preset", "cf",
                                   "--out", str(tmp_path / "a")])
    assert "--model two-tower --preset cf" in line


def test_preset_under_two_tower_builds_that_preset():
    from towerrec.experiments.config import select_models

    (spec,) = select_models(None, ["two-tower"], option="--model")
    config = spec.build(preset="cf").config
    assert (config.preset, config.hidden, config.text) == ("cf", (), "none")


def test_models_pick_config_labels_then_registry_names(tmp_path, capsys):
    data = tiny_log(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text('[models.strong]\nmodel = "ease"\nl2 = 3.0\n\n[models.ease]\nl2 = 900.0\n')
    out = tmp_path / "e"
    assert main(["evaluate", "--data", data, "--config", str(config), "--models", "strong,pop",
                 "--k", "5", "--out", str(out)]) == 0
    models = json.loads((out / "results.json").read_text())["models"]
    assert set(models) == {"strong", "pop"} and models["strong"]["config"]["l2"] == 3.0
    out = tmp_path / "all"
    assert main(["evaluate", "--data", data, "--config", str(config), "--k", "5", "--out", str(out)]) == 0
    models = json.loads((out / "results.json").read_text())["models"]
    assert set(models) == {"strong", "ease"} and models["ease"]["config"]["l2"] == 900.0   # every table
    assert "only its [models.*] tables" not in capsys.readouterr().err          # the file has no [data]


# ---- results folders: COMPLETE last, --overwrite, never someone else's files ---------------------
def test_evaluate_out_is_marked_complete_and_not_silently_reused(tmp_path, capsys):
    data, out = tiny_log(tmp_path), tmp_path / "out"
    argv = ["evaluate", "--data", data, "--models", "pop,ease", "--k", "5", "--out", str(out)]
    assert main(argv) == 0
    marker = json.loads((out / "COMPLETE").read_text())
    assert marker["complete"] and {"results.json", "recs/ease.csv", "split/test.csv"} <= set(marker["files"])
    assert (out / "COMPLETE").stat().st_mtime_ns >= max(p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file())
    (out / "recs" / "als.csv").write_text("user_id,rank,item_id,score\n")      # another run's model
    assert "--overwrite" in one_line_error(capsys, argv)
    assert main([*argv[:4], "pop", *argv[5:], "--overwrite"]) == 0
    assert sorted(p.name for p in (out / "recs").iterdir()) == ["pop.csv"]      # old recs removed first


def test_a_run_killed_while_writing_leaves_whole_files_and_no_marker(tmp_path, capsys, monkeypatch):
    data, out = tiny_log(tmp_path), tmp_path / "out"
    original = pd.DataFrame.to_parquet

    def dies_on_second(self, path, *args, **kwargs):
        if any((out / "per_user").glob("*.parquet")):          # the second model's file: killed half-way
            Path(path).write_bytes(b"PAR1 truncated")
            raise KeyboardInterrupt
        return original(self, path, *args, **kwargs)

    monkeypatch.setattr(pd.DataFrame, "to_parquet", dies_on_second)
    argv = ["evaluate", "--data", data, "--models", "pop,ease", "--k", "5", "--out", str(out)]
    assert main(argv) == 130
    assert [p.name for p in (out / "per_user").iterdir()] == ["pop.parquet"]     # whole, or absent
    assert not list(out.rglob("*.tmp")) and not (out / "COMPLETE").exists()
    monkeypatch.setattr(pd.DataFrame, "to_parquet", original)
    assert "incomplete" in one_line_error(capsys, argv)                        # recognisable as killed
    assert main([*argv, "--overwrite"]) == 0 and (out / "COMPLETE").exists()


def test_overwrite_never_deletes_foreign_files(tmp_path, capsys):
    data, out = tiny_log(tmp_path), tmp_path / "out"
    (out / "recs").mkdir(parents=True)
    (out / "results.json").write_text("{}")
    (out / "recs" / "notes.txt").write_text("mine")
    line = one_line_error(capsys, ["evaluate", "--data", data, "--models", "pop", "--out", str(out), "--overwrite"])
    assert "recs/notes.txt" in line and "not a towerrec results folder" in line
    assert (out / "recs" / "notes.txt").read_text() == "mine" and (out / "results.json").exists()


def test_the_cli_offers_every_split():
    from towerrec import cli, splits

    assert cli.SPLITS == splits.SPLITS


def stream_log(folder: Path) -> Path:
    """A Parquet folder of 3 files x 4 row groups: 300 users reading items of their taste block."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    users = np.repeat(np.arange(300), 10)
    items = (users % 3) * 20 + np.concatenate([rng.choice(20, 10, replace=False) for _ in range(300)])
    frame = pd.DataFrame({"user_id": np.char.add("u", users.astype(str)), "item_id": np.char.add("i", items.astype(str)),
                          "timestamp": np.tile(np.arange(10), 300)})
    folder.mkdir()
    for f in range(3):
        pq.write_table(pa.Table.from_pandas(frame.iloc[f * 1000:(f + 1) * 1000], preserve_index=False),
                       folder / f"part-{f}.parquet", row_group_size=250)
    return folder


def test_train_stream_then_recommend(tmp_path, capsys):
    data = stream_log(tmp_path / "big")
    config = tmp_path / "cf.toml"
    config.write_text('[models.cf]\nmodel = "cf"\nepochs = 2\nbatch_size = 128\n')
    art = tmp_path / "art"
    assert main(["train", "--data", str(data), "--stream", "--config", str(config), "--out", str(art),
                 "--holdout-users", "60", "--shuffle-buffer", "500"]) == 0
    out = capsys.readouterr().out
    assert "test NDCG@10" in out and "held-out sample of 60 users" in out and f"saved cf to {art}" in out
    assert main(["recommend", str(art), "--user", "u4", "--k", "3"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and lines[1].split()[0] == "u4"


@pytest.mark.parametrize("extra, message", [
    (["--model", "hybrid"], "pools each user's item history"),
    (["--model", "sasrec"], "whole ordered history"),
    (["--preset", "cf", "--kcore", "2"], "--kcore: not applied to a streamed log"),
    (["--preset", "cf", "--split", "loo"], "instead of --split"),
])
def test_train_stream_refusals_are_one_line(tmp_path, capsys, extra, message):
    data = stream_log(tmp_path / "big")
    assert message in one_line_error(capsys, ["train", "--data", str(data), "--stream", "--out",
                                              str(tmp_path / "a"), *extra])


def test_train_stream_reads_parquet_only(tmp_path, capsys):
    assert "streaming reads Parquet only" in one_line_error(
        capsys, ["train", "--data", tiny_log(tmp_path), "--stream", "--preset", "cf",
                 "--out", str(tmp_path / "a")])
