"""The model registry: one hand-written entry per model name used by the CLI and config files."""
from __future__ import annotations

from collections.abc import Callable

from towerrec.models.base import FitOptions, Recommendations, Recommender

#: name -> factory(**config_overrides) -> Recommender. Add one line per model.
MODELS: dict[str, Callable[..., Recommender]] = {}

__all__ = ["MODELS", "FitOptions", "Recommendations", "Recommender"]
