"""The model registry: one hand-written entry per model name used by the CLI and config files."""
from __future__ import annotations

from collections.abc import Callable

from towerrec.models.base import FitOptions, Recommendations, Recommender

#: name -> factory(**config_overrides) -> Recommender. Add one line per model.
MODELS: dict[str, Callable[..., Recommender]] = {}

__all__ = ["MODELS", "FitOptions", "Recommendations", "Recommender"]


def load_model(path: str) -> Recommender:
    """Load any saved towerrec model; the class is chosen by the name stored in model.json."""
    import json
    from pathlib import Path

    from towerrec.errors import TowerrecError

    meta_file = Path(path) / "model.json"
    if not meta_file.exists():
        raise TowerrecError(f"{path}: not a towerrec model folder (no model.json)")
    name = json.loads(meta_file.read_text())["model"]
    classes = {f.name: f for f in MODELS.values() if isinstance(f, type)}
    if name not in classes:
        raise TowerrecError(f"{path}: model {name!r} is not known to this towerrec version")
    return classes[name].load(path)
