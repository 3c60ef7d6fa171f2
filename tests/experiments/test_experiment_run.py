"""`towerrec run` and `towerrec tune` end to end on a small dataset folder, through cli.main."""
from __future__ import annotations

import base64
import hashlib
import json
import tomllib
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from towerrec.cli import main

TIMING = ("fit_s", "eval_s")


@pytest.fixture(scope="module")
def two_runs(experiment_file, tmp_path_factory) -> tuple[Path, Path]:
    """The same experiment twice: in this process, then in two worker processes (--jobs 2)."""
    root = tmp_path_factory.mktemp("runs")
    outs = root / "a", root / "b"
    for out, jobs in zip(outs, ("1", "2")):
        assert main(["run", str(experiment_file), "--out", str(out), "--jobs", jobs]) == 0
    return outs


def test_run_writes_every_file(two_runs):
    out = two_runs[0]
    for name in ("leaderboard.csv", "leaderboard.md", "results.json", "significance.csv", "per_user.parquet",
                 "manifest.json", "report.html", "experiment.toml"):
        assert (out / name).is_file(), name
    for seed in (0, 1):
        folder = out / f"seed-{seed}"
        for part in ("train", "valid", "test"):
            assert (folder / "split" / f"{part}.csv").is_file()
        for label in ("pop", "knn", "ease", "als"):
            assert (folder / "recs" / f"{label}.csv").is_file()
            assert (folder / "per_user" / f"{label}.parquet").is_file()
        assert json.loads((folder / "results.json").read_text())["split"]["seed"] == seed


def test_a_rerun_gives_the_same_numbers(two_runs):
    """Also across --jobs: the worker processes change where cells run, not what they compute."""
    a, b = (pd.read_csv(out / "leaderboard.csv") for out in two_runs)
    pd.testing.assert_frame_equal(a.drop(columns=list(TIMING)), b.drop(columns=list(TIMING)))
    pd.testing.assert_frame_equal(*(pd.read_parquet(out / "per_user.parquet") for out in two_runs))
    pd.testing.assert_frame_equal(*(pd.read_csv(out / "significance.csv") for out in two_runs))
    recs = [pd.read_csv(out / "seed-1" / "recs" / "als.csv") for out in two_runs]
    pd.testing.assert_frame_equal(*recs)


def test_leaderboard_agrees_with_the_seed_folders(two_runs):
    out = two_runs[0]
    board = pd.read_csv(out / "leaderboard.csv").set_index("model")
    seeds = [json.loads((out / f"seed-{s}" / "results.json").read_text())["models"] for s in (0, 1)]
    for label in ("pop", "knn", "ease", "als"):
        values = [s[label]["test"]["NDCG@10"] for s in seeds]
        assert board.loc[label, "NDCG@10"] == pytest.approx(sum(values) / 2)
        assert board.loc[label, "NDCG@10_std"] == pytest.approx(pd.Series(values).std())
    assert list(board["rank"]) == list(range(1, 5))
    assert board["NDCG@10"].is_monotonic_decreasing
    # the reference is the best baseline-family model; every other model is compared with it
    family = board.loc[["pop", "knn", "ease", "als"], "NDCG@10"]
    results = json.loads((out / "results.json").read_text())
    assert results["significance"]["reference"] == family.idxmax()
    assert board.loc[family.idxmax(), "reference"]
    others = set(board.index) - {family.idxmax()}
    assert {c["model"] for c in results["significance"]["comparisons"]} == others
    assert "*" in (out / "leaderboard.md").read_text() or not board["significant"].fillna(False).any()


def test_manifest_pins_data_code_and_seeds(two_runs, experiment_file):
    manifest = json.loads((two_runs[0] / "manifest.json").read_text())
    data = experiment_file.parent / "data" / "interactions.csv"
    assert manifest["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert manifest["seeds"] == [0, 1]
    assert manifest["command"][:3] == ["towerrec", "run", str(experiment_file)]
    assert set(manifest["versions"]) >= {"towerrec", "torch", "numpy", "scipy"}
    assert "commit" in manifest["git"]
    assert manifest["experiment"]["sha256"] == hashlib.sha256(experiment_file.read_bytes()).hexdigest()


class _Collector(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.images: list[str] = []
        self.links: list[str] = []
        self.verdict = False
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "img":
            self.images.append(attrs.get("src", ""))
        for key in ("href", "src"):
            if key in attrs and tag != "img":
                self.links.append(attrs[key])
        if attrs.get("class") == "verdict":
            self.verdict = True

    def handle_endtag(self, tag):
        if tag == "p":
            self.verdict = False

    def handle_data(self, data):
        if self.verdict:
            self.text.append(data)


def test_report_is_self_contained_and_says_who_wins(two_runs):
    out = two_runs[0]
    page = (out / "report.html").read_text()
    parser = _Collector()
    parser.feed(page)
    assert len(parser.images) >= 5
    for src in parser.images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1])[:8] == b"\x89PNG\r\n\x1a\n"
    assert parser.links == []
    for bad in ("http://", "https://", 'src="/', "<link", "<script"):
        assert bad not in page
    best = pd.read_csv(out / "leaderboard.csv")["model"].iloc[0]
    verdict = "".join(parser.text)
    assert verdict.startswith(f"{best} is the best model by NDCG@10")
    assert "95% CI" in verdict and "Holm" in verdict and "typical user" in verdict


def test_tune_uses_only_valid_and_resumes(experiment_file, two_runs, tmp_path, monkeypatch):
    import towerrec.evaluate

    scored = []
    original = towerrec.evaluate.evaluate

    def spy(model, target, **kwargs):
        scored.append(len(getattr(target, kwargs.get("part", "test"))))
        return original(model, target, **kwargs)

    monkeypatch.setattr(towerrec.evaluate, "evaluate", spy)
    out = tmp_path / "tune"
    args = ["tune", str(experiment_file), "--model", "ease", "--out", str(out), "--jobs", "1"]   # the spy sees one process
    assert main([*args, "--trials", "2"]) == 0
    assert main([*args, "--trials", "3"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and len(scored) == 3          # resumed: one more trial, not three
    # tune's split is seed 0's, as written by `run`; valid and test differ in size (ratios 0.7:0.2:0.1)
    valid_rows, test_rows = (len(pd.read_csv(two_runs[0] / "seed-0" / "split" / f"{p}.csv")) for p in ("valid", "test"))
    assert valid_rows != test_rows and set(scored) == {valid_rows}   # never the test split
    best = tomllib.loads((out / "best_config.toml").read_text())["models"]["ease"]
    assert best["model"] == "ease" and 1.0 <= best["l2"] <= 500.0
    assert best["l2"] == pytest.approx(trials.loc[trials["value"].idxmax(), "params_l2"])
    assert json.loads((out / "manifest.json").read_text())["tune"]["trials"] == 3


def test_tune_jobs_share_one_study_and_run_exactly_the_trials(experiment_file, tmp_path):
    out = tmp_path / "tune"
    assert main(["tune", str(experiment_file), "--model", "ease", "--trials", "3", "--out", str(out),
                 "--jobs", "2"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 3 and (trials["state"] == "COMPLETE").all()
    assert trials["user_attrs_pid"].nunique() == 2                     # both processes ran trials
    assert trials["params_l2"].nunique() == 3                          # own sampler seeds: no repeats
    best = tomllib.loads((out / "best_config.toml").read_text())["models"]["ease"]
    assert best["l2"] == pytest.approx(trials.loc[trials["value"].idxmax(), "params_l2"])
    assert main(["tune", str(experiment_file), "--model", "ease", "--trials", "4", "--out", str(out),
                 "--jobs", "2"]) == 0                                  # resumes: one more, in one process
    assert len(pd.read_csv(out / "trials.csv")) == 4


def test_models_that_cannot_score_the_split_are_listed_not_zeroed(experiment_file, tmp_path):
    text = experiment_file.read_text().replace('method = "random"', 'method = "cold-item"')
    path = experiment_file.parent / "cold.toml"
    path.write_text(text.replace("seeds = [0, 1]", "seeds = [0]"))
    out = tmp_path / "cold"
    assert main(["run", str(path), "--out", str(out)]) == 0
    board = pd.read_csv(out / "leaderboard.csv")
    assert sorted(board["model"]) == ["als", "ease", "knn", "pop"] and board["NDCG@10"].isna().all()
    results = json.loads((out / "results.json").read_text())
    assert all("cold items" in m["not_applicable"] for m in results["models"].values())
    assert "n/a" in (out / "leaderboard.md").read_text()
