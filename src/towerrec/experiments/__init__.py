"""Experiments described by a TOML file: runs over seeds and models, significance against the best
baseline, a self-contained HTML report, a reproducibility manifest, and Optuna tuning on validation.

Public surface: `load_experiment`, `load_config`, `run_experiment`, `tune` (imported on first use:
they pull in matplotlib and optuna, the `report` extra).
"""
from __future__ import annotations

import importlib
from typing import Any

_PUBLIC = {"load_experiment": "towerrec.experiments.config", "load_config": "towerrec.experiments.config",
           "Experiment": "towerrec.experiments.config", "run_experiment": "towerrec.experiments.runner",
           "tune": "towerrec.experiments.tune"}
__all__ = sorted(_PUBLIC)


def __getattr__(name: str) -> Any:
    if name in _PUBLIC:
        return getattr(importlib.import_module(_PUBLIC[name]), name)
    raise AttributeError(f"module 'towerrec.experiments' has no attribute {name!r}")
