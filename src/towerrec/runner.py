"""Fit and evaluate several models on one split: the engine behind `towerrec evaluate`.

One protocol for every model: fit on train (valid given for early stopping), full-ranking
evaluation on valid (train masked) and test (train + valid masked), or, for cold-user splits,
scoring held-out users from their input histories. Models that cannot score a split's users or
items are reported as not applicable rather than as zeros.
"""
from __future__ import annotations

import dataclasses
import platform
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

from towerrec.data.features import FeatureTable
from towerrec.evaluation import EvalResult, evaluate_split
from towerrec.metrics import METRICS
from towerrec.models.base import FitOptions, Recommender
from towerrec.splits import Split


@dataclass
class ModelRun:
    """One model's outcome on one split. `valid`/`test` are None when not applicable."""

    name: str
    model: Recommender | None
    valid: EvalResult | None
    test: EvalResult | None
    fit_seconds: float = 0.0
    eval_seconds: float = 0.0
    not_applicable: str | None = None
    config: dict = field(default_factory=dict)
    training_history: list[dict] | None = None   # per epoch (loss, valid metric, seconds), if the model logs one

    def row(self, part: str = "test") -> dict[str, float | str]:
        result = getattr(self, part)
        if result is None:
            return {"model": self.name, "note": f"not applicable: {self.not_applicable}"}
        return {"model": self.name, **result.summary, "fit_s": self.fit_seconds, "eval_s": self.eval_seconds}


def versions() -> dict[str, str]:
    """Versions that change numbers, for results.json."""
    import numpy
    import pandas
    import scipy
    import torch

    import towerrec

    return {"towerrec": towerrec.__version__, "python": platform.python_version(), "torch": torch.__version__,
            "numpy": numpy.__version__, "pandas": pandas.__version__, "scipy": scipy.__version__}


def not_applicable(model: Recommender, split: Split) -> str | None:
    """Why a model cannot be evaluated on this split, or None."""
    if split.method == "cold-item" and not model.capabilities.cold_items:
        return "the model scores items only from their training interactions; cold items have none"
    if split.method == "cold-user" and not model.capabilities.histories:
        return "the model scores only users seen in training"
    return None


def run_model(name: str, model: Recommender, split: Split, *, user_features: FeatureTable | None = None,
              item_features: FeatureTable | None = None, k: Sequence[int] = (10, 20),
              metrics: Sequence[str] = METRICS, options: FitOptions = FitOptions(), exclude_seen: bool = True,
              batch_size: int = 1024) -> ModelRun:
    """Fit `model` on `split.train` and evaluate it on valid and test (`towerrec.evaluation.evaluate_split`).

    Early stopping ranks the valid users with the same masking as the reported metrics."""
    config = dataclasses.asdict(model.config) if dataclasses.is_dataclass(model.config) else {}
    reason = not_applicable(model, split)
    if reason:
        return ModelRun(name, None, None, None, not_applicable=reason, config=config)
    start = time.perf_counter()
    model.fit(split.train, user_features=user_features, item_features=item_features,
              valid=split.valid if split.method != "cold-user" else None,
              options=dataclasses.replace(options, exclude_seen=exclude_seen))
    fit_seconds = time.perf_counter() - start
    start = time.perf_counter()
    results = evaluate_split(model, split, k=k, metrics=metrics, exclude_seen=exclude_seen, batch_size=batch_size)
    return ModelRun(name, model, results["valid"], results["test"], fit_seconds, time.perf_counter() - start,
                    config=config, training_history=model.training_history())
