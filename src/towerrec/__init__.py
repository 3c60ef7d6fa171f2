"""towerrec: neural two-tower, sequence and classical recommenders with trustworthy full-ranking evaluation.

    import towerrec as tr

    data = tr.Dataset.from_frame(log, items=items)       # or tr.load_dataset("ml-100k" | folder | file)
    split = tr.split(data, "random", seed=0)             # train / valid / test, one id mapping
    model = tr.TwoTower(preset="hybrid", epochs=10).fit(split)
    print(tr.evaluate(model, split).summary)             # test part, seen items excluded
    model.recommend("u42", k=10).to_frame()
    model.save("artifacts/hybrid"); tr.load_model("artifacts/hybrid")

Names are imported on first use, so `import towerrec` (and the `towerrec` command) stays fast.
"""
from __future__ import annotations

import logging

from towerrec.lazy import lazy_exports

__version__ = "0.1.0"

# a library logs, the application decides where it goes (the CLI adds a handler; see towerrec.logs)
logging.getLogger("towerrec").addHandler(logging.NullHandler())

#: public name -> the module that defines it
_PUBLIC: dict[str, str] = {
    # data
    "Dataset": "towerrec.data.dataset",
    "load_dataset": "towerrec.data.registry",
    "Interactions": "towerrec.data.interactions",
    "LoadOptions": "towerrec.data.load",
    "FeatureTable": "towerrec.data.features",
    "StreamOptions": "towerrec.data.stream",
    "StreamLog": "towerrec.data.stream_log",
    "scan_log": "towerrec.data.stream_log",
    # splits and evaluation
    "split": "towerrec.splits",
    "Split": "towerrec.splits",
    "evaluate": "towerrec.evaluation",
    "evaluate_split": "towerrec.evaluation",
    "rolling_split": "towerrec.rolling_windows",
    "RollingSplit": "towerrec.rolling_windows",
    "run_rolling": "towerrec.rolling",
    "evaluate_holdout": "towerrec.evaluation",
    "EvalResult": "towerrec.evaluation",
    "Recommendations": "towerrec.recommendations",
    "TieOrder": "towerrec.ranking",
    "BeyondOptions": "towerrec.beyond",
    # re-ranking
    "rerank": "towerrec.rerank",
    "Reranked": "towerrec.rerank",
    "RerankConfig": "towerrec.rerank",
    "Explanation": "towerrec.explain",
    # models
    "MODELS": "towerrec.models",
    "build_model": "towerrec.models",
    "load_model": "towerrec.models",
    "FitOptions": "towerrec.models.base",
    "Capabilities": "towerrec.models.base",
    "Recommender": "towerrec.models.base",
    "Popularity": "towerrec.models.pop",
    "ItemKNN": "towerrec.models.itemknn",
    "EASE": "towerrec.models.ease",
    "ALS": "towerrec.models.als",
    "TwoTower": "towerrec.models.two_tower",
    "TwoTowerConfig": "towerrec.models.two_tower",
    "SASRec": "towerrec.models.sasrec",
    "GRU4Rec": "towerrec.models.gru4rec",
    "NextItNet": "towerrec.models.nextitnet",
    "HSTU": "towerrec.models.hstu",
    "BERT4Rec": "towerrec.models.bert4rec",
    # errors
    "TowerrecError": "towerrec.errors",
    "DataError": "towerrec.errors",
}

__getattr__, _names = lazy_exports("towerrec", _PUBLIC)
__all__ = [*_names, "__version__"]


def __dir__() -> list[str]:
    return __all__
