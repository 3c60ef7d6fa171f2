"""Experiment files with re-rankers and beyond-accuracy settings; the leaderboard's beyond table, the
report's trade-off curves and the accuracy-cost frontier."""
from __future__ import annotations

import textwrap
import warnings

import numpy as np
import pandas as pd
import pytest

from towerrec.errors import TowerrecError
from towerrec.experiments.config import parse_experiment
from towerrec.experiments.leaderboard import beyond_rows, build_leaderboard
from towerrec.experiments.plots import pareto_front
from towerrec.experiments.report import rerank_curves
from towerrec.experiments.runner import ModelSeed
from towerrec.rerank import Reranked, RerankConfig

BASE = textwrap.dedent("""\
    name = "x"
    [data]
    source = "ml-100k"
    [evaluation]
    metrics = ["NDCG"]
    k = [10]
    fairness = ["gender"]
    categories = "genres"
    [models.ease]
    model = "ease"
    [models.ease-mmr-3]
    model = "ease"
    rerank = {method = "mmr", weight = 0.3}
    [models.ease-mmr-7]
    model = "ease"
    rerank = {method = "mmr", weight = 0.7}
    [models.ease-cal]
    model = "ease"
    l2 = 10.0
    [models.ease-cal.rerank]
    method = "calibrated"
    """)


def error_of(text: str) -> str:
    with pytest.raises(TowerrecError) as info:
        parse_experiment(text, "exp.toml")
    return str(info.value)


def test_rerank_entries_and_evaluation_settings():
    exp = parse_experiment(BASE, "exp.toml")
    assert exp.models["ease"].rerank is None
    assert exp.models["ease-mmr-3"].rerank == {"method": "mmr", "weight": 0.3, "candidates": 100, "space": "auto"}
    assert exp.models["ease-cal"].rerank["method"] == "calibrated" and exp.models["ease-cal"].overrides == {"l2": 10.0}
    model = exp.models["ease-mmr-7"].build()
    assert isinstance(model, Reranked) and model.config == RerankConfig("mmr", 0.7)
    options = exp.evaluation.beyond_options()
    assert options.k == (10,) and options.fairness == ("gender",) and options.categories == "genres"
    off = parse_experiment(BASE.replace('categories = "genres"', "beyond = false\ncost = false"), "exp.toml")
    assert off.evaluation.beyond_options() is None and off.evaluation.cost is False


@pytest.mark.parametrize("old, new, needle, line", [
    ('weight = 0.3}', 'weight = 1.3}', "weight must be in [0, 1]", 13),
    ('{method = "mmr", weight = 0.3}', '{method = "xmr"}', "unknown re-ranker 'xmr'", 13),
    ('{method = "mmr", weight = 0.3}', '{metod = "mmr"}', "unknown key 'metod'", 13),
    ('{method = "mmr", weight = 0.3}', '5', "must be a method name or a table", 13),
    ('{method = "mmr", weight = 0.3}', '{weight = 0.3}', "needs `method`", 13),
    ('fairness = ["gender"]', 'fairness = "gender"', "evaluation.fairness must be a list", 7),
])
def test_mistakes_name_their_line(old, new, needle, line):
    message = error_of(BASE.replace(old, new, 1))
    assert needle in message and message.startswith(f"exp.toml:{line}: "), message


def test_rerank_curves_start_from_the_plain_model():
    exp = parse_experiment(BASE, "exp.toml")
    curves = rerank_curves(exp, list(exp.models))
    assert curves == {"ease + mmr": ["ease", "ease-mmr-3", "ease-mmr-7"], "ease + calibrated": ["ease-cal"]}


def test_pareto_front_by_hand():
    # cost 1..5; quality 0.1, 0.3, 0.2, 0.5, 0.5: the third is beaten by the second, the fifth ties the fourth
    assert pareto_front(np.array([1.0, 2, 3, 4, 5]), np.array([0.1, 0.3, 0.2, 0.5, 0.5])).tolist() == [0, 1, 3]


def _record(label: str, seed: int, ndcg: float, ild: float, gap: float) -> ModelSeed:
    per_user = pd.DataFrame({"user_id": ["a", "b", "c"], "NDCG@10": [ndcg] * 3, "ILD@10": [ild, ild + 0.1, ild - 0.1]})
    test = {"NDCG@10": ndcg, "ILD@10": ild, "Coverage@10": 0.5, "Gini@10": 0.9, "NDCG@10 gap (gender)": gap}
    return ModelSeed(label, "ease", seed, {"NDCG@10": ndcg}, test, per_user, 1.0, 0.5,
                     cost={"parameters": 100, "artifact_bytes": 2**20, "peak_train_mb": 3.0, "latency_p50_ms": 1.0,
                           "latency_p99_ms": 2.0})


def test_the_beyond_table_shows_means_gaps_and_cost():
    exp = parse_experiment(BASE[:BASE.index("[models.ease-mmr-7]")], "exp.toml")
    records = [_record(label, seed, 0.3 - 0.1 * n, 0.7 + 0.1 * n, 0.01 * seed)
               for n, label in enumerate(["ease", "ease-mmr-3"]) for seed in (0, 1)]
    with warnings.catch_warnings():
        warnings.simplefilter("error")          # no fragmented-frame warning
        board, _, _ = build_leaderboard(exp, records)
    header, rows = beyond_rows(exp, board)
    assert header == ["#", "model", "ILD@10", "Coverage@10", "Gini@10", "NDCG@10 gap (gender)", "params", "size MB",
                      "peak fit MB", "fit s", "p50 ms", "p99 ms"]
    assert rows[0][:3] == ["1", "ease", "0.7000 ± 0.0000"]
    assert rows[0][5] == "0.0050 ± 0.0071" and rows[0][6:] == ["100", "1.00", "3.0", "1.0", "1.00", "2.00"]
