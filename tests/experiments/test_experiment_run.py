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

# wall-clock and memory vary run to run; so does the artifact's size by a few bytes (its lineage
# records each fit's seconds and time)
TIMING = ("fit_s", "eval_s", "peak_mb", "p50_ms", "p99_ms", "size_mb")


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
    import towerrec.evaluation

    scored = []
    original = towerrec.evaluation.evaluate

    def spy(model, target, **kwargs):
        scored.append(len(getattr(target, kwargs.get("part", "test"))))
        return original(model, target, **kwargs)

    monkeypatch.setattr(towerrec.evaluation, "evaluate", spy)
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


# ---- results folders ---------------------------------------------------------------------------
SMALL = {"seeds = [0, 1]": "seeds = [0]", '[models.knn]\nmodel = "itemknn"\nneighbours = 20\n': "",
         '[models.als]\nmodel = "als"\nfactors = 8\niterations = 3\n': ""}


def small_experiment(experiment_file: Path, name: str, extra: dict[str, str] | None = None) -> Path:
    """The tiny experiment cut to one seed and pop + ease (seconds), written beside the data."""
    text = experiment_file.read_text()
    for old, new in {**SMALL, **(extra or {})}.items():
        assert old in text, old
        text = text.replace(old, new)
    path = experiment_file.parent / f"{name}.toml"
    path.write_text(text)
    return path


def test_run_writes_complete_last_listing_every_file(two_runs):
    out = two_runs[0]
    marker = json.loads((out / "COMPLETE").read_text())
    files = sorted(p.relative_to(out).as_posix() for p in out.rglob("*") if p.is_file() and p.name != "COMPLETE")
    assert marker["complete"] is True and marker["files"] == files
    assert (out / "COMPLETE").stat().st_mtime_ns >= max((out / f).stat().st_mtime_ns for f in files)


def test_run_refuses_old_results_and_overwrite_replaces_them(experiment_file, two_runs, tmp_path, capsys):
    import shutil

    out = tmp_path / "old"
    shutil.copytree(two_runs[0], out)                     # seeds 0 and 1 with four models
    path = small_experiment(experiment_file, "small")
    assert main(["run", str(path), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert "--overwrite" in err and "complete" in err
    assert main(["run", str(path), "--out", str(out), "--overwrite"]) == 0
    assert sorted(p.name for p in out.glob("seed-*")) == ["seed-0"]            # the old seed-1 is gone
    assert sorted(p.stem for p in (out / "seed-0" / "recs").iterdir()) == ["ease", "pop"]
    assert (out / "COMPLETE").exists()


@pytest.mark.parametrize("command,module", [("run", "matplotlib"), ("tune", "optuna")])
def test_missing_extra_is_a_one_line_install_hint(experiment_file, tmp_path, capsys, monkeypatch, command, module):
    monkeypatch.setitem(__import__("sys").modules, module, None)      # `import module` now fails
    argv = [command, str(experiment_file), "--out", str(tmp_path / "out")] + (["--model", "ease"] if command == "tune" else [])
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and module in err[0] and "pip install 'towerrec[report]'" in err[0]
    assert not (tmp_path / "out").exists()                              # refused before any work


# ---- tune: resume only the same study, never replay its points ---------------------------------
def test_a_resumed_study_proposes_new_points(experiment_file, tmp_path):
    out = tmp_path / "tune"
    args = ["tune", str(experiment_file), "--model", "ease", "--out", str(out), "--jobs", "1"]
    assert main([*args, "--trials", "2"]) == 0
    assert main([*args, "--trials", "4"]) == 0
    trials = pd.read_csv(out / "trials.csv")
    assert len(trials) == 4 and trials["params_l2"].nunique() == 4   # the restart did not replay trials 0, 1


def test_tune_on_other_data_starts_a_fresh_study(experiment_file, tmp_path, capsys):
    import optuna

    out = tmp_path / "tune"
    args = ["tune", "--model", "ease", "--out", str(out), "--jobs", "1"]
    assert main([args[0], str(experiment_file), *args[1:], "--trials", "3"]) == 0
    first = pd.read_csv(out / "trials.csv")
    capsys.readouterr()
    filtered = small_experiment(experiment_file, "filtered", {'duplicates = "first"': 'duplicates = "first"\nmin_rating = 3'})
    assert main([args[0], str(filtered), *args[1:], "--trials", "2"]) == 0
    err = capsys.readouterr().err
    assert "starting a fresh study" in err and "data" in err and "resuming" not in err
    second = pd.read_csv(out / "trials.csv")
    assert len(second) == 2                                           # not 3 old + 0 new
    manifest = json.loads((out / "manifest.json").read_text())["tune"]
    assert manifest["best_value"] == pytest.approx(second["value"].max())
    assert manifest["best_value"] != pytest.approx(first["value"].max())
    names = optuna.study.get_all_study_names(f"sqlite:///{out / 'optuna.db'}")
    assert len(names) == 2 and manifest["study"] in names                # the old study is kept
    assert main([args[0], str(experiment_file), *args[1:], "--trials", "4"]) == 0   # back to the first: resumes
    assert "resuming" in capsys.readouterr().err and len(pd.read_csv(out / "trials.csv")) == 4


def test_the_file_tune_writes_runs_unchanged_everywhere(experiment_file, tmp_path, capsys):
    """best_config.toml is the whole experiment with the tuned table: run, train --config and
    evaluate --config take it as it is, and all three use the tuned value."""
    out = tmp_path / "tune"
    path = small_experiment(experiment_file, "for-tune")
    assert main(["tune", str(path), "--model", "ease", "--trials", "2", "--out", str(out), "--jobs", "1"]) == 0
    tuned = out / "best_config.toml"
    text = tuned.read_text()
    assert "# tuned by `towerrec tune --model ease`: best of 2 trials" in text and "valid NDCG@10" in text
    l2 = tomllib.loads(text)["models"]["ease"]["l2"]
    assert l2 == pytest.approx(pd.read_csv(out / "trials.csv").set_index("value")["params_l2"].loc[
        json.loads((out / "manifest.json").read_text())["tune"]["best_value"]])
    data = str(experiment_file.parent / "data")

    assert main(["run", str(tuned), "--out", str(tmp_path / "run")]) == 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["models"]["ease"]["config"]["l2"] == l2
    assert main(["evaluate", "--data", data, "--config", str(tuned), "--models", "ease,pop", "--k", "10",
                 "--out", str(tmp_path / "eval")]) == 0
    assert json.loads((tmp_path / "eval" / "results.json").read_text())["models"]["ease"]["config"]["l2"] == l2
    assert main(["train", "--data", data, "--config", str(tuned), "--model", "ease", "--split", "none",
                 "--out", str(tmp_path / "model")]) == 0
    assert json.loads((tmp_path / "model" / "model.json").read_text())["config"]["l2"] == l2
