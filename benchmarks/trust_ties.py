"""What the tie rule and cold-user reporting change (issue "Trust"): a model that knows nothing, random
scores and EASE on ml-100k's random and temporal splits (seed 0), with ties broken the old way
(lower item index first) and the towerrec way (a seeded random order of the items).

    python benchmarks/trust_ties.py [--data-dir ../shared/data]

Writes benchmarks/results/trust_ties.json: NDCG@10 for all, warm and cold test users, Tied@10,
the warm/cold counts and the named fallback.
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_json  # noqa: E402

from towerrec.data.registry import load_dataset  # noqa: E402
from towerrec.evaluation import evaluate_split  # noqa: E402
from towerrec.models.base import FitOptions, Recommender  # noqa: E402
from towerrec.models.ease import EASE  # noqa: E402
from towerrec.ranking import TieOrder  # noqa: E402
from towerrec.splits import random_split, temporal_split  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ScoresConfig:
    random: bool = False


class KnowsNothing(Recommender):
    """Every item scores 0 (or a seeded uniform draw with `random=True`)."""

    name = "knows-nothing"
    Config = ScoresConfig

    def _fit(self, interactions, **kwargs) -> None:
        pass

    def _score_users(self, user_idx: np.ndarray) -> torch.Tensor:
        if self.config.random:
            return torch.rand(len(user_idx), self.n_items, generator=torch.Generator().manual_seed(0))
        return torch.zeros(len(user_idx), self.n_items)


def run(split, model, ties: TieOrder) -> dict:
    result = evaluate_split(model, split, k=(10,), parts=("test",), ties=ties)["test"]
    out = {"NDCG@10": round(result.summary["NDCG@10"], 4), "Tied@10": round(result.summary["Tied@10"], 4),
           "users": result.info["users"], "fallback": result.info.get("fallback", {})}
    for group, values in result.groups.items():
        out[f"NDCG@10_{group}"] = round(values["NDCG@10"], 4)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=str(ROOT.parent / "shared" / "data"))
    args = parser.parse_args()
    data = load_dataset("ml-100k", data_dir=args.data_dir).interactions
    rows = []
    for name, split in (("random", random_split(data, seed=0)), ("temporal", temporal_split(data, seed=0))):
        for label, model in (("constant", KnowsNothing()), ("random_scores", KnowsNothing(random=True)),
                             ("ease", EASE())):
            model.fit(split.train, options=FitOptions(seed=0))
            for rule, ties in (("index", TieOrder(np.arange(data.n_items, dtype=np.float64))),
                               ("seeded", TieOrder.seeded(data.n_items, split.seed))):
                row = {"split": name, "model": label, "ties": rule, **run(split, model, ties)}
                rows.append(row)
                print(row)
    write_json("trust_ties", {"dataset": "ml-100k", "seed": 0, "rows": rows})


if __name__ == "__main__":
    main()
