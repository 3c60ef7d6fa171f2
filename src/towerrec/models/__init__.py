"""The model registry: one hand-written entry per model name used by the CLI and config files."""
from __future__ import annotations

from collections.abc import Callable

from towerrec.models.als import ALS
from towerrec.models.base import FitOptions, Recommendations, Recommender
from towerrec.models.bert4rec import BERT4Rec
from towerrec.models.ease import EASE
from towerrec.models.gru4rec import GRU4Rec
from towerrec.models.hstu import HSTU
from towerrec.models.itemknn import ItemKNN
from towerrec.models.nextitnet import NextItNet
from towerrec.models.pop import Popularity
from towerrec.models.sasrec import SASRec
from towerrec.models.two_tower import TwoTower, preset_factory

#: name -> factory(**config_overrides) -> Recommender. Add one line per model.
MODELS: dict[str, Callable[..., Recommender]] = {
    "pop": Popularity,
    "itemknn": ItemKNN,
    "ease": EASE,
    "als": ALS,
    "two-tower": TwoTower,                 # = the hybrid preset
    "cf": preset_factory("cf"),
    "content": preset_factory("content"),
    "hybrid": preset_factory("hybrid"),
    "sasrec": SASRec,                      # sequential: order-aware next-item models
    "gru4rec": GRU4Rec,
    "nextitnet": NextItNet,
    "hstu": HSTU,
    "bert4rec": BERT4Rec,
}

__all__ = ["MODELS", "FitOptions", "Recommendations", "Recommender"]


def load_model(path: str) -> Recommender:
    """Load any saved towerrec model; the class is chosen by the name stored in model.json."""
    from towerrec.artifact import read_meta
    from towerrec.errors import TowerrecError

    name = read_meta(path)["model"]
    classes = {f.name: f for f in MODELS.values() if isinstance(f, type)}
    if name not in classes:
        raise TowerrecError(f"{path}: model {name!r} is not known to this towerrec version")
    return classes[name].load(path)
