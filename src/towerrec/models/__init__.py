"""The model registry: one hand-written entry per model name used by the CLI and config files.

`build_model(name, overrides)` is the one way the CLI and experiment files turn a name and config
fields into a model; it lives here (not in the CLI) so that `towerrec.experiments` can use it
without importing the command line.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

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
from towerrec.models.two_tower import PRESETS, TwoTower, TwoTowerConfig, preset_factory

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
    "lightgcn": preset_factory("lightgcn"),  # cf with LightGCN-propagated ids (towers/graph.py)
    "multvae": preset_factory("multvae"),    # Mult-VAE user tower over the history bag
    "fism": preset_factory("fism"),          # FISM: the user is the pooled free rows of their items
    "sasrec": SASRec,                      # sequential: order-aware next-item models
    "gru4rec": GRU4Rec,
    "nextitnet": NextItNet,
    "hstu": HSTU,
    "bert4rec": BERT4Rec,
}

__all__ = ["MODELS", "FitOptions", "Recommendations", "Recommender", "build_model", "load_model"]

#: the registry names that build a two-tower model: the only ones a preset applies to
TWO_TOWER_FAMILY = ("two-tower", *PRESETS)


def known_model(name: str, source: str = "config") -> str:
    """`name` if the registry has it, else one-line error with a "did you mean"."""
    from towerrec.config import did_you_mean
    from towerrec.errors import TowerrecError

    if name not in MODELS:
        raise TowerrecError(f"{source}: unknown model {name!r}{did_you_mean(name, list(MODELS))}; "
                            f"known models: {', '.join(sorted(MODELS))}")
    return name


def build_model(name: str, overrides: Mapping[str, Any] | None = None, *, preset: str | None = None,
                source: str = "config", where: str = "") -> Recommender:
    """A registry model with config overrides (`towerrec.config.apply_overrides`: dotted paths and
    glossary names, unknown fields are errors starting with `source`).

    Presets belong to the two-tower family: `preset` (the CLI's `--preset`) or a `preset` override
    applies `TwoTowerConfig.for_preset` under "two-tower"; under "cf"/"content"/"hybrid" (each
    already a preset) only its own name is accepted, and any other model with a preset is an error.
    """
    from towerrec.config import apply_overrides, did_you_mean
    from towerrec.errors import TowerrecError

    known_model(name, source)
    overrides = dict(overrides or {})
    if name not in TWO_TOWER_FAMILY:
        if preset is not None:
            raise TowerrecError(f"{source}: --preset {preset!r} applies only to the two-tower models "
                                f"({', '.join(TWO_TOWER_FAMILY)}), not to {name!r}")
        default = MODELS[name]()
        return type(default)(apply_overrides(default.config, overrides, source=source, where=where))
    table_preset = overrides.pop("preset", None)
    if preset is not None and table_preset is not None and preset != table_preset:
        raise TowerrecError(f"{source}: --preset {preset!r} contradicts preset = {table_preset!r}")
    chosen = preset if preset is not None else table_preset
    if chosen is not None and (not isinstance(chosen, str) or chosen not in PRESETS):
        hint = did_you_mean(chosen, list(PRESETS)) if isinstance(chosen, str) else ""
        raise TowerrecError(f"{source}: unknown two-tower preset {chosen!r}{hint}; "
                            f"choose one of {', '.join(PRESETS)}")
    if name in PRESETS and chosen is not None and chosen != name:
        raise TowerrecError(f"{source}: model {name!r} is the two-tower preset {name!r}; for the "
                            f"{chosen!r} preset use model \"two-tower\" (--model two-tower --preset {chosen})")
    base = TwoTowerConfig.for_preset(chosen or (name if name in PRESETS else "hybrid"))
    return TwoTower(apply_overrides(base, overrides, source=source, where=where))


def load_model(path: str) -> Recommender:
    """Load any saved towerrec model (a model store: its LATEST version); the class is chosen by the
    name stored in model.json."""
    from towerrec.artifact import read_meta, resolve_artifact
    from towerrec.errors import TowerrecError

    path = str(resolve_artifact(path))
    name = read_meta(path)["model"]
    classes = {f.name: f for f in MODELS.values() if isinstance(f, type)}
    if name not in classes:
        raise TowerrecError(f"{path}: model {name!r} is not known to this towerrec version")
    return classes[name].load(path)
